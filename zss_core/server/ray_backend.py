"""Jobs on a Ray cluster: `RayBackend` for `zss serve --backend ray`, `RayClient` for `zss batch --backend ray`.

Ray schedules, places and restarts the workers; nothing here is a scheduler. The pieces:

* `JobActor` — a Ray actor holding one warm pipeline (one GPU with ``num_gpus=1``, or one CPU). It runs
  an unchanged `zss_core.worker.Worker` (validation, pipeline cache, `runner.run_job`, cancel) whose
  event writer is a queue instead of stdout, and streams a job's protocol events back through a Ray
  generator method (`run`): each event is yielded as the worker emits it, so frames reach the server
  while the clip is still being decoded.
* `RayPool` — one thread per actor takes the next queued job, calls ``actor.run.remote(job)`` and
  consumes the generator. An actor that dies mid-job (process killed, node lost) raises in the
  generator: the job ends with a ``worker_died`` error naming the frames that reached the caller, Ray
  restarts the actor (``max_restarts``), and the slot goes on with the next job.
* Files. An actor on the caller's node writes the job folder in place (same filesystem). An actor on
  another node (or any actor with ``ship=True``) runs the job in a scratch folder of its own node, and
  the bytes of each file come back with the event that names it (frames as they are decoded; the
  MP4, contact sheet and job.json with the ending event); the caller writes them at the job's paths
  before it records the event. Depth maps and restyle sources travel the other way.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError

from .. import protocol
from ..client import ENDING_EVENTS, STALL_TIMEOUT, GeneratorClient, WorkerNotRunning, WorkerStartError
from ..protocol import Message, Ready
from ..worker import HEARTBEAT_SECONDS, EventWriter
from .backend import EXPIRE_EVERY_S, RESTART_PAUSE_S, Backend
from .config import ServerConfig
from .store import JobStore

log = logging.getLogger("zss.ray")
READY_TIMEOUT_S = 1.0  # one wait for an actor's `ready` (a loop re-asks, so close() is never held up)
IDLE_WAIT_S = 0.2  # a slot with nothing to run looks at the queue this often (and at close)
INPUT_LISTS = (("control", "images"), ("init", None))  # job fields holding input file paths (one per frame)

# Ray's "restarting, ask again" (a RayActorError too, but not a dead actor); older Rays do not have it.
ACTOR_RESTARTING: Any = getattr(ray.exceptions, "ActorUnavailableError", ())
Files = list[tuple[str, bytes]]  # (path at the caller, contents)
EventSink = Callable[[str, dict[str, Any]], None]  # (job id, protocol event as a dict)


# ---------------------------------------------------------------------------------------------- paths


def map_paths(value: Any, mapping: dict[str, str]) -> Any:
    """Strings that are (or lie under) a key of `mapping` get that prefix replaced by its value."""
    if isinstance(value, str):
        for source, target in mapping.items():
            if value == source or value.startswith(source + os.sep):
                return target + value[len(source) :]
        return value
    if isinstance(value, list):
        return [map_paths(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: map_paths(v, mapping) for k, v in value.items()}
    return value


def input_paths(job: dict[str, Any]) -> list[str]:
    """The input files a job reads (depth maps, restyle sources), in order."""
    paths: list[str] = []
    for field, sub in INPUT_LISTS:
        value = job.get(field)
        if sub is not None:
            value = value.get(sub) if isinstance(value, dict) else None
        if isinstance(value, list):
            paths.extend(p for p in value if isinstance(p, str))
    return paths


def read_inputs(job: dict[str, Any]) -> dict[str, bytes]:
    """The bytes of a job's input files, for an actor on another node."""
    out = {}
    for path in input_paths(job):
        with open(path, "rb") as f:
            out[path] = f.read()
    return out


def write_files(files: Files) -> None:
    """Write files that came back from an actor (atomically: a reader never sees half a frame)."""
    for path, data in files:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".part"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)


