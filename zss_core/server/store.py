"""The job store under `--data DIR`: one folder per job, its events append-only, its state beside them.

    <data>/jobs/<id>/state.json    id, owner (a token hash), model name, state, times
    <data>/jobs/<id>/events.jsonl  every event of the job, paths relative to its output folder
    <data>/jobs/<id>/control/      the depth images the client sent
    <data>/jobs/<id>/out/<id>/     the worker's job folder (frames, clip.mp4, job.json)

Jobs outlive connections and restarts: opening the store marks a job that was queued or running
`interrupted` (an `error` event closes its event list, its frames stay) and keeps every finished one.
One lock guards the index; the backend's thread appends events, request handlers read them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import threading
import time
from typing import Any

from ..client import ENDING_EVENTS

ACTIVE = ("queued", "running")
STATES = (*ACTIVE, "done", "failed", "cancelled", "interrupted")
_STATE_AFTER = {"accepted": "running", "done": "done", "error": "failed", "cancelled": "cancelled"}


@dataclasses.dataclass
class JobRecord:
    id: str
    owner: str
    model: str  # the models.toml name the client asked for
    folder: str  # <data>/jobs/<id>
    state: str = "queued"
    created: float = dataclasses.field(default_factory=time.time)
    ended: float | None = None
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    frames: dict[int, str] = dataclasses.field(default_factory=dict)  # index → path relative to job_dir

    @property
    def output_dir(self) -> str:
        return os.path.join(self.folder, "out")

    @property
    def job_dir(self) -> str:
        return os.path.join(self.output_dir, self.id)

    @property
    def control_dir(self) -> str:
        return os.path.join(self.folder, "control")

    @property
    def init_dir(self) -> str:
        """Restyle's source frames, as the client uploaded them."""
        return os.path.join(self.folder, "init")

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "model": self.model,
            "frames_written": len(self.frames),
            "created": self.created,
            "ended": self.ended,
        }

    def file(self, relative: str | None) -> str | None:
        """The absolute path of a file the job wrote, or None when it is missing or outside the job."""
        if not relative:
            return None
        path = os.path.realpath(os.path.join(self.job_dir, relative))
        root = os.path.realpath(self.job_dir)
        if os.path.commonpath([path, root]) != root or not os.path.isfile(path):
            return None
        return path


def relative_paths(value: Any, root: str) -> Any:
    """Server paths inside the job folder become relative ones (a client never sees server paths)."""
    if isinstance(value, str) and value.startswith(root + os.sep):
        return os.path.relpath(value, root).replace(os.sep, "/")
    if isinstance(value, list):
        return [relative_paths(v, root) for v in value]
    if isinstance(value, dict):
        return {k: relative_paths(v, root) for k, v in value.items()}
    return value


