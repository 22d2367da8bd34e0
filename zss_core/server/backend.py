"""Where jobs run: `Backend` is what the app needs; `LocalBackend` runs warm local worker processes.

LocalBackend keeps one `zss_core.worker` per GPU (its own `CUDA_VISIBLE_DEVICES`) or `--workers N` on
CPU, each through `LocalClient`, all owned by one dispatcher thread (the clients' single consumer):
it hands a queued job to a free worker, appends every event to the store, and restarts a worker that
died (its job then ends with the client's `worker_died` error, the frames so far kept). A Ray backend
(issue 14) is a second `Backend` with the same four methods.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import dataclasses
import logging
import os
import queue
import sys
import threading
import time
from typing import Any

from ..client import ENDING_EVENTS, LocalClient, WorkerNotRunning, WorkerStartError
from ..protocol import Cancelled, Ready
from .config import ServerConfig
from .store import JobStore

log = logging.getLogger("zss.serve")
RESTART_PAUSE_S = 5.0  # between starts of a worker that keeps dying, so a broken setup does not spin
EXPIRE_EVERY_S = 60.0


class Backend(abc.ABC):
    """Runs the store's jobs and appends their protocol events to it."""

    @abc.abstractmethod
    def start(self) -> None:
        """Begin starting workers and taking jobs (returns at once)."""

    @abc.abstractmethod
    def submit(self, job_id: str, job: dict[str, Any]) -> None:
        """Queue a validated protocol job (already committed to the store)."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None:
        """Stop a queued or running job; its `cancelled` event goes to the store."""

    @abc.abstractmethod
    def workers(self) -> list[dict[str, Any]]:
        """What each worker runs on, for GET /v1/models: device, GPU memory, process id, busy."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the workers; jobs still active end `interrupted`."""


@dataclasses.dataclass
class _Slot:
    client: LocalClient
    gpu: str | None
    job: str | None = None  # the job it runs
    started_at: float = 0.0


class LocalBackend(Backend):
    def __init__(self, config: ServerConfig, store: JobStore, python: str = sys.executable) -> None:
        self.store = store
        self._slots = [self._slot(python, gpu) for gpu in (config.gpus or (None,) * config.workers)]
        self._queue: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self._commands: queue.SimpleQueue[tuple[str, str, dict[str, Any] | None]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zss-dispatch", daemon=True)

    @staticmethod
    def _slot(python: str, gpu: str | None) -> _Slot:
        env = dict(os.environ)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        return _Slot(LocalClient(python, env=env), gpu)

    # ------------------------------------------------------------ interface

    def start(self) -> None:
        self._thread.start()

    def submit(self, job_id: str, job: dict[str, Any]) -> None:
        self._commands.put(("submit", job_id, job))

    def cancel(self, job_id: str) -> None:
        self._commands.put(("cancel", job_id, None))

    def workers(self) -> list[dict[str, Any]]:
        out = []
        for slot in self._slots:
            ready = slot.client.ready
            out.append(
                {
                    "gpu": slot.gpu,
                    "device": ready.device if ready else None,
                    "gpu_total_bytes": ready.gpu_total_bytes if ready else None,
                    "pid": ready.pid if ready else None,
                    "ready": ready is not None and slot.client.is_alive(),
                    "busy": slot.job is not None,
                }
            )
        return out

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for slot in self._slots:
            slot.client.stop(timeout=3.0)
        self.store.interrupt_active()

    # ----------------------------------------------------------- dispatcher

    def _run(self) -> None:
        last_expire = 0.0
        while not self._stop.is_set():
            self._take_commands(timeout=0.01)
            for slot in self._slots:
                self._drain(slot)
                self._keep_running(slot)
            self._dispatch()
            if time.monotonic() - last_expire > EXPIRE_EVERY_S:
                last_expire = time.monotonic()
                for job_id in self.store.expire():
                    log.info("deleted job %s (older than --keep-hours)", job_id)

    def _take_commands(self, timeout: float) -> None:
        try:
            command = self._commands.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            kind, job_id, job = command
            if kind == "submit" and job is not None:
                self._queue.append((job_id, job))
            elif kind == "cancel":
                self._cancel(job_id)
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return

    def _cancel(self, job_id: str) -> None:
        for i, (queued_id, _) in enumerate(self._queue):
            if queued_id == job_id:
                del self._queue[i]
                self.store.append(job_id, Cancelled(id=job_id, frames=[], manifest=None).to_dict())
                return
        for slot in self._slots:
            if slot.job == job_id:
                with contextlib.suppress(WorkerNotRunning):  # it died: its worker_died error ends the job
                    slot.client.cancel(job_id)
                return

    def _drain(self, slot: _Slot) -> None:
        for event in slot.client.poll_events():
            if isinstance(event, Ready):
                log.info("worker ready on %s (pid %s)", event.device, event.pid)
                continue
            d = event.to_dict()
            if d.get("id") is None:
                if slot.job is None or event.type != "error":
                    continue
                d["id"] = slot.job  # a worker-level error while it ran a job is that job's end
            self.store.append(d["id"], d)
            if event.type in ENDING_EVENTS and d["id"] == slot.job:
                slot.job = None

    def _keep_running(self, slot: _Slot) -> None:
        """(Re)start a worker that is not running, once its death has been reported."""
        client = slot.client
        if client.is_alive() or client.pending or time.monotonic() - slot.started_at < RESTART_PAUSE_S:
            return
        if slot.job is not None:  # died without a pending id left to report: end the job here
            self.store.append(
                slot.job,
                {
                    "type": "error",
                    "id": slot.job,
                    "code": "worker_died",
                    "message": "The generator process stopped unexpectedly.",
                    "hint": "Generate again; the server restarted its worker.",
                    "field": None,
                    "problems": None,
                },
            )
            slot.job = None
        slot.started_at = time.monotonic()
        try:
            client.start(wait=False)
        except WorkerStartError as e:
            log.error("cannot start a worker: %s", e)

    def _dispatch(self) -> None:
        for slot in self._slots:
            if not self._queue:
                return
            if slot.job is not None or slot.client.ready is None or not slot.client.is_alive():
                continue
            job_id, job = self._queue.popleft()
            try:
                slot.client.submit(job)
            except (WorkerNotRunning, OSError, ValueError) as e:
                log.warning("worker refused job %s (%s); it stays queued", job_id, e)
                self._queue.appendleft((job_id, job))
                continue
            slot.job = job_id