class _Scratch:
    """A job run away from the caller's filesystem: its folder on this node and the path mappings."""

    def __init__(self, job: dict[str, Any], inputs: dict[str, bytes]) -> None:
        self.root = tempfile.mkdtemp(prefix="zss-ray-")
        self.out = os.path.join(self.root, "out")
        self.home_out = os.path.abspath(job["output_dir"])
        self.job_dir = os.path.join(self.out, job["id"])
        self.to_scratch: dict[str, str] = {self.home_out: self.out}
        for i, (path, data) in enumerate(inputs.items()):
            local = os.path.join(self.root, "in", f"{i:04d}_{os.path.basename(path)}")
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with open(local, "wb") as f:
                f.write(data)
            self.to_scratch[path] = local
        self.to_home = {v: k for k, v in self.to_scratch.items()}
        self.shipped: set[str] = set()

    def job(self, job: dict[str, Any]) -> dict[str, Any]:
        return {**map_paths(job, self.to_scratch), "output_dir": self.out}

    def files_named(self, event: dict[str, Any], ending: bool) -> Files:
        """The files an event names that were not sent yet (at the end: everything in the job folder)."""
        names: list[str] = []
        for value in event.values():
            names.extend(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str))
        if ending and os.path.isdir(self.job_dir):
            for folder, _, files in os.walk(self.job_dir):
                names.extend(os.path.join(folder, f) for f in files)
        out = []
        for name in dict.fromkeys(names):
            is_manifest = os.path.basename(name) == "job.json"
            inside = name.startswith(self.job_dir + os.sep)
            if not inside or not os.path.isfile(name) or (name in self.shipped and not is_manifest):
                continue
            with open(name, "rb") as f:
                data = f.read()
            if is_manifest:  # its paths are this node's scratch paths: give it the caller's
                manifest = map_paths(json.loads(data), self.to_home)
                data = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")
            self.shipped.add(name)
            out.append((map_paths(name, self.to_home), data))
        return out

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- actor


class _QueueWriter(EventWriter):
    """The worker's event writer: events go into a queue the actor's `run` generator yields from."""

    def __init__(self) -> None:
        super().__init__(stream=None)
        self.events: queue.SimpleQueue[protocol.Message] = queue.SimpleQueue()

    def send(self, event: protocol.Message) -> None:
        self.events.put(event)


class JobActor:
    """One warm generator on one Ray worker process (a GPU with num_gpus=1, or a CPU).

    Holds a `Worker` (its pipeline cache keeps the model loaded between jobs) whose job loop runs in
    a thread of the actor; `run` submits a job to it and yields that job's events until its end.
    The actor is threaded (max_concurrency > 1) so `cancel` and `ready` are answered while `run` streams.
    """

    def __init__(self, torch_threads: int | None = None, heartbeat_s: float = HEARTBEAT_SECONDS) -> None:
        os.environ.setdefault("TQDM_DISABLE", "1")
        self.heartbeat_s = heartbeat_s
        logging.basicConfig(level=os.environ.get("ZSS_LOG_LEVEL", "INFO"))
        import torch

        from ..worker import Worker

        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.writer = _QueueWriter()
        self.worker = Worker(self.writer, requests=())
        self.loop = threading.Thread(target=self.worker.run, name="zss-jobs", daemon=True)
        self.loop.start()
        self.lock = threading.Lock()  # one `run` at a time: the writer's queue holds one job's events
        self.gate = threading.Lock()  # a cancel and the start of its job never cross
        self.cancelled_early: set[str] = set()  # cancelled before their `run` reached the worker

    def ready(self) -> dict[str, Any]:
        """The worker's `ready` event plus the node it runs on."""
        from ..worker import ready_event

        return {**ready_event().to_dict(), "node": ray.get_runtime_context().get_node_id()}

    def run(self, job: dict[str, Any], inputs: dict[str, bytes] | None = None) -> Iterator[tuple[dict, Files]]:
        """Run one job; yields (event, files) — files are non-empty only when `inputs` is not None
        (ship mode: the job runs in a scratch folder and its files travel back as bytes)."""
        with self.lock:
            scratch = _Scratch(job, inputs) if inputs is not None else None
            try:
                with self.gate:
                    early = job["id"] in self.cancelled_early
                    self.cancelled_early.discard(job["id"])
                    if not early:
                        self.worker.on_generate(protocol.Generate(job=scratch.job(job) if scratch else job))
                if early:
                    yield protocol.Cancelled(id=job["id"], frames=[]).to_dict(), []
                    return
                while True:
                    try:
                        event = self.writer.events.get(timeout=self.heartbeat_s).to_dict()
                    except queue.Empty:  # a long step: say this process is alive (the caller drops it)
                        yield {"type": "heartbeat"}, []
                        continue
                    if event.get("id") not in (job["id"], None):
                        log.warning("dropped an event of another job: %s", event)
                        continue
                    if event.get("id") is None and event["type"] != "error":
                        continue
                    event["id"] = job["id"]
                    ending = event["type"] in ENDING_EVENTS
                    files = scratch.files_named(event, ending) if scratch else []
                    yield (map_paths(event, scratch.to_home) if scratch else event), files
                    if ending:
                        return
            finally:
                if scratch:
                    scratch.remove()

    def cancel(self, job_id: str) -> None:
        """Stop the job (its `cancelled` event comes through its `run`). An id the worker does not have
        yet is remembered: its `run`, when it comes, ends `cancelled` at once."""
        with self.gate:
            with self.worker.wakeup:
                known = any(q.id == job_id for q in self.worker._active())
            if not known:
                self.cancelled_early.add(job_id)
                return
        self.worker.on_cancel(protocol.Cancel(id=job_id))