class JobStore:
    def __init__(self, data: str, keep_hours: float = 24.0) -> None:
        self.root = os.path.join(data, "jobs")
        self.keep_seconds = keep_hours * 3600
        self._lock = threading.Lock()
        self._jobs: dict[str, JobRecord] = {}
        self._doomed: set[str] = set()  # deleted while active: removed when their ending event arrives
        os.makedirs(self.root, exist_ok=True)
        self._load()

    # ------------------------------------------------------------------ disk

    def _write_state(self, job: JobRecord) -> None:
        state = {k: v for k, v in dataclasses.asdict(job).items() if k not in ("events", "frames", "folder")}
        tmp = os.path.join(job.folder, "state.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(tmp, os.path.join(job.folder, "state.json"))

    def _write_event(self, job: JobRecord, event: dict[str, Any]) -> None:
        with open(os.path.join(job.folder, "events.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")

    def _load(self) -> None:
        """Read every job folder; unfinished jobs become `interrupted` with the frames they wrote."""
        for name in sorted(os.listdir(self.root)):
            folder = os.path.join(self.root, name)
            try:
                with open(os.path.join(folder, "state.json"), encoding="utf-8") as f:
                    state = json.load(f)
                job = JobRecord(
                    id=state["id"],
                    owner=state["owner"],
                    model=state["model"],
                    folder=folder,
                    state=state["state"],
                    created=state["created"],
                    ended=state.get("ended"),
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a folder half-created by a crash during submit: nothing of it was accepted
            if job.id != name:
                continue
            events, clean = self._read_events(folder)
            for event in events:
                self._record(job, event)
            if not clean:  # drop the cut line, so what is appended next starts a line of its own
                self._rewrite_events(job)
            self._jobs[job.id] = job
            if job.active:
                self._interrupt(job)

    @staticmethod
    def _read_events(folder: str) -> tuple[list[dict[str, Any]], bool]:
        """The events of a job folder, and whether every line was whole (a killed server may cut one)."""
        events = []
        try:
            with open(os.path.join(folder, "events.jsonl"), encoding="utf-8") as f:
                for line in f:
                    try:
                        events.append(json.loads(line))
                    except ValueError:
                        return events, False
        except OSError:
            pass
        return events, True

    def _rewrite_events(self, job: JobRecord) -> None:
        tmp = os.path.join(job.folder, "events.jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(event) + "\n" for event in job.events)
        os.replace(tmp, os.path.join(job.folder, "events.jsonl"))

    def _interrupt(self, job: JobRecord) -> None:
        count = len(job.frames)
        event = {
            "type": "error",
            "id": job.id,
            "code": "worker_died",
            "message": f"The server stopped while this job ran; the {count} frame{'s' if count != 1 else ''} "
            f"it wrote {'are' if count != 1 else 'is'} kept.",
            "hint": "Generate again to make the whole clip.",
            "field": None,
            "problems": None,
        }
        self._record(job, event)
        self._write_event(job, event)
        job.state = "interrupted"
        self._write_state(job)

    # ----------------------------------------------------------------- index

    def _record(self, job: JobRecord, event: dict[str, Any]) -> None:
        job.events.append(event)
        if event.get("type") == "frame" and isinstance(event.get("index"), int):
            job.frames[event["index"]] = event["path"]
        new_state = _STATE_AFTER.get(event.get("type", ""))
        if new_state and job.active:
            job.state = new_state
            if not job.active:
                job.ended = job.ended or time.time()

    def create(self, job_id: str, owner: str, model: str) -> JobRecord:
        """A new job folder (state `queued`); the caller writes the control images, then `commit`s."""
        job = JobRecord(id=job_id, owner=owner, model=model, folder=os.path.join(self.root, job_id))
        os.makedirs(job.output_dir)
        return job

    def commit(self, job: JobRecord, max_active: int | None = None) -> bool:
        """Add a created job to the index; False (nothing added) when its owner already has
        `max_active` jobs queued or running — checked under the lock, so parallel submits cannot race past it."""
        with self._lock:
            active = sum(1 for j in self._jobs.values() if j.owner == job.owner and j.active)
            if max_active is not None and active >= max_active:
                return False
            self._write_state(job)
            self._jobs[job.id] = job
            return True

    def append(self, job_id: str, event: dict[str, Any]) -> None:
        """Record one event of a job (its server paths made relative); ending events settle its state."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                if job_id in self._doomed and event.get("type") in ENDING_EVENTS:
                    self._doomed.discard(job_id)
                    shutil.rmtree(os.path.join(self.root, job_id), ignore_errors=True)
                return
            event = relative_paths(event, job.job_dir)
            before = job.state
            self._record(job, event)
            self._write_event(job, event)
            if job.state != before:
                self._write_state(job)

    def get(self, job_id: str, owner: str) -> JobRecord | None:
        """The job if it exists and belongs to `owner` (another's job looks exactly like a missing one)."""
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and job.owner == owner else None

    def events_after(self, job: JobRecord, after: int) -> list[dict[str, Any]]:
        with self._lock:
            return job.events[after + 1 :]

    def owned(self, owner: str) -> list[JobRecord]:
        with self._lock:
            return [j for j in self._jobs.values() if j.owner == owner]

    def active_count(self, owner: str) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.owner == owner and j.active)

    def delete(self, job: JobRecord) -> None:
        """Forget a job; its files go now, or when its ending event arrives if it still runs."""
        with self._lock:
            self._jobs.pop(job.id, None)
            if job.active:
                self._doomed.add(job.id)
                return
        shutil.rmtree(job.folder, ignore_errors=True)

    def discard(self, job: JobRecord) -> None:
        """Remove a job folder that was never committed (a submit refused after `create`)."""
        shutil.rmtree(job.folder, ignore_errors=True)

    def expire(self, now: float | None = None) -> list[str]:
        """Delete finished jobs that ended more than keep-hours ago; returns their ids."""
        cutoff = (time.time() if now is None else now) - self.keep_seconds
        with self._lock:
            old = [j for j in self._jobs.values() if not j.active and (j.ended or j.created) < cutoff]
            for job in old:
                del self._jobs[job.id]
        for job in old:
            shutil.rmtree(job.folder, ignore_errors=True)
        return [j.id for j in old]

    def interrupt_active(self) -> None:
        """At shutdown: every job still queued or running ends `interrupted` (its frames kept)."""
        with self._lock:
            for job in self._jobs.values():
                if job.active:
                    self._interrupt(job)
