"""The generator process: ``python -m zss_core.worker`` (or ``zss worker``).

Reads one JSON request per line on stdin, writes one JSON event per line on stdout
(docs/protocol.md). stdout carries the protocol only: at start-up the real stdout is kept for
events and file descriptor 1 is pointed at stderr, so anything a library prints (warnings, tqdm,
C extensions) lands in the log instead of corrupting the protocol.

Threads: a reader thread parses requests and answers ``ping``/``cancel``/``shutdown`` at once; the
main thread runs jobs one at a time from a queue. The loaded pipeline stays in memory between jobs
and is replaced only when a job asks for another model, device or precision.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import protocol
from .lines import LineTooLong, bounded_lines
from .protocol import Job

log = logging.getLogger("zss.worker")
HEARTBEAT_SECONDS = 5.0  # between heartbeat events (env ZSS_HEARTBEAT_SECONDS); clients allow several times this


class EventWriter:
    """Serialises events onto the protocol stream from any thread."""

    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, event: protocol.Message) -> None:
        line = event.to_json()
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


def take_over_stdout():
    """Return a private stream onto the real stdout and send fd 1 (and sys.stdout) to stderr."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", encoding="utf-8", buffering=1)


@dataclass
class QueuedJob:
    """A queued generation job, or a model download (``download`` set, ``job`` None)."""

    job: Job | None
    cancel: threading.Event = field(default_factory=threading.Event)
    download: protocol.Download | None = None

    @property
    def id(self) -> str:
        if self.download is not None:
            return self.download.id
        assert self.job is not None  # a queued entry is a job or a download
        return self.job.id


class PipelineCache:
    """Keeps the one loaded pipeline; a job with the same key reuses it (no reload)."""

    def __init__(self, loader=None):
        from .models import load_pipeline

        self._loader = loader or load_pipeline
        self.key = None
        self.pipe = None

    def get(self, job: Job):
        """(pipeline, seconds spent loading: 0.0 when reused). The sampler sets the job's scheduler."""
        from .models import MemoryOptions
        from .runner import check_memory

        memory = MemoryOptions(job.attention_slicing, job.vae_tiling, job.cpu_offload)
        key = (
            job.model,
            job.controlnet_model if job.control else None,
            job.device,
            job.dtype,
            job.allow_pickle,
            memory,
            job.fast,  # a compiled / channels-last UNet belongs to its pipeline
            job.image_guidance is not None,  # instruction editing: the model is checked for that mode
        )
        if key == self.key:
            return self.pipe, 0.0
        self.release()
        check_memory(job)  # refuse a job that cannot fit (out_of_memory) before loading anything
        started = time.perf_counter()
        self.pipe = self._loader(
            key[0],
            key[1],
            device=key[2],
            dtype=key[3],
            scheduler=job.scheduler,
            allow_pickle=job.allow_pickle,
            memory=memory,
            fast=job.fast,
            edit=key[7],
        )
        self.key = key
        return self.pipe, time.perf_counter() - started

    def release(self) -> None:
        from .runner import free_memory

        self.pipe, self.key = None, None
        free_memory()


class ProgressReporter:
    """Turns a job's stages into ``progress`` events, with an estimate of the time left.

    ``elapsed`` counts from the job's start (model loading included). ``eta`` is None until a stage
    that advances at a measurable rate (denoising, decoding, writing) has done its first step; then
    it is that stage's time per step so far times the steps left in it.
    """

    TIMED = ("denoise", "decode", "write")

    def __init__(self, events: EventWriter, job_id: str):
        self.events, self.job_id = events, job_id
        self.started = time.perf_counter()
        self.stage_started: dict[str, float] = {}

    def __call__(self, stage: str, step: int, total: int) -> None:
        now = time.perf_counter()
        if step == 0 or stage not in self.stage_started:
            self.stage_started[stage] = now
        eta = None
        if stage in self.TIMED and step > 0:
            eta = round((now - self.stage_started[stage]) / step * (total - step), 3)
        self.events.send(
            protocol.Progress(
                id=self.job_id,
                step=step,
                total=total,
                fraction=step / total if total else 0.0,
                elapsed=round(now - self.started, 3),
                eta=eta,
                stage=stage,
            )
        )