# ----------------------------------------------------------------------------------------------- pool


@dataclasses.dataclass
class _Slot:
    index: int
    actor: Any
    ready: dict[str, Any] | None = None
    job: str | None = None
    frames: int = 0  # frames of the running job that reached the caller
    thread: threading.Thread | None = None
    asking: Any = None  # the pending `ready` call while the actor starts


def worker_died(job_id: str, frames: int, why: str) -> dict[str, Any]:
    return {
        "type": "error",
        "id": job_id,
        "code": "worker_died",
        "message": f"The Ray actor running this job stopped ({why}); the {frames} frame{'s' if frames != 1 else ''} "
        "that reached the server are kept.",
        "hint": "Generate again; Ray restarts the actor and the next job runs normally.",
        "field": None,
        "problems": None,
    }


class RayPool:
    """Ray actors and the jobs queued for them; every event goes to `on_event(job_id, event)`.

    address: None starts a local Ray cluster (or uses the one this process already joined);
    "auto" or "host:port" joins a running one. workers: number of actors (default: one per GPU of
    the cluster, else 1). ship: None sends file bytes only for actors on another node; True always.
    log_to_driver: the actors' log lines also on this process's stderr (when this pool starts Ray).
    A running job's actor sends a heartbeat every `heartbeat_s` while it has no event; one silent for
    `stall_timeout` (frozen, not dead) is killed and restarted, its job ending `worker_died`.
    """

    def __init__(
        self,
        on_event: EventSink,
        *,
        address: str | None = None,
        workers: int | None = None,
        ship: bool | None = None,
        torch_threads: int | None = None,
        max_restarts: int = -1,
        log_to_driver: bool = True,
        heartbeat_s: float = HEARTBEAT_SECONDS,
        stall_timeout: float = STALL_TIMEOUT,
    ) -> None:
        self.on_event = on_event
        self.heartbeat_s, self.stall_timeout = heartbeat_s, stall_timeout
        self.log_to_driver = log_to_driver
        self.address, self.requested, self.ship = address, workers, ship
        self.torch_threads, self.max_restarts = torch_threads, max_restarts
        self.owns_ray = False
        self.use_gpu = False
        self.node: str | None = None
        self.slots: list[_Slot] = []
        self.queue: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.actor_class = ray.remote(JobActor)

    def start(self) -> None:
        if not ray.is_initialized():
            # ray.init installs its own SIGTERM handler, which would end `zss serve` without its graceful
            # shutdown (jobs marked interrupted, actors stopped, then ray.shutdown): keep the caller's.
            main = threading.current_thread() is threading.main_thread()
            handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)} if main else {}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=self.log_to_driver)
            for number, handler in handlers.items():
                signal.signal(number, handler)
            self.owns_ray = True
        self.node = ray.get_runtime_context().get_node_id()
        gpus = int(ray.cluster_resources().get("GPU", 0))
        count = self.requested or gpus or 1
        log.info("Ray cluster: %s; %d actor%s on %s", ray.cluster_resources(), count, "s" * (count != 1),
                 "GPUs" if gpus else "CPUs")  # fmt: skip
        self.use_gpu = gpus > 0
        for i in range(count):
            slot = _Slot(i, self._new_actor())
            slot.thread = threading.Thread(target=self._serve, args=(slot,), name=f"zss-ray-{i}", daemon=True)
            self.slots.append(slot)
        for slot in self.slots:
            assert slot.thread is not None
            slot.thread.start()

    def _new_actor(self) -> Any:
        options: dict[str, Any] = {"max_restarts": self.max_restarts, "max_task_retries": 0, "max_concurrency": 4}
        options.update({"num_gpus": 1, "num_cpus": 1} if self.use_gpu else {"num_cpus": 1})
        return self.actor_class.options(**options).remote(self.torch_threads, self.heartbeat_s)

    def submit(self, job_id: str, job: dict[str, Any]) -> None:
        with self.cond:
            self.queue.append((job_id, job))
            self.cond.notify()

    def cancel(self, job_id: str) -> None:
        with self.cond:
            for i, (queued, _) in enumerate(self.queue):
                if queued == job_id:
                    del self.queue[i]
                    self.on_event(job_id, protocol.Cancelled(id=job_id, frames=[]).to_dict())
                    return
            slot = next((s for s in self.slots if s.job == job_id), None)
        if slot is not None:
            slot.actor.cancel.remote(job_id)  # its `cancelled` event comes through the job's stream

    def workers(self) -> list[dict[str, Any]]:
        return [
            {
                "gpu": "ray" if self.use_gpu else None,
                "device": s.ready.get("device") if s.ready else None,
                "gpu_total_bytes": s.ready.get("gpu_total_bytes") if s.ready else None,
                "pid": s.ready.get("pid") if s.ready else None,
                "node": s.ready.get("node") if s.ready else None,
                "ready": s.ready is not None,
                "busy": s.job is not None,
            }
            for s in self.slots
        ]

    def close(self) -> None:
        """Stop the actors (running jobs are cut off: the caller marks them) and a Ray this pool started."""
        self.stopping.set()
        with self.cond:
            self.cond.notify_all()
        for slot in self.slots:
            with contextlib.suppress(RayError):
                ray.kill(slot.actor, no_restart=True)
        for slot in self.slots:
            if slot.thread is not None:
                slot.thread.join(timeout=10)
        if self.owns_ray:
            ray.shutdown()

    # ------------------------------------------------------------------------------------- slot thread

    def _serve(self, slot: _Slot) -> None:
        while not self.stopping.is_set():
            if slot.ready is None and not self._wait_ready(slot):
                continue
            with self.cond:
                if not self.queue:
                    self.cond.wait(IDLE_WAIT_S)
                    continue
                job_id, job = self.queue.popleft()
                slot.job, slot.frames = job_id, 0
            try:
                self._run(slot, job_id, job)
            finally:
                with self.cond:
                    slot.job = None

    def _wait_ready(self, slot: _Slot) -> bool:
        """Whether the slot's actor answered `ready` (within READY_TIMEOUT_S; the caller asks again)."""
        if slot.asking is None:  # one question at a time: an actor waiting for a GPU gets no pile of them
            slot.asking = slot.actor.ready.remote()
        try:
            slot.ready = ray.get(slot.asking, timeout=READY_TIMEOUT_S)
        except GetTimeoutError:
            return False  # still starting (loading torch), or waiting for a free GPU in the cluster
        except ACTOR_RESTARTING:
            slot.asking = None
            self.stopping.wait(READY_TIMEOUT_S)
            return False  # Ray is restarting it: ask again (a new actor would orphan the restarted one)
        except RayActorError as e:  # out of restarts, or its constructor failed: make a fresh one
            slot.asking = None
            if self.stopping.is_set():
                return False
            log.error("Ray actor %d is gone (%s); starting a new one", slot.index, e)
            self.stopping.wait(RESTART_PAUSE_S)
            slot.actor = self._new_actor()
            return False
        slot.asking = None
        log.info("Ray actor %d ready on %s (pid %s, node %s)", slot.index, slot.ready.get("device"),
                 slot.ready.get("pid"), slot.ready.get("node"))  # fmt: skip
        return True

    def _run(self, slot: _Slot, job_id: str, job: dict[str, Any]) -> None:
        assert slot.ready is not None
        ship = self.ship if self.ship is not None else slot.ready.get("node") != self.node
        try:
            inputs = read_inputs(job) if ship else None
        except OSError as e:
            self.on_event(job_id, protocol.Error(id=job_id, code="control_image_invalid", field="control.images",
                          message=f"cannot read {e.filename}: {e.strerror}", hint="Send the job again.").to_dict())  # fmt: skip
            return
        ended = stalled = False
        try:
            stream = slot.actor.run.remote(job, inputs)
            while True:
                if not ray.wait([stream], timeout=self.stall_timeout)[0] and not stalled:
                    # Not even a heartbeat: the actor's process is frozen. Kill it; Ray restarts it,
                    # and the stream then raises RayActorError below.
                    log.error("Ray actor %d silent for %.0f s running job %s; killing it", slot.index,
                              self.stall_timeout, job_id)  # fmt: skip
                    stalled = True
                    ray.kill(slot.actor, no_restart=False)
                    continue
                try:
                    ref = next(stream)
                except StopIteration:
                    break
                event, files = ray.get(ref)
                if event.get("type") == "heartbeat":
                    continue
                write_files(files)
                if event.get("type") == "frame":
                    slot.frames += 1
                ended = event.get("type") in ENDING_EVENTS
                self.on_event(job_id, event)
        except RayTaskError as e:  # the actor lives, but `run` raised (a bug, or its scratch folder failed)
            log.error("job %s failed in Ray actor %d: %s", job_id, slot.index, e)
            if not ended:
                self.on_event(job_id, protocol.Error(id=job_id, code="internal", message=f"the Ray actor failed: {e}",
                              hint="This is likely a bug; the Ray worker log has the details.").to_dict())  # fmt: skip
            return
        except RayError as e:
            if self.stopping.is_set():
                return  # the server is closing: the store marks the job interrupted
            log.error("Ray actor %d died running job %s: %s", slot.index, job_id, e)
            slot.ready = None  # a restarted actor has a new pid; ask again
            if not ended:
                why = f"silent for {self.stall_timeout:.0f} s, so it was killed" if stalled else type(e).__name__
                self.on_event(job_id, worker_died(job_id, slot.frames, why))
            return
        except OSError as e:
            log.exception("cannot write the files of job %s", job_id)
            self.on_event(job_id, protocol.Error(id=job_id, code="output_not_writable",
                          message=f"cannot write {e.filename}: {e.strerror}", hint="Free disk space.").to_dict())  # fmt: skip
            return
        if not ended:
            self.on_event(job_id, worker_died(job_id, slot.frames, "its event stream ended early"))


