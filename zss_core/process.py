"""The life of one child process that talks in lines: start, write to stdin, read stdout off the caller's
thread, keep the tail of stderr, notice the exit, stop it (ask → terminate → kill).

Standard library only: Blender's Python imports it (through client.py). It knows nothing about the
protocol: the owner passes `on_line` (called in the stdout reader thread with every line) and `on_exit`
(called once, in the same thread, after stdout closed and the process ended). One WorkerProcess is one
run; a restart makes a new one, so the reader threads of an old run never touch the state of the next.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

STDERR_LINES = 200  # lines of the child's stderr kept for error messages
READER_JOIN_SECONDS = 2.0  # how long stop() and the exit report wait for a reader thread to finish


class WorkerNotRunning(RuntimeError):
    """A line was written while the process is not running (instead of a BrokenPipeError)."""


def session_kwargs() -> dict[str, Any]:
    """Popen arguments that detach the child from the parent's console and Ctrl-C (a process group of its
    own on POSIX, so ending it can end its children; no console window on Windows)."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


class WorkerProcess:
    """One child process: its pipes, two reader threads and the tail of its stderr."""

    def __init__(
        self,
        command: Sequence[str],
        on_line: Callable[[str], None],
        on_exit: Callable[[int, bool], None],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stderr_lines: int = STDERR_LINES,
    ) -> None:
        self.command = list(command)
        self.env = env
        self.cwd = cwd
        self.popen: subprocess.Popen[str] | None = None
        self._on_line = on_line
        self._on_exit = on_exit
        self._stderr: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self._stderr_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stopping = threading.Event()  # set by stop() while the process still ran: its exit is expected
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        """Start the process and its reader threads; raises OSError when the executable cannot run."""
        if self.popen is not None:
            raise RuntimeError("a WorkerProcess runs once; make a new one to start again")
        self.popen = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            env=None if self.env is None else dict(self.env),
            cwd=self.cwd,
            **session_kwargs(),
        )
        stderr_thread = threading.Thread(
            target=self._read_stderr, args=(self.popen.stderr,), daemon=True, name="zss-stderr"
        )
        stdout_thread = threading.Thread(
            target=self._read_stdout, args=(self.popen, stderr_thread), daemon=True, name="zss-stdout"
        )
        self._threads = [stdout_thread, stderr_thread]
        stderr_thread.start()
        stdout_thread.start()

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the process ended, else None."""
        return None if self.popen is None else self.popen.poll()

    def is_alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 5.0, farewell: str | None = None) -> int | None:
        """End the process: write `farewell` (a line asking it to exit) and close stdin, then terminate,
        then kill, `timeout` seconds apart. Safe to call twice; returns the exit code (None if never started)."""
        proc = self.popen
        if proc is None:
            return None
        if proc.poll() is None:
            self._stopping.set()
            if farewell is not None:
                try:
                    self.write_line(farewell)
                except WorkerNotRunning as e:
                    self.log(f"[client] {farewell!r} not delivered: {e}")
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()  # EOF on stdin also tells the worker to exit (no lock: a writer may be stuck)
            except OSError as e:  # flushing into a dead pipe
                self.log(f"[client] closing stdin: {e}")
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Closing a pipe that another thread still reads can block, so only close it after its reader ended.
        for thread, pipe in zip(self._threads, (proc.stdout, proc.stderr), strict=True):
            thread.join(timeout=READER_JOIN_SECONDS)
            if pipe is not None and not thread.is_alive():
                pipe.close()
        return proc.returncode

    def kill(self, timeout: float = 5.0) -> int | None:
        """End the process at once with SIGKILL, without asking (a frozen or suspended process reads no
        shutdown request and handles no SIGTERM), then close its pipes; its exit counts as expected."""
        proc = self.popen
        if proc is None:
            return None
        if proc.poll() is None:
            self._stopping.set()
            proc.kill()
        return self.stop(timeout)

    # ----------------------------------------------------------------- stdin

    def write_line(self, line: str) -> None:
        """Send one line (a newline is added); raises WorkerNotRunning when the process cannot take it."""
        proc = self.popen
        if proc is None or proc.poll() is not None or proc.stdin is None or proc.stdin.closed:
            code = "" if proc is None or proc.returncode is None else f" (exit code {proc.returncode})"
            raise WorkerNotRunning(f"The generator process is not running{code}; start it first.")
        with self._write_lock:
            try:
                proc.stdin.write(line + "\n")
                proc.stdin.flush()
            except (OSError, ValueError) as e:  # BrokenPipeError; ValueError: closed by another thread
                raise WorkerNotRunning(f"The generator process stopped accepting requests: {e}") from e

    def write_bytes(self, data: bytes) -> None:
        """Send raw bytes as they are (tests and tools that play a broken or hostile client)."""
        proc = self.popen
        if proc is None or proc.poll() is not None or proc.stdin is None or proc.stdin.closed:
            raise WorkerNotRunning("The generator process is not running; start it first.")
        with self._write_lock:
            try:
                proc.stdin.flush()
                proc.stdin.buffer.write(data)  # type: ignore[attr-defined]  # a TextIOWrapper's byte stream
                proc.stdin.buffer.flush()  # type: ignore[attr-defined]
            except (OSError, ValueError) as e:
                raise WorkerNotRunning(f"The generator process stopped accepting requests: {e}") from e

    # ------------------------------------------------------------ stdout/err

    def _read_stdout(self, proc: subprocess.Popen[str], stderr_thread: threading.Thread) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._on_line(line)
        returncode = proc.wait()
        stderr_thread.join(timeout=READER_JOIN_SECONDS)  # so the exit report holds the process's last words
        self._on_exit(returncode, not self._stopping.is_set())

    def _read_stderr(self, pipe: IO[str] | None) -> None:
        assert pipe is not None
        for line in pipe:
            self.log(line.rstrip("\n"))

    def log(self, line: str) -> None:
        """Add a line to the kept tail (the owner adds its own notes, e.g. unparsable stdout)."""
        with self._stderr_lock:
            self._stderr.append(line)

    def stderr_tail(self, n: int = 40) -> str:
        """The last n lines the process wrote to stderr (plus the owner's notes)."""
        with self._stderr_lock:
            lines = list(self._stderr)[-n:] if n > 0 else []
        return "\n".join(lines)