class Worker:
    def __init__(self, events: EventWriter, requests, cache: PipelineCache | None = None, downloader=None):
        self.events = events
        self.downloader = downloader or download_model
        self.requests = requests
        self.cache = cache or PipelineCache()
        self.queue: collections.deque[QueuedJob] = collections.deque()
        self.current: QueuedJob | None = None
        self.lock = threading.Lock()
        self.wakeup = threading.Condition(self.lock)
        self.closing = False

    # -- reader thread ---------------------------------------------------------------------
    def read_requests(self) -> None:
        """Parse stdin; answer control requests at once; enqueue jobs. EOF or `shutdown` means shut down.

        No line stops this loop early: a line that is too long, not UTF-8, not JSON, too deeply nested or
        not a request is answered with bad_request, and anything else a line raises is answered with
        `internal`; the next line is read either way (issue 12).
        """
        try:
            for line in self.requests:
                try:
                    if not self.handle_line(line):
                        break
                except Exception as exc:  # one bad line must never leave the worker deaf
                    log.exception("request line failed")
                    self.events.send(
                        protocol.Error(
                            code="internal",
                            message=f"The request could not be handled: {type(exc).__name__}: {exc}",
                            hint="This is likely a bug; the generator log has the details. The worker goes on.",
                        )
                    )
        finally:
            with self.wakeup:
                self.closing = True
                if self.current is not None:
                    self.current.cancel.set()
                self.wakeup.notify_all()

    def handle_line(self, line: bytes | str | LineTooLong) -> bool:
        """Answer or enqueue one request line; False when it asks the worker to shut down."""
        if isinstance(line, LineTooLong):
            self.refuse(f"line is {line.size} bytes; the limit is {line.limit} bytes (it was read and dropped)", None)
            return True
        if not line.strip():
            return True
        try:
            message = protocol.message_from_json(line, expect="request")
        except protocol.ProtocolError as exc:
            self.refuse(str(exc), exc.field)
            return True
        if isinstance(message, protocol.Shutdown):
            return False
        handlers: dict[type, Callable[[Any], None]] = {
            protocol.Generate: self.on_generate,
            protocol.Cancel: self.on_cancel,
            protocol.Ping: self.on_ping,
            protocol.Download: self.on_download,
        }
        handlers[type(message)](message)
        return True

    def refuse(self, message: str, field: str | None) -> None:
        """Answer a line that is not a valid request."""
        self.events.send(
            protocol.Error(
                code="bad_request",
                message=message,
                field=field,
                hint="Send one JSON request per line, UTF-8, within the limits of docs/protocol.md.",
            )
        )

    def beat(self, interval: float, stop: threading.Event) -> None:
        """Heartbeat thread: a `heartbeat` event now and every `interval` seconds until `stop` is set, busy
        or idle. It waits on nothing a job does, so a job stuck in one long step still beats while a
        frozen process falls silent, which is what the client's stall timeout tells apart."""
        while True:
            with self.wakeup:
                running = self.current.id if self.current is not None else None
                queued = len(self.queue)
            self.events.send(protocol.Heartbeat(interval=interval, running=running, queued=queued))
            if stop.wait(interval):
                return

    def on_ping(self, message: protocol.Ping) -> None:
        self.events.send(protocol.Pong(id=message.id))

    def on_generate(self, message: protocol.Generate) -> None:
        raw = message.job
        job_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        problems = (
            protocol.validate_job(raw) if isinstance(raw, dict) else [protocol.Problem("job", "must be an object")]
        )
        if problems:
            self.events.send(protocol.error_for_problems(job_id, problems))
            return
        from .models import SCHEDULER_PACKAGES, scheduler_unavailable

        job = Job.from_dict(raw)
        if (missing := scheduler_unavailable(job.scheduler)) is not None:  # what stdlib validation cannot see
            self.events.send(
                protocol.Error(
                    id=job.id,
                    code="bad_request",
                    field="scheduler",
                    message=missing,
                    hint="Choose another scheduler (ddim, euler, dpmpp, unipc), or install the package into the "
                    f"generator environment: `pip install {SCHEDULER_PACKAGES[job.scheduler]}`.",
                )
            )
            return
        self._enqueue(QueuedJob(job))

    def on_download(self, message: protocol.Download) -> None:
        if not protocol.JOB_ID_PATTERN.fullmatch(message.id):
            self.events.send(
                protocol.Error(
                    code="bad_request",
                    field="id",
                    message=f"bad task id {message.id!r}",
                    hint="Use letters, digits, '_', '.' or '-'.",
                )
            )
            return
        self._enqueue(QueuedJob(None, download=message))

    def _enqueue(self, task: QueuedJob) -> None:
        with self.wakeup:
            if any(q.id == task.id for q in self._active()):
                self.events.send(
                    protocol.Error(
                        id=task.id,
                        code="duplicate_job",
                        field="id",
                        message=f"A job with id '{task.id}' is already queued or running.",
                        hint="Give every job a new id.",
                    )
                )
                return
            position = len(self.queue) + (self.current is not None)
            self.queue.append(task)
            self.events.send(protocol.Accepted(id=task.id, queue_position=position))
            self.wakeup.notify_all()

    def on_cancel(self, message: protocol.Cancel) -> None:
        with self.wakeup:
            if self.current is not None and self.current.id == message.id:
                self.current.cancel.set()  # the job loop reports `cancelled` within one step
                return
            for queued in self.queue:
                if queued.id == message.id:
                    self.queue.remove(queued)
                    self.events.send(protocol.Cancelled(id=message.id, frames=[]))
                    return
        self.events.send(
            protocol.Error(
                id=message.id,
                code="unknown_job",
                field="id",
                message=f"No queued or running job has id '{message.id}'.",
                hint="It may have finished already.",
            )
        )

    def _active(self):
        return ([self.current] if self.current else []) + list(self.queue)

    # -- main thread -----------------------------------------------------------------------
    def run(self) -> None:
        while True:
            with self.wakeup:
                while not self.queue and not self.closing:
                    self.wakeup.wait()
                if self.closing:
                    return
                self.current = self.queue.popleft()
            try:
                if self.current.download is not None:
                    self.run_download(self.current.download)
                else:
                    self.run_job(self.current)
            finally:
                with self.wakeup:
                    self.current = None

    def run_download(self, request: protocol.Download) -> None:
        started = time.perf_counter()
        ProgressReporter(self.events, request.id)("download", 0, 1)
        try:
            path = self.downloader(request.model)
        except Exception as exc:  # hub errors come in many types; each is reported, none kills the worker
            log.exception("download of %s failed", request.model)
            offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
            hint = (
                "Downloads are off (online access is disabled): allow online access and try again."
                if offline
                else "Check the hub id's spelling and the network connection."
            )
            self.events.send(
                protocol.Error(
                    id=request.id,
                    code="download_failed",
                    field="model",
                    hint=hint,
                    message=f"Could not download '{request.model}': {type(exc).__name__}: {exc}",
                )
            )
            return
        self.events.send(
            protocol.Downloaded(
                id=request.id, model=request.model, path=path, seconds=round(time.perf_counter() - started, 3)
            )
        )

    def run_job(self, queued: QueuedJob) -> None:
        from .models import ModelError
        from .runner import JobCallbacks, JobError, free_memory, is_out_of_memory, run_job

        job = queued.job
        assert job is not None  # run_job is only called for generate requests
        report = ProgressReporter(self.events, job.id)

        def frame(index, path):
            self.events.send(protocol.Frame(id=job.id, index=index, path=path))

        def preview(p):  # a previews.Preview
            self.events.send(protocol.Preview(id=job.id, **dataclasses.asdict(p)))

        try:
            report("load", 0, 1)
            pipe, load_seconds = self.cache.get(job)
            if queued.cancel.is_set():
                self.events.send(protocol.Cancelled(id=job.id, frames=[]))
                return
            callbacks = JobCallbacks(frame=frame, should_cancel=queued.cancel.is_set, stage=report, preview=preview)
            outcome = run_job(job, pipe, callbacks, model_load_seconds=load_seconds, free_bytes=free_gpu_bytes(pipe))
        except ModelError as exc:
            self.cache.release()
            self.events.send(
                protocol.Error(id=job.id, code=exc.code, message=exc.message, hint=exc.hint, field=exc.field)
            )
            return
        except JobError as exc:
            self.events.send(
                protocol.Error(id=job.id, code=exc.code, message=exc.message, hint=exc.hint, field=exc.field)
            )
            return
        except Exception as exc:  # the worker must survive anything a job does
            log.exception("job %s failed", job.id)
            if is_out_of_memory(exc):  # outside sampling (loading, writing): still the machine's limit
                free_memory()
                self.events.send(
                    protocol.Error(
                        id=job.id,
                        code="out_of_memory",
                        field="chunk",
                        message=f"Out of memory: {type(exc).__name__}: {exc}",
                        hint="Lower chunk, width, height or frames, or use a smaller model.",
                    )
                )
                return
            self.events.send(
                protocol.Error(
                    id=job.id,
                    code="internal",
                    message=f"{type(exc).__name__}: {exc}",
                    hint="This is likely a bug; the generator log has the details.",
                )
            )
            return
        if outcome.status == "cancelled":
            self.events.send(protocol.Cancelled(id=job.id, frames=outcome.frames, manifest=outcome.manifest))
        else:
            self.events.send(
                protocol.Done(
                    id=job.id,
                    frames=outcome.frames,
                    video=outcome.video,
                    contact_sheet=outcome.contact_sheet,
                    manifest=outcome.manifest,
                    seconds=round(outcome.seconds, 3),
                    model_load_seconds=round(load_seconds, 3),
                    notes=outcome.extra.get("notes", []),
                )
            )


