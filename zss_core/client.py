"""Runs the generator process and talks to it over stdio (docs/protocol.md).

Standard library only: the Blender add-on uses this from Blender's Python, which has no torch.
Torch lives in a separate interpreter (`python_executable`), so a crash, a hang or an
out-of-memory there never takes Blender down; the client reports it as a `worker_died` event.
"""

import collections
import os
import queue
import subprocess
import threading
import time

from . import protocol
from .protocol import Cancel, Download, Error, Generate, Job, Ping, Ready, Shutdown

# The folder that holds the zss_core package: put on the child's PYTHONPATH so the worker
# imports from the repository or from the installed Blender extension without pip install.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_ENDING_EVENTS = ("done", "error", "cancelled", "downloaded")
_STDERR_LINES = 200


class WorkerStartError(RuntimeError):
    """The worker exited or stayed silent before `ready`; the message holds its stderr tail."""


class WorkerNotRunning(RuntimeError):
    """A request was sent while the worker is not running (instead of a BrokenPipeError)."""


class _Exited:
    """Queue marker: stdout closed and the process ended with `returncode`."""

    def __init__(self, returncode, unexpected):
        self.returncode = returncode
        self.unexpected = unexpected


class _Run:
    """State of one process; reader threads only touch their own run, never a restarted one."""

    def __init__(self, proc=None):
        self.proc = proc
        self.events = queue.Queue()
        self.stderr = collections.deque(maxlen=_STDERR_LINES)
        self.stderr_lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = []

    def log(self, line):
        with self.stderr_lock:
            self.stderr.append(line)