# --------------------------------------------------------------------------------------------- server


class RayBackend(Backend):
    """`zss serve --backend ray`: the store's jobs run on a `RayPool`; events go straight to the store."""

    def __init__(self, config: ServerConfig, store: JobStore, **pool: Any) -> None:
        self.store = store
        pool.setdefault("address", config.ray_address)
        pool.setdefault("workers", config.ray_workers)
        self.pool = RayPool(store.append, **pool)
        self._stop = threading.Event()
        self._expiry = threading.Thread(target=self._expire, name="zss-expire", daemon=True)

    def start(self) -> None:
        # In this (long-lived) thread, not a helper thread: a Ray cluster started here is tied to the
        # thread that started it (its processes get a parent-death signal when that thread ends).
        self.pool.start()
        self._expiry.start()

    def submit(self, job_id: str, job: dict[str, Any]) -> None:
        self.pool.submit(job_id, job)

    def cancel(self, job_id: str) -> None:
        self.pool.cancel(job_id)

    def workers(self) -> list[dict[str, Any]]:
        return self.pool.workers()

    def close(self) -> None:
        self._stop.set()
        self.pool.close()
        self.store.interrupt_active()

    def _expire(self) -> None:
        while not self._stop.wait(EXPIRE_EVERY_S):
            for job_id in self.store.expire():
                log.info("deleted job %s (older than --keep-hours)", job_id)


