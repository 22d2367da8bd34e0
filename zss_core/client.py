"""The seam between a front end (the Blender add-on, tests, tools) and a generator (docs/protocol.md).

`GeneratorClient` is everything the add-on may call: submit a job, poll typed events without blocking,
cancel, close. `LocalClient` runs the generator as a local worker process that speaks JSON lines over
stdio; the network client of `zss serve` implements the same class.

Standard library only: the Blender add-on uses this from Blender's Python, which has no torch.
Torch lives in a separate interpreter (`python_executable`), so a crash, a hang or an out-of-memory
there never takes Blender down; the client reports it as a `worker_died` event.
Reading the pipe and decoding JSON happen in the process's reader thread; the caller's thread only
drains a queue of decoded events, so `poll_events` costs microseconds whatever the worker writes.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import os
import queue
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Self

from . import protocol
from .process import WorkerNotRunning, WorkerProcess
from .protocol import Cancel, Download, Error, Generate, Job, Message, Ping, Ready, Shutdown

__all__ = [
    "PACKAGE_PARENT",
    "GeneratorClient",
    "LocalClient",
    "WorkerClient",
    "WorkerNotRunning",
    "WorkerStartError",
    "child_env",
]

# The folder that holds the zss_core package: put on the child's PYTHONPATH so the worker
# imports from the repository or from the installed Blender extension without pip install.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ENDING_EVENTS = ("done", "error", "cancelled", "downloaded")  # a job or download is over after one of these
HISTORY_EVENTS = 5000
# Seconds a busy worker may stay silent (no line at all, heartbeats included) before the client stops it
# as stalled. The worker beats every few seconds (worker.HEARTBEAT_SECONDS); a frozen one falls silent.
STALL_TIMEOUT = 30.0
SETUP_HINT = (
    "Check that this Python is the generator's environment (torch, diffusers, transformers): "
    "`zss setup-env DIR --check` names what is missing and `zss setup-env DIR` installs it."
)


class WorkerStartError(RuntimeError):
    """The generator could not be started or did not report ready; the message says why and what to do."""


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child Python that runs this copy of zss_core (the worker, setup_env).

    `env` (default: this process's environment) with the package parent first on PYTHONPATH (the
    repository or the installed extension works without pip install), UTF-8 pipes (Windows would
    otherwise use the ANSI code page) and unbuffered output (events arrive when they are written).
    """
    out = dict(os.environ if env is None else env)
    out["PYTHONUNBUFFERED"] = "1"
    out["PYTHONIOENCODING"] = "utf-8"
    old = out.get("PYTHONPATH")
    out["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + old if old else "")
    return out


class GeneratorClient(abc.ABC):
    """What the add-on talks to: the local worker process today, `zss serve` next.

    Meant for a single consumer thread (a Blender timer, a test): events come out of `poll_events`
    in the order the generator sent them, each once; a client that loses its generator turns every
    pending job into an `error` event with code `worker_died`.
    """

    ready: Ready | None = None  # the generator's Ready event once it arrived, else None

    @abc.abstractmethod
    def start(self, wait: bool = True, timeout: float = 120.0) -> Ready | None:
        """Start (or connect to) the generator; with wait, return its Ready event or raise WorkerStartError."""

    @abc.abstractmethod
    def wait_ready(self, timeout: float = 120.0) -> Ready:
        """Start the generator if needed and block until it is ready; raises WorkerStartError."""

    @abc.abstractmethod
    def submit(self, job: Job | dict[str, Any]) -> str:
        """Send a job; returns its id. Raises ValueError for a bad id, WorkerNotRunning when not running."""

    @abc.abstractmethod
    def poll_events(self) -> list[Message]:
        """Every event that arrived since the last call, oldest first; never blocks."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None:
        """Ask the generator to stop a job; it answers `cancelled` (or `error` for an unknown id)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the generator (or disconnect); safe to call twice."""

    @abc.abstractmethod
    def is_alive(self) -> bool:
        """Whether the generator can take requests now."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line saying where the generator runs, for the panel and error messages."""

    @abc.abstractmethod
    def diagnostics(self, lines: int = 40) -> str:
        """The tail of the generator's log, for error messages."""

    @property
    @abc.abstractmethod
    def pending(self) -> list[str]:
        """Ids of submitted jobs that have not ended yet."""

    def __enter__(self) -> Self:
        """Makes sure the generator is ready (starting it if needed)."""
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclasses.dataclass(frozen=True)
class _Exited:
    """Queue marker: stdout closed and the process ended with `returncode`."""

    returncode: int
    unexpected: bool


class _Run:
    """One start of the worker: its process and the queue its reader thread fills with decoded events."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], cwd: str | None) -> None:
        self.events: queue.SimpleQueue[Message | _Exited] = queue.SimpleQueue()
        self.process = WorkerProcess(command, self._on_line, self._on_exit, env=env, cwd=cwd)
        self.ended = False  # its end was handled (stopped by us, or the exit was taken from the queue)
        self.last_heard = time.monotonic()  # when the reader thread last got a line (any line)
        self.beats = False  # a heartbeat came: this worker promises to beat, so its silence means a stall

    def _on_line(self, line: str) -> None:
        """Reader thread: decode one stdout line; anything that is not an event goes to the log."""
        self.last_heard = time.monotonic()
        if not line.strip():
            return
        try:
            event = protocol.message_from_json(line, expect="event")
        except protocol.ProtocolError as e:
            self.process.log(f"[unparsed stdout] {line.rstrip()[:2000]} ({e})")
            return
        self.events.put(event)

    def _on_exit(self, returncode: int, unexpected: bool) -> None:
        self.events.put(_Exited(returncode, unexpected))


class LocalClient(GeneratorClient):
    """The generator as a local worker process (`python -m zss_core.worker`) over stdio.

    WorkerProcess owns the process's life (start, stop, exit, stderr); this class owns the protocol:
    requests, the ids still pending, the event queue and the `worker_died` events of a lost process.

    A worker that beats (sends `heartbeat` events) and then stays silent for `stall_timeout` seconds while
    a job is pending is frozen (suspended, hung in a driver, swapped to death): the client kills it and
    reports every pending job as `worker_stalled`, naming the frames already written; the next start
    (wait_ready, or the add-on's ensure_client) runs a fresh worker. `stall_timeout=None` turns this off.
    Heartbeats are not handed out by poll_events; the last one is kept in `heartbeat`.
    """

    def __init__(
        self,
        python_executable: str,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        module: str = "zss_core.worker",
        extra_args: Iterable[str] = (),
        stall_timeout: float | None = STALL_TIMEOUT,
    ) -> None:
        self.python_executable = python_executable
        self.stall_timeout = stall_timeout
        self.env = env
        self.cwd = cwd
        self.module = module
        self.extra_args = tuple(extra_args)
        self.ready: Ready | None = None
        self.heartbeat: protocol.Heartbeat | None = None  # the worker's last heartbeat (kept, not handed out)
        self.history: collections.deque[Message] = collections.deque(maxlen=HISTORY_EVENTS)  # handed out, oldest first
        self._run: _Run | None = None
        self._out: collections.deque[Message] = collections.deque()  # taken from the queue, not handed out yet
        self._pending: list[str] = []  # submitted ids without done/error/cancelled/downloaded yet
        self._frames: dict[str, list[str]] = {}  # frame paths each pending job reported so far
        self._busy_since = 0.0  # when the first of the pending ids was sent (silence counts from then)

    @property
    def process(self) -> subprocess.Popen[str] | None:
        """The last subprocess.Popen (None before the first start); kept after stop() for its exit code."""
        return None if self._run is None else self._run.process.popen

    def command(self) -> list[str]:
        return [self.python_executable, "-u", "-m", self.module, *self.extra_args]

    def child_env(self) -> dict[str, str]:
        """The worker's environment: `child_env(self.env)`."""
        return child_env(self.env)

    def describe(self) -> str:
        return f"local: {self.python_executable}"

    # ------------------------------------------------------------------ life

    def start(self, wait: bool = True, timeout: float = 120.0) -> Ready | None:
        """Start the worker; with wait, return the Ready event or raise WorkerStartError."""
        if self.is_alive():
            raise RuntimeError("the generator process is already running; use restart() to replace it")
        if self._run is not None:
            self._run.process.stop(timeout=1.0)  # it has ended: this only closes its pipes
        self.ready = None
        self.heartbeat = None
        self.history.clear()
        self._out.clear()
        self._pending = []
        self._frames = {}
        run = self._run = _Run(self.command(), self.child_env(), self.cwd)
        try:
            run.process.start()
        except OSError as e:
            run.ended = True
            raise WorkerStartError(
                f"Could not start the generator with {self.python_executable!r}: {e}. "
                "Set the generator Python to an existing python executable."
            ) from e
        return self.wait_ready(timeout) if wait else None

    def wait_ready(self, timeout: float = 120.0) -> Ready:
        """Start the worker if needed (not started, closed, or its death already reported) and block until
        it reports ready. Events that arrive meanwhile stay for poll_events; the Ready event itself is
        returned (and kept in `ready`), not handed out again.

        Raises WorkerStartError when it exits first, stays silent for `timeout` seconds (it is then
        stopped: a worker stuck in start-up reads no shutdown request) or speaks another protocol.
        """
        run = self._run
        if run is None or run.ended or (self.ready is not None and not self.is_alive()):
            self.start(wait=False)
            run = self._run
        assert run is not None
        deadline = time.monotonic() + timeout
        while self.ready is None:
            try:
                item = run.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop(timeout=1.0)
                raise WorkerStartError(
                    f"The generator did not report ready within {timeout:g} s ({self.describe()}). "
                    f"{SETUP_HINT}\n{self.diagnostics()}"
                ) from None
            if isinstance(item, _Exited):
                self.stop()  # closes the pipes; the process has ended
                run.ended = True
                self._pending = []  # the exception is the report
                raise WorkerStartError(
                    f"The generator exited during start-up (exit code {item.returncode}, {self.describe()}). "
                    f"{SETUP_HINT}\n{self.diagnostics()}"
                )
            if isinstance(item, Ready):
                self.ready = item
            else:
                self._out.extend(self._take(item))
        if self.ready.protocol != protocol.PROTOCOL_VERSION:
            found = self.ready.protocol
            self.stop()
            raise WorkerStartError(
                f"The generator speaks protocol {found}, this client speaks "
                f"{protocol.PROTOCOL_VERSION}; install the same zss version in both "
                f"(generator: {self.python_executable})."
            )
        return self.ready

    def is_alive(self) -> bool:
        return self._run is not None and self._run.process.is_alive()

    def stop(self, timeout: float = 5.0) -> int | None:
        """Ask the worker to exit, then terminate, then kill; safe to call twice. Returns the exit code."""
        run = self._run
        if run is None:
            return None
        if run.process.is_alive():
            self._pending = []  # we end them; a worker that already died still reports worker_died
            run.ended = True
        return run.process.stop(timeout, farewell=Shutdown().to_json())

    def close(self) -> None:
        self.stop()

    def restart(self, wait: bool = True, timeout: float = 120.0) -> Ready | None:
        self.stop()
        return self.start(wait=wait, timeout=timeout)

    def stderr_tail(self, n: int = 40) -> str:
        """The last n lines the worker wrote to stderr (plus unparsable stdout lines)."""
        return "" if self._run is None else self._run.process.stderr_tail(n)

    def diagnostics(self, lines: int = 40) -> str:
        return self.stderr_tail(lines)

    # -------------------------------------------------------------- requests

    def _send(self, message: Message) -> None:
        if self._run is None:
            raise WorkerNotRunning("The generator process is not running; start it first.")
        self._run.process.write_line(message.to_json())

    def send_bytes(self, data: bytes) -> None:
        """Write raw bytes to the worker's stdin, unchecked (tests and tools that play a hostile client)."""
        if self._run is None:
            raise WorkerNotRunning("The generator process is not running; start it first.")
        self._run.process.write_bytes(data)

    def submit(self, job: Job | dict[str, Any]) -> str:
        """Send a job (Job or dict); returns its id. The worker validates it fully."""
        d = job.to_dict() if isinstance(job, Job) else dict(job)
        job_id = d.get("id")
        if not isinstance(job_id, str) or not protocol.JOB_ID_PATTERN.fullmatch(job_id):
            raise ValueError(f"job id must match {protocol.JOB_ID_PATTERN.pattern}, got {job_id!r}")
        if job_id in self._pending:
            raise ValueError(f"job {job_id!r} is already queued or running")
        self._send(Generate(job=d))
        self._add_pending(job_id)
        return job_id

    def download(self, model: str, task_id: str) -> str:
        """Ask the worker to fetch hub model ``model`` into the local cache; returns the task id.

        Answered by ``accepted``, ``progress`` (stage "download"), then ``downloaded`` or ``error``.
        """
        if not protocol.JOB_ID_PATTERN.fullmatch(task_id) or task_id in self._pending:
            raise ValueError(f"task id must be new and match {protocol.JOB_ID_PATTERN.pattern}, got {task_id!r}")
        self._send(Download(id=task_id, model=model))
        self._add_pending(task_id)
        return task_id

    def cancel(self, job_id: str) -> None:
        self._send(Cancel(id=job_id))

    def ping(self, id: str | None = None) -> None:
        self._send(Ping(id=id))

    def _add_pending(self, job_id: str) -> None:
        if not self._pending:
            self._busy_since = time.monotonic()
        self._pending.append(job_id)

    @property
    def pending(self) -> list[str]:
        """Ids of submitted jobs that have not ended yet."""
        return list(self._pending)

    # ---------------------------------------------------------------- events

    def _take(self, item: Message | _Exited) -> list[Message]:
        """Turn one queue item into the events to hand out, updating `ready` and the pending ids."""
        if isinstance(item, _Exited):
            if self._run is not None:
                self._run.ended = True
            if not item.unexpected:
                self._pending = []
                return []
            message = f"The generator process stopped unexpectedly (exit code {item.returncode})."
            hint = "See the generator log below; generate again to restart it.\n" + self.stderr_tail()
            ids: list[str | None] = list(self._pending) or [None]
            self._pending = []
            return [Error(id=job_id, code="worker_died", message=message, hint=hint) for job_id in ids]
        job_id = getattr(item, "id", None)
        if isinstance(item, Ready):
            self.ready = item
        elif isinstance(item, protocol.Heartbeat):
            if self._run is not None:
                self._run.beats = True
            self.heartbeat = item
            return []  # liveness for this client, not an event for its consumer
        elif isinstance(item, protocol.Frame) and job_id in self._pending:
            self._frames.setdefault(item.id, []).append(item.path)
        elif item.type in ENDING_EVENTS and job_id in self._pending:
            self._pending.remove(job_id)
            self._frames.pop(job_id, None)
        return [item]

    def _stall_deadline(self) -> float | None:
        """When the worker counts as stalled if it stays silent: None while idle, or when it never beat."""
        run = self._run
        if self.stall_timeout is None or run is None or run.ended or not run.beats or not self._pending:
            return None
        return max(run.last_heard, self._busy_since) + self.stall_timeout

    def _check_stall(self) -> bool:
        """Past the stall deadline: kill the worker and queue a `worker_stalled` error per pending job."""
        deadline = self._stall_deadline()
        if deadline is None or time.monotonic() < deadline:
            return False
        assert self._run is not None and self.stall_timeout is not None
        run, silent = self._run, time.monotonic() - (deadline - self.stall_timeout)
        run.ended = True
        run.process.kill()
        tail = self.stderr_tail()
        for job_id in self._pending:
            frames = self._frames.get(job_id, [])
            kept = (
                f"{len(frames)} frame(s) were written before it stopped: {', '.join(frames)}."
                if frames
                else "No frames were written."
            )
            self._out.append(
                Error(
                    id=job_id,
                    code="worker_stalled",
                    message=f"The generator sent nothing for {silent:.0f} s while job '{job_id}' was pending "
                    f"(not even a heartbeat: it is frozen, suspended or stuck), so it was stopped. {kept}",
                    hint="Generate again to start a fresh generator. If it stalls again, the log below may say "
                    "why (a GPU driver hang, memory swapping); a slower machine may need a longer stall "
                    f"timeout (now {self.stall_timeout:g} s).\n{tail}",
                )
            )
        self._pending, self._frames = [], {}
        return True

    def _fill(self, block_until: float | None = None) -> None:
        """Move queue items into self._out; with a deadline, block until one arrives or it passes."""
        if self._run is None:
            return
        events = self._run.events
        while True:
            try:
                if block_until is None:
                    item = events.get_nowait()
                else:
                    stall = self._stall_deadline()  # wake up in time to notice a stall while blocked
                    until = block_until if stall is None else min(block_until, stall)
                    item = events.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                if self._check_stall() or block_until is None or time.monotonic() >= block_until:
                    return
                continue
            self._out.extend(self._take(item))
            if block_until is not None:
                return

    def poll_events(self) -> list[Message]:
        """Every event read since the last call; never blocks (the reader thread decoded them already)."""
        self._fill()
        events = list(self._out)
        self._out.clear()
        self.history.extend(events)
        return events

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 30.0) -> Message:
        """Block until an event satisfies predicate and return it; later events stay queued.

        Events passed over are recorded in `history`. Raises TimeoutError.
        """
        deadline = time.monotonic() + timeout
        while True:
            while self._out:
                event = self._out.popleft()
                self.history.append(event)
                if predicate(event):
                    return event
            if time.monotonic() >= deadline:
                seen = ", ".join(e.type for e in list(self.history)[-10:])
                raise TimeoutError(f"no matching event within {timeout:g} s (last seen: {seen or 'none'})")
            self._fill(block_until=deadline)


WorkerClient = LocalClient  # the public name before the GeneratorClient seam; the add-on and tests use it