class WorkerClient:
    """One generator process: start, submit jobs, poll events, stop.

    Meant for a single consumer (a Blender timer, a test): poll_events and wait_for are not
    meant to be called from several threads at once.
    """

    def __init__(self, python_executable, env=None, cwd=None, module="zss_core.worker", extra_args=()):
        self.python_executable = python_executable
        self.env = env
        self.cwd = cwd
        self.module = module
        self.extra_args = tuple(extra_args)
        self.ready = None
        self.history = collections.deque(maxlen=5000)  # every event handed out, oldest first
        self._run = _Run()
        self._out = collections.deque()  # decoded events not yet handed out
        self._pending = []  # submitted job ids without done/error/cancelled yet
        self._write_lock = threading.Lock()

    @property
    def process(self):
        """The last Popen; kept after stop() so its exit code stays readable."""
        return self._run.proc

    # ------------------------------------------------------------------ process

    def command(self):
        return [self.python_executable, "-u", "-m", self.module, *self.extra_args]

    def child_env(self):
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"  # Windows would otherwise write stdout in the ANSI code page
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + old if old else "")
        return env

    def start(self, wait=True, timeout=120.0):
        """Start the worker; with wait, return the Ready event or raise WorkerStartError."""
        if self.is_alive():
            raise RuntimeError("the generator process is already running; use restart() to replace it")
        self.ready = None
        self.history.clear()
        self._out.clear()
        self._pending = []
        kwargs = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NO_WINDOW
        else:
            kwargs["start_new_session"] = True  # Ctrl-C in Blender's terminal must not hit the worker
        try:
            proc = subprocess.Popen(
                self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, encoding="utf-8", errors="replace", bufsize=1,
                env=self.child_env(), cwd=self.cwd, **kwargs,
            )
        except OSError as e:
            raise WorkerStartError(f"Could not start the generator with {self.python_executable!r}: {e}") from e
        run = self._run = _Run(proc)
        stderr_thread = threading.Thread(target=self._read_stderr, args=(run,), daemon=True, name="zss-stderr")
        stdout_thread = threading.Thread(target=self._read_stdout, args=(run, stderr_thread),
                                         daemon=True, name="zss-stdout")
        run.threads = [stdout_thread, stderr_thread]
        stderr_thread.start()
        stdout_thread.start()
        return self._wait_ready(timeout) if wait else None

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._run.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop(timeout=1.0)  # a worker stuck in start-up reads no shutdown request
                raise WorkerStartError(f"The generator did not report ready within {timeout:g} s.\n"
                                       f"{self.stderr_tail()}") from None
            if isinstance(item, _Exited):
                self.stop()
                raise WorkerStartError(f"The generator exited during start-up (exit code {item.returncode}).\n"
                                       f"{self.stderr_tail()}")
            if isinstance(item, Ready):
                if item.protocol != protocol.PROTOCOL_VERSION:
                    self.stop()
                    raise WorkerStartError(f"The generator speaks protocol {item.protocol}, this client "
                                           f"speaks {protocol.PROTOCOL_VERSION}; install matching versions.")
                return item
            self._out.extend(self._take(item))  # anything before ready stays available to poll_events

    def _read_stdout(self, run, stderr_thread):
        for line in run.proc.stdout:
            if not line.strip():
                continue
            try:
                event = protocol.message_from_json(line, expect="event")
            except protocol.ProtocolError as e:
                run.log(f"[unparsed stdout] {line.rstrip()[:2000]} ({e})")
                continue
            if isinstance(event, Ready) and run is self._run:
                self.ready = event
            run.events.put(event)
        returncode = run.proc.wait()
        stderr_thread.join(timeout=2.0)  # so the worker_died hint holds the worker's last words
        run.events.put(_Exited(returncode, unexpected=not run.stopping.is_set()))

    @staticmethod
    def _read_stderr(run):
        for line in run.proc.stderr:
            run.log(line.rstrip("\n"))

    def stderr_tail(self, n=40):
        """The last n lines the worker wrote to stderr (plus unparsable stdout lines)."""
        run = self._run
        with run.stderr_lock:
            lines = list(run.stderr)[-n:] if n > 0 else []
        return "\n".join(lines)

    def is_alive(self):
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout=5.0):
        """Ask the worker to exit, then terminate, then kill; safe to call twice. Returns the exit code."""
        run = self._run
        proc = run.proc
        if proc is None:
            return None
        run.stopping.set()
        if proc.poll() is None:
            self._pending = []  # we end them; a worker that already died still reports worker_died
        if proc.poll() is None and not proc.stdin.closed:
            try:
                self._send(Shutdown())
            except WorkerNotRunning as e:
                run.log(f"[client] shutdown not delivered: {e}")
        if not proc.stdin.closed:
            try:
                proc.stdin.close()  # EOF on stdin also tells the worker to exit
            except OSError as e:  # flushing into a dead pipe
                run.log(f"[client] closing stdin: {e}")
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Closing a pipe that another thread still reads can block, so only close after the reader ended.
        for thread, pipe in zip(run.threads, (proc.stdout, proc.stderr)):
            thread.join(timeout=2.0)
            if not thread.is_alive():
                pipe.close()
        return proc.returncode

    close = stop

    def restart(self, wait=True, timeout=120.0):
        self.stop()
        return self.start(wait=wait, timeout=timeout)

    def __enter__(self):
        """Starts the worker (waiting for ready) unless it already runs."""
        if not self.is_alive():
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # ----------------------------------------------------------------- requests

    def _send(self, message):
        proc = self.process
        if proc is None or proc.poll() is not None or proc.stdin.closed:
            code = "" if proc is None or proc.returncode is None else f" (exit code {proc.returncode})"
            raise WorkerNotRunning(f"The generator process is not running{code}; start it first.")
        line = message.to_json() + "\n"
        with self._write_lock:
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as e:  # ValueError: closed by another thread
                raise WorkerNotRunning(f"The generator process stopped accepting requests: {e}") from e

    def submit(self, job):
        """Send a job (Job or dict); returns its id. The worker validates it fully."""
        d = job.to_dict() if isinstance(job, Job) else dict(job)
        job_id = d.get("id")
        if not isinstance(job_id, str) or not protocol.JOB_ID_PATTERN.fullmatch(job_id):
            raise ValueError(f"job id must match {protocol.JOB_ID_PATTERN.pattern}, got {job_id!r}")
        if job_id in self._pending:
            raise ValueError(f"job {job_id!r} is already queued or running")
        self._send(Generate(job=d))
        self._pending.append(job_id)
        return job_id

    def download(self, model, task_id):
        """Ask the worker to fetch hub model ``model`` into the local cache; returns the task id.

        Answered by ``accepted``, ``progress`` (stage "download"), then ``downloaded`` or ``error``.
        """
        if not protocol.JOB_ID_PATTERN.fullmatch(task_id) or task_id in self._pending:
            raise ValueError(f"task id must be new and match {protocol.JOB_ID_PATTERN.pattern}, got {task_id!r}")
        self._send(Download(id=task_id, model=model))
        self._pending.append(task_id)
        return task_id

    def cancel(self, job_id):
        self._send(Cancel(id=job_id))

    def ping(self, id=None):
        self._send(Ping(id=id))

    @property
    def pending(self):
        """Ids of submitted jobs that have not ended yet."""
        return list(self._pending)

    # ------------------------------------------------------------------- events

    def _take(self, item):
        """Turn one queue item into the events to hand out, updating job tracking."""
        if isinstance(item, _Exited):
            if not item.unexpected:
                self._pending = []
                return []
            message = f"The generator process stopped unexpectedly (exit code {item.returncode})."
            hint = "See the generator log below; generate again to restart it.\n" + self.stderr_tail()
            ids = self._pending or [None]
            self._pending = []
            return [Error(id=job_id, code="worker_died", message=message, hint=hint) for job_id in ids]
        if item.type in _ENDING_EVENTS and item.id in self._pending:
            self._pending.remove(item.id)
        return [item]

    def _fill(self, block_until=None):
        """Move queue items into self._out; block until one arrives or the deadline passes."""
        while True:
            try:
                if block_until is None:
                    item = self._run.events.get_nowait()
                else:
                    item = self._run.events.get(timeout=max(0.0, block_until - time.monotonic()))
            except queue.Empty:
                return
            self._out.extend(self._take(item))
            if block_until is not None:
                return

    def poll_events(self):
        """Every event read since the last call; never blocks."""
        self._fill()
        events = list(self._out)
        self._out.clear()
        self.history.extend(events)
        return events

    def wait_for(self, predicate, timeout=30.0):
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