def download_model(model: str) -> str:
    """Fetch a hub model's diffusers files into the Hugging Face cache; returns the local folder."""
    from diffusers import DiffusionPipeline

    return str(DiffusionPipeline.download(model))


def free_gpu_bytes(pipe) -> int | None:
    """Free memory on the pipeline's GPU right now (what an automatic chunk size must fit), or None."""
    import torch

    device = pipe._execution_device
    return int(torch.cuda.mem_get_info(device)[0]) if device.type == "cuda" else None


def ready_event() -> protocol.Ready:
    """What this process can do: versions, default device and precision, GPU memory."""
    import torch

    from .export import library_versions
    from .models import resolve_device, resolve_dtype

    device = resolve_device("auto")
    free = total = None
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info()
    return protocol.Ready(
        protocol=protocol.PROTOCOL_VERSION,
        versions=library_versions(),
        device=str(device),
        dtype=str(resolve_dtype("auto", device)).replace("torch.", ""),
        gpu_free_bytes=free,
        gpu_total_bytes=total,
        pid=os.getpid(),
    )


def main(argv=None) -> int:
    logging.basicConfig(
        level=os.environ.get("ZSS_LOG_LEVEL", "INFO"),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    os.environ.setdefault("TQDM_DISABLE", "1")
    events = EventWriter(take_over_stdout())
    # Bytes, bounded: a line is decoded (strictly) only once it is known to fit the limit.
    worker = Worker(events, bounded_lines(sys.stdin.buffer, protocol.MAX_LINE_BYTES))
    ready = ready_event()  # imports torch first: a Python without the generator's stack names torch
    from .export import ignore_file_size_signal

    ignore_file_size_signal()
    events.send(ready)
    reader = threading.Thread(target=worker.read_requests, name="zss-requests", daemon=True)
    reader.start()
    stop_beating = threading.Event()
    interval = max(0.1, float(os.environ.get("ZSS_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS)))
    threading.Thread(target=worker.beat, args=(interval, stop_beating), name="zss-heartbeat", daemon=True).start()
    worker.run()
    stop_beating.set()
    worker.cache.release()
    log.info("worker exiting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