# --------------------------------------------------------------------------------------------- client


class RayClient(GeneratorClient):
    """A `GeneratorClient` on a Ray cluster (for `zss batch --backend ray`): jobs with local paths in,
    protocol events out — what a `LocalClient` gives, with many workers behind it."""

    def __init__(self, address: str | None = None, workers: int | None = None, **pool: Any) -> None:
        self._events: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._pending: set[str] = set()
        pool.setdefault("log_to_driver", False)  # the actors' logs would break a progress bar; Ray keeps them
        self.pool = RayPool(self._put, address=address, workers=workers, **pool)
        self.ready: Ready | None = None
        self._started = False

    def _put(self, job_id: str, event: dict[str, Any]) -> None:
        self._events.put(protocol.message_from_dict(event, expect="event"))

    def start(self, wait: bool = True, timeout: float = 120.0) -> Ready | None:
        if not self._started:
            self.pool.start()
            self._started = True
        return self.wait_ready(timeout) if wait else None

    def wait_ready(self, timeout: float = 120.0) -> Ready:
        if not self._started:
            self.start(wait=False)
        deadline = time.monotonic() + timeout
        while not any(s.ready for s in self.pool.slots):
            if time.monotonic() > deadline:
                raise WorkerStartError(f"no Ray actor became ready within {timeout:.0f} s; see the Ray logs")
            time.sleep(0.1)
        first = next(s.ready for s in self.pool.slots if s.ready)
        self.ready = Ready(
            protocol=protocol.PROTOCOL_VERSION,
            versions=dict(first.get("versions") or {}),
            device=str(first.get("device")),
            dtype=str(first.get("dtype")),
            gpu_free_bytes=None,
            gpu_total_bytes=first.get("gpu_total_bytes"),
            pid=0,
        )
        return self.ready

    def submit(self, job: protocol.Job | dict[str, Any]) -> str:
        d = job.to_dict() if isinstance(job, protocol.Job) else dict(job)
        if not self._started:
            raise WorkerNotRunning("start() the Ray client before submitting")
        job_id = str(d["id"])
        self._pending.add(job_id)
        self.pool.submit(job_id, d)
        return job_id

    def poll_events(self) -> list[Message]:
        out: list[Message] = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return out
            if event.type in ENDING_EVENTS:
                self._pending.discard(getattr(event, "id", ""))
            out.append(event)

    def cancel(self, job_id: str) -> None:
        self.pool.cancel(job_id)

    def close(self) -> None:
        if self._started:
            self.pool.close()
            self._started = False

    def is_alive(self) -> bool:
        return self._started

    def describe(self) -> str:
        return f"Ray cluster ({self.pool.address or 'local'}), {len(self.pool.slots)} actors"

    def diagnostics(self, lines: int = 40) -> str:
        return "the actors' logs are in the Ray session folder (/tmp/ray/session_latest/logs on each node)"

    @property
    def pending(self) -> list[str]:
        return sorted(self._pending)
