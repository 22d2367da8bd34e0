"""A real worker played against by a hostile client: the shared machinery of the hostile cases.

A `Case` is one bad or hostile input and the check that it was handled cleanly: `run(harness)` returns
None when it was, else one line saying what went wrong. `Harness` holds a real worker
(`zss_core.worker` through `LocalClient`) on the tiny model, on the CPU, writing into a temporary folder.
`check` runs one case and then makes sure the worker still answers a ping; `run_cases` runs many,
restarting the worker when a case left it dead so that one failure does not hide the next.

Used by tests/test_hostile.py (one worker per case module) and bench/hostile.py (the table).
"""

from __future__ import annotations

import itertools
import pathlib
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zss_core import protocol
from zss_core.client import LocalClient

ENDINGS = ("done", "error", "cancelled")


@dataclass(frozen=True)
class Case:
    """One hostile input: `run` returns None when the worker handled it cleanly, else what went wrong."""

    name: str
    category: str
    run: Callable[[Harness], str | None]


class Harness:
    """A real worker on the tiny model (CPU) writing under `tmp/out`; start() before use, close() after."""

    def __init__(
        self,
        tmp: pathlib.Path,
        python: str = sys.executable,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.tmp = pathlib.Path(tmp)
        self.out_dir = self.tmp / "out"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._python, self._extra_args, self._env = python, tuple(extra_args), env
        self.client = self._new_client()
        self._ids = itertools.count(1)

    def _new_client(self) -> LocalClient:
        env = None if self._env is None else dict(self._env)
        return LocalClient(self._python, env=env, cwd=str(self.tmp), extra_args=self._extra_args)

    # ------------------------------------------------------------------ life

    def start(self, timeout: float = 120.0) -> Harness:
        self.client.start(timeout=timeout)
        return self

    def close(self) -> None:
        self.client.close()

    def ensure_running(self, timeout: float = 120.0) -> None:
        """Start a fresh worker when the last one died (so the next case meets a live one)."""
        if not self.client.is_alive():
            self.restart(timeout)

    def restart(self, timeout: float = 120.0) -> None:
        """Replace the worker with a fresh one (after a case left it dead or deaf)."""
        self.client.close()
        self.client = self._new_client()
        self.start(timeout)

    def __enter__(self) -> Harness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- requests

    def fresh_id(self, prefix: str = "h") -> str:
        return f"{prefix}{next(self._ids)}-{int(time.monotonic() * 1000) % 100000}"

    def job(self, **overrides: Any) -> dict[str, Any]:
        """A small valid job: tiny model, 2 frames, 64×64, 2 steps, a fresh id, output into out_dir."""
        base: dict[str, Any] = {
            "id": self.fresh_id("job"),
            "prompt": "a brick wall",
            "model": "tiny",
            "output_dir": str(self.out_dir),
            "device": "cpu",
            "frames": 2,
            "width": 64,
            "height": 64,
            "steps": 2,
            "outputs": {"frames": True, "mp4": False, "contact_sheet": False},
        }
        base.update(overrides)
        return base

    def send_line(self, data: bytes) -> None:
        """Raw bytes to the worker's stdin (a newline is added when missing)."""
        self.client.send_bytes(data if data.endswith(b"\n") else data + b"\n")

    def submit(self, job: dict[str, Any]) -> str:
        return self.client.submit(job)

    def wait(self, job_id: str | None, types: Iterable[str] = ENDINGS, timeout: float = 60.0) -> protocol.Message:
        """The next event for `job_id` whose type is one of `types`; raises TimeoutError."""
        wanted = tuple(types)
        return self.client.wait_for(lambda e: getattr(e, "id", None) == job_id and e.type in wanted, timeout)

    def answers(self, data: bytes, timeout: float = 20.0) -> list[protocol.Message]:
        """Send one raw line and return every event the worker wrote before answering a ping sent after it.

        The worker reads requests in order and answers bad lines, pings, cancels and job validation in its
        reader thread, so whatever it says about `data` comes before the pong (heartbeats are left out).
        Raises TimeoutError when no pong comes (the worker went deaf).
        """
        self.client.poll_events()  # older events are not this line's answer
        self.send_line(data)
        marker = self.fresh_id("ping")
        self.client.ping(marker)
        seen: list[protocol.Message] = []

        def until_pong(event: protocol.Message) -> bool:
            if event.type == "pong" and getattr(event, "id", None) == marker:
                return True
            if event.type != "heartbeat":  # the worker's own beat, not an answer
                seen.append(event)
            return False

        self.client.wait_for(until_pong, timeout)
        return seen

    def alive(self, timeout: float = 10.0) -> bool:
        """Whether the worker answers a ping with a fresh id within `timeout` seconds."""
        if not self.client.is_alive():
            return False
        marker = self.fresh_id("ping")
        try:
            self.client.ping(marker)
            self.client.wait_for(lambda e: e.type == "pong" and getattr(e, "id", None) == marker, timeout)
        except (TimeoutError, RuntimeError):  # RuntimeError: WorkerNotRunning
            return False
        return True

    def leftovers(self, job_id: str) -> list[str]:
        """What a refused job left under out_dir: its folder and anything in it (paths relative to out_dir)."""
        job_dir = self.out_dir / job_id
        if not job_dir.exists() and not job_dir.is_symlink():
            return []
        found = [job_dir, *sorted(job_dir.rglob("*"))] if job_dir.is_dir() else [job_dir]
        return [str(p.relative_to(self.out_dir)) for p in found]


def check(case: Case, harness: Harness) -> str | None:
    """Run one case: None when it was handled cleanly and the worker still answers, else what went wrong."""
    harness.ensure_running()
    try:
        problem = case.run(harness)
    except Exception as exc:  # a case that raises is a failure to report, not a crash of the run
        problem = f"{type(exc).__name__}: {exc}"
    if not harness.alive():
        problem = problem or "the worker does not answer a ping after this case"
        harness.restart()  # the next case meets a working worker
    return None if problem is None else " ".join(str(problem).split())[:300]


def run_cases(cases: Iterable[Case], harness: Harness) -> list[tuple[Case, str | None]]:
    """Every case with its outcome (None = handled cleanly), in order."""
    return [(case, check(case, harness)) for case in cases]


def expect_error(
    events: Sequence[protocol.Message], code: str = "bad_request", field: str | None = None, contains: str = ""
) -> str | None:
    """None when `events` hold exactly one error with `code` (and `field`, and `contains` in its message)."""
    errors = [e for e in events if e.type == "error"]
    if len(errors) != 1:
        kinds = ", ".join(e.type for e in events) or "nothing"
        return f"expected one {code} error, got {kinds}"
    error = errors[0]
    assert isinstance(error, protocol.Error)
    if error.code != code:
        return f"expected code {code}, got {error.code}: {error.message[:120]}"
    if field is not None and error.field != field:
        return f"expected field {field!r}, got {error.field!r}: {error.message[:120]}"
    if contains and contains not in error.message:
        return f"expected {contains!r} in the message, got: {error.message[:160]}"
    if not error.hint:
        return f"{code} without a hint: {error.message[:120]}"
    return None
