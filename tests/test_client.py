"""The client seam: LocalClient (alias WorkerClient) against tests/fake_worker.py (no torch needed), plus
a few checks against the real worker with a tiny model (marked slow)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from zss_core import protocol as p
from zss_core.client import (
    PACKAGE_PARENT,
    GeneratorClient,
    LocalClient,
    WorkerClient,
    WorkerNotRunning,
    WorkerStartError,
    child_env,
)

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
# poll_events while a real worker writes: the budget for a whole panel poll is 5 ms. On a loaded
# test machine the scheduler can hold any call back for a time slice or two, so a few polls in a
# thousand may exceed it, never by much; a poll that read the pipe itself would be slow every time it
# waited for the worker's next line (a denoising step, 100+ ms).
POLL_BUDGET_S = 0.005
POLL_OVER_BUDGET_SHARE = 0.001
POLL_WORST_S = 0.05
REPO = os.path.dirname(TESTS_DIR)


@pytest.fixture
def make_client():
    """Clients running the fake worker in a given mode; all stopped after the test."""
    clients = []

    def make(mode="normal", **env):
        full_env = dict(os.environ, PYTHONPATH=TESTS_DIR, FAKE_WORKER_MODE=mode, **env)
        client = WorkerClient(sys.executable, env=full_env, module="fake_worker")
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.stop(timeout=1.0)


def job(job_id="j1", **kw):
    return {
        "id": job_id,
        "prompt": "a wall",
        "model": "tiny",
        "output_dir": "/tmp/zss-test",
        "steps": 3,
        "frames": 2,
        **kw,
    }


def is_type(kind, job_id=None):
    return lambda ev: ev.type == kind and (job_id is None or ev.id == job_id)


def test_start_returns_ready(make_client):
    client = make_client()
    ready = client.start(timeout=20)
    assert isinstance(ready, p.Ready)
    assert ready.protocol == p.PROTOCOL_VERSION
    assert client.ready is ready
    assert ready.pid == client.process.pid
    assert client.is_alive()


@pytest.mark.skipif(os.name != "posix", reason="sessions are POSIX")
def test_worker_runs_in_its_own_session(make_client):
    client = make_client()
    client.start(timeout=20)
    assert os.getsid(client.process.pid) == client.process.pid


def test_child_env_prepends_package_parent(make_client):
    client = make_client()
    env = client.child_env()
    assert env["PYTHONPATH"].split(os.pathsep) == [PACKAGE_PARENT, TESTS_DIR]
    assert os.path.isdir(os.path.join(PACKAGE_PARENT, "zss_core"))
    assert env["PYTHONUNBUFFERED"] == "1"
    assert client.command() == [sys.executable, "-u", "-m", "fake_worker"]
    bare = WorkerClient(sys.executable, env={"PATH": os.environ.get("PATH", "")})
    assert bare.child_env()["PYTHONPATH"] == PACKAGE_PARENT


def test_poll_events_does_not_block(make_client):
    client = make_client()
    client.start(timeout=20)
    started = time.monotonic()
    assert client.poll_events() == []
    assert time.monotonic() - started < 0.05
    client.ping("p1")
    assert client.wait_for(is_type("pong"), timeout=10) == p.Pong(id="p1")


def test_job_events_arrive_in_order(make_client):
    client = make_client()
    client.start(timeout=20)
    assert client.submit(job("j1", steps=3, frames=2)) == "j1"
    assert client.pending == ["j1"]
    done = client.wait_for(is_type("done", "j1"), timeout=10)
    assert [ev.type for ev in client.history] == ["accepted"] + ["progress"] * 3 + ["frame"] * 2 + ["done"]
    assert [ev.step for ev in client.history if ev.type == "progress"] == [1, 2, 3]
    assert [ev.index for ev in client.history if ev.type == "frame"] == [0, 1]
    assert done.frames == [ev.path for ev in client.history if ev.type == "frame"]
    assert client.pending == []


def test_submit_accepts_a_job_object(make_client, tmp_path):
    client = make_client()
    client.start(timeout=20)
    j = p.Job(id="obj", prompt="x", model="tiny", output_dir=str(tmp_path), steps=2, frames=1)
    client.submit(j)
    done = client.wait_for(is_type("done", "obj"), timeout=10)
    assert done.frames == [os.path.join(str(tmp_path), "obj", "frame_0001.png")]


def test_poll_events_returns_everything_once(make_client):
    client = make_client()
    client.start(timeout=20)
    client.submit(job("j1", steps=2, frames=1))
    seen = []
    deadline = time.monotonic() + 10
    while not any(ev.type == "done" for ev in seen) and time.monotonic() < deadline:
        seen += client.poll_events()
        time.sleep(0.01)
    assert [ev.type for ev in seen] == ["accepted", "progress", "progress", "frame", "done"]
    assert client.poll_events() == []


def test_cancel_running_job(make_client):
    client = make_client(FAKE_STEP_SECONDS="0.05")
    client.start(timeout=20)
    client.submit(job("long", steps=200))
    client.wait_for(is_type("progress", "long"), timeout=10)
    client.cancel("long")
    cancelled = client.wait_for(is_type("cancelled", "long"), timeout=10)
    assert cancelled.frames == []
    assert "done" not in [ev.type for ev in client.history]
    assert client.pending == []
    client.cancel("nope")
    assert client.wait_for(is_type("error"), timeout=10).code == "unknown_job"


def test_submit_checks_ids(make_client):
    client = make_client(FAKE_STEP_SECONDS="0.05")
    client.start(timeout=20)
    with pytest.raises(ValueError):
        client.submit(job("../x"))
    with pytest.raises(ValueError):
        client.submit({"prompt": "no id"})
    client.submit(job("dup", steps=100))
    with pytest.raises(ValueError, match="already"):
        client.submit(job("dup"))


def test_worker_dies_mid_job_then_restart(make_client):
    client = make_client("die_midjob")
    client.start(timeout=20)
    client.submit(job("j1"))
    died = client.wait_for(is_type("error"), timeout=10)
    assert died.code == "worker_died" and died.id == "j1"
    assert "exit code 3" in died.message
    assert "simulated crash" in died.hint
    assert [ev.type for ev in client.history] == ["accepted", "progress", "error"]
    assert not client.is_alive() and client.pending == []
    assert client.poll_events() == []  # reported once
    with pytest.raises(WorkerNotRunning):
        client.submit(job("j2"))
    with pytest.raises(WorkerNotRunning):
        client.ping()

    client.env["FAKE_WORKER_MODE"] = "normal"
    old = client.process
    ready = client.restart(timeout=20)
    assert ready.pid != old.pid and client.is_alive()
    assert old.stdin.closed and old.stdout.closed and old.stderr.closed  # no pipes left behind
    client.submit(job("j2"))
    assert client.wait_for(is_type("done", "j2"), timeout=10).id == "j2"


def test_several_pending_jobs_each_get_worker_died(make_client):
    client = make_client("die_midjob", FAKE_STEP_SECONDS="0.2")
    client.start(timeout=20)
    client.submit(job("a"))
    client.submit(job("b"))
    client.wait_for(is_type("accepted", "b"), timeout=10)
    errors = [client.wait_for(is_type("error"), timeout=10) for _ in range(2)]
    assert sorted(ev.id for ev in errors) == ["a", "b"]
    assert {ev.code for ev in errors} == {"worker_died"}


def test_death_with_nothing_pending_gives_one_event(make_client):
    client = make_client("crash_on_start")
    assert client.start(wait=False) is None
    died = client.wait_for(is_type("error"), timeout=10)
    assert (died.code, died.id) == ("worker_died", None)
    assert "exit code 2" in died.message and "cannot import torch" in died.hint
    time.sleep(0.1)
    assert client.poll_events() == []


def test_start_failure_raises_with_stderr_tail(make_client):
    client = make_client("crash_on_start")
    with pytest.raises(WorkerStartError) as info:
        client.start(timeout=20)
    assert "exit code 2" in str(info.value)
    assert "cannot import torch" in str(info.value)
    assert client.process.poll() is not None
    assert client.poll_events() == []  # the exception was the report


def test_start_timeout_kills_the_worker(make_client):
    client = make_client("slow_start", FAKE_WORKER_DELAY="60")
    started = time.monotonic()
    with pytest.raises(WorkerStartError, match="did not report ready"):
        client.start(timeout=0.5)
    assert time.monotonic() - started < 10
    assert client.process.poll() is not None


def test_missing_python_raises_start_error():
    client = WorkerClient(os.path.join(TESTS_DIR, "no-such-python"))
    with pytest.raises(WorkerStartError, match="no-such-python"):
        client.start(timeout=5)


def test_start_without_waiting(make_client):
    client = make_client("slow_start", FAKE_WORKER_DELAY="0.3")
    started = time.monotonic()
    assert client.start(wait=False) is None
    assert time.monotonic() - started < 0.3
    assert client.ready is None
    ready = client.wait_for(is_type("ready"), timeout=20)
    assert client.ready == ready and ready.protocol == 1


def test_start_twice_is_refused(make_client):
    client = make_client()
    client.start(timeout=20)
    with pytest.raises(RuntimeError, match="already running"):
        client.start()


def test_noise_on_stdout_goes_to_the_log(make_client):
    client = make_client("noisy")
    client.start(timeout=20)
    client.ping("after-noise")
    assert client.wait_for(is_type("pong"), timeout=10).id == "after-noise"
    deadline = time.monotonic() + 10  # stderr is another pipe with its own reader: it may lag stdout
    while "some library warning" not in client.stderr_tail() and time.monotonic() < deadline:
        time.sleep(0.01)
    tail = client.stderr_tail()
    assert "[unparsed stdout] this line is not JSON" in tail
    assert "some library warning" in tail
    assert client.stderr_tail(n=1).count("\n") == 0
    assert [ev.type for ev in client.history] == ["pong"]


def test_stop_is_idempotent_and_leaves_no_process(make_client):
    client = make_client()
    client.start(timeout=20)
    proc = client.process
    assert client.stop() == 0
    assert proc.poll() == 0 and not client.is_alive()
    assert proc.stdin.closed and proc.stdout.closed and proc.stderr.closed
    assert client.stop() == 0
    with pytest.raises(WorkerNotRunning):
        client.submit(job())
    assert client.poll_events() == []


def test_stop_with_a_running_job_reports_no_death(make_client):
    client = make_client(FAKE_STEP_SECONDS="0.05")
    client.start(timeout=20)
    client.submit(job("long", steps=200))
    client.wait_for(is_type("progress"), timeout=10)
    client.stop()
    assert {ev.type for ev in client.poll_events()} <= {"progress"}
    assert client.pending == []


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM is ignorable on POSIX only")
def test_stop_kills_a_stubborn_worker(make_client):
    client = make_client("stubborn")
    client.start(timeout=20)
    started = time.monotonic()
    assert client.stop(timeout=0.3) == -signal.SIGKILL
    assert time.monotonic() - started < 5
    assert client.process.poll() is not None


def test_requests_before_start_raise():
    client = WorkerClient(sys.executable)
    with pytest.raises(WorkerNotRunning):
        client.ping()
    assert client.stop() is None
    assert client.poll_events() == []


def test_context_manager(make_client):
    client = make_client()
    with client as c:
        assert c is client and c.is_alive() and c.ready is not None
    assert client.process.poll() is not None


def test_client_imports_without_torch():
    code = (
        "import sys, zss_core, zss_core.client, zss_core.protocol; "
        "bad = [m for m in ('torch', 'numpy', 'bpy') if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------ the seam


def test_local_client_is_a_generator_client():
    assert WorkerClient is LocalClient and issubclass(LocalClient, GeneratorClient)
    client = LocalClient(sys.executable)
    assert isinstance(client, GeneratorClient)
    assert client.describe() == f"local: {sys.executable}"
    assert client.ready is None and client.pending == [] and client.diagnostics() == ""
    with pytest.raises(TypeError, match="abstract"):
        GeneratorClient()  # the seam itself cannot run anything
    assert {
        "start",
        "wait_ready",
        "submit",
        "poll_events",
        "cancel",
        "close",
        "is_alive",
        "describe",
        "diagnostics",
        "pending",
    } <= GeneratorClient.__abstractmethods__


def test_child_env_puts_the_package_parent_first():
    given = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(["/first", "/second"])}
    env = child_env(given)
    assert env["PYTHONPATH"].split(os.pathsep) == [PACKAGE_PARENT, "/first", "/second"]
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONIOENCODING"] == "utf-8"
    assert given["PYTHONPATH"] == os.pathsep.join(["/first", "/second"])  # the caller's dict is untouched
    assert child_env()["PYTHONPATH"].split(os.pathsep)[0] == PACKAGE_PARENT  # default: this process's env
    code = "import zss_core, sys; print(zss_core.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=TESTS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env({"PATH": os.environ.get("PATH", "")}),
    )
    assert result.stdout.strip() == os.path.join(PACKAGE_PARENT, "zss_core", "__init__.py")


def test_poll_never_waits_for_a_line_being_written(make_client):
    """The reader thread, not poll_events, waits for the rest of a half-written line."""
    client = make_client("slow_line", FAKE_WORKER_DELAY="1.0")
    client.start(timeout=20)
    client.ping("slow")
    longest = 0.0
    events = []
    deadline = time.monotonic() + 10
    while not events and time.monotonic() < deadline:
        started = time.perf_counter()
        events = client.poll_events()
        longest = max(longest, time.perf_counter() - started)
        time.sleep(0.005)
    assert events == [p.Pong(id="slow")]
    assert longest < 0.1, f"poll_events took {longest * 1000:.1f} ms while the worker wrote half a line for 1 s"


def test_wait_ready_starts_and_returns_ready_once(make_client):
    client = make_client("slow_start", FAKE_WORKER_DELAY="0.2")
    ready = client.wait_ready(timeout=20)  # starts the worker itself
    assert client.ready is ready and ready.pid == client.process.pid
    assert client.wait_ready(timeout=0.01) is ready  # already ready: returns at once, same process
    assert client.poll_events() == []  # the Ready event was the return value, not an event to handle
    client.close()
    again = client.wait_ready(timeout=20)  # closed: started anew
    assert again.pid != ready.pid and client.is_alive()


def test_wait_ready_after_start_without_waiting_keeps_other_events(make_client):
    client = make_client("noisy")
    client.start(wait=False)
    ready = client.wait_ready(timeout=20)
    assert ready.protocol == p.PROTOCOL_VERSION and client.poll_events() == []
    client.ping("x")
    assert client.wait_for(is_type("pong"), timeout=10).id == "x"


def test_wait_ready_restarts_a_worker_that_died_after_ready(make_client):
    client = make_client("die_midjob")
    first = client.wait_ready(timeout=20)
    client.submit(job("j1"))
    while client.is_alive():
        time.sleep(0.01)
    old = client.process
    client.env["FAKE_WORKER_MODE"] = "normal"
    second = client.wait_ready(timeout=20)
    assert second.pid != first.pid and client.is_alive()
    assert old.stdout.closed and old.stderr.closed  # the dead worker's pipes were closed, not leaked


def test_wait_ready_reports_a_start_up_failure_with_the_log(make_client):
    client = make_client("crash_on_start")
    client.start(wait=False)
    while client.is_alive():
        time.sleep(0.01)
    with pytest.raises(WorkerStartError) as info:  # the failure of the run it did not see start
        client.wait_ready(timeout=20)
    message = str(info.value)
    assert "exited during start-up (exit code 2," in message and "cannot import torch" in message
    assert "setup-env" in message and sys.executable in message  # what to do, and which Python
    assert client.poll_events() == []


@pytest.mark.skipif(os.name != "posix", reason="a shell script stands in for the Python")
def test_wait_ready_names_what_a_python_without_the_generator_stack_misses(tmp_path):
    """A Python that runs but has no torch (here: site-packages switched off with -S)."""
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    python.chmod(0o755)
    client = LocalClient(str(python))
    try:
        with pytest.raises(WorkerStartError) as info:
            client.wait_ready(timeout=60)
    finally:
        client.close()
    message = str(info.value)
    assert "exited during start-up (exit code 1," in message
    assert "No module named 'torch'" in message and "setup-env" in message and str(python) in message
    assert not client.is_alive() and client.pending == []


@pytest.mark.slow
def test_poll_stays_short_while_a_real_worker_writes(tmp_path):
    """A tiny-model job on the real worker: every poll only drains the queue the reader thread filled."""
    client = LocalClient(sys.executable)
    try:
        client.wait_ready(timeout=120)
        client.submit(
            {
                "id": "poll",
                "prompt": "a brick wall",
                "model": "tiny",
                "frames": 16,
                "width": 64,
                "height": 64,
                "steps": 4,
                "output_dir": str(tmp_path),
            }
        )
        durations = []
        seen = []
        deadline = time.monotonic() + 120
        while not any(ev.type in ("done", "error") for ev in seen):
            assert time.monotonic() < deadline, f"no end of the job; last events {seen[-3:]}"
            started = time.perf_counter()
            seen += client.poll_events()
            durations.append(time.perf_counter() - started)
            time.sleep(0.001)
    finally:
        client.close()
    assert seen[-1].type == "done", seen[-1]
    assert sum(ev.type == "frame" for ev in seen) == 16
    durations.sort()
    longest, median = durations[-1], durations[len(durations) // 2]
    over = [d for d in durations if d > POLL_BUDGET_S]
    summary = (
        f"{len(durations)} polls: median {median * 1e3:.3f} ms, longest {longest * 1e3:.2f} ms, "
        f"{len(over)} over {POLL_BUDGET_S * 1e3:g} ms"
    )
    print(summary)
    assert median < 0.001, summary
    assert len(over) <= POLL_OVER_BUDGET_SHARE * len(durations) and longest < POLL_WORST_S, summary


# ------------------------------------------------------------------ frozen workers (issue 12, defect 5)


def test_a_frozen_fake_worker_is_stopped_and_each_pending_job_names_its_frames(make_client):
    """Heartbeats, then silence after the first frame: the client kills it within the stall timeout and
    reports worker_stalled for both pending jobs, the running one with the frame it was told about."""
    client = make_client("freeze_after_frame", FAKE_HEARTBEAT="0.2")
    client.stall_timeout = 1.5
    client.start(timeout=30)
    client.submit(job("frozen", steps=2, frames=3))
    client.submit(job("behind"))
    client.wait_for(lambda e: e.type == "frame", timeout=10)
    frozen_at = time.monotonic()
    stalled = [client.wait_for(lambda e: e.type == "error", timeout=10) for _ in range(2)]
    waited = time.monotonic() - frozen_at
    assert [(e.id, e.code) for e in stalled] == [("frozen", "worker_stalled"), ("behind", "worker_stalled")]
    assert 1.0 < waited < 4.0, waited
    assert "/tmp/zss-test/frozen/frame_0001.png" in stalled[0].message and "1 frame(s)" in stalled[0].message
    assert "No frames were written" in stalled[1].message and stalled[0].hint
    assert not client.is_alive() and client.pending == []
    client.wait_ready(timeout=30)  # the next job gets a fresh worker
    assert client.is_alive()


def test_a_worker_that_never_beats_is_not_taken_for_stalled(make_client):
    """An older worker sends no heartbeats: a step longer than the stall timeout is only slow."""
    client = make_client(FAKE_STEP_SECONDS="1.5")
    client.stall_timeout = 0.5
    client.start(timeout=30)
    client.submit(job("slow", steps=2))
    assert client.wait_for(lambda e: e.id == "slow" and e.type in ("done", "error"), timeout=30).type == "done"


def test_an_idle_frozen_worker_is_left_alone(make_client):
    """Silence with nothing pending is no stall: nothing to report, no kill."""
    client = make_client(FAKE_HEARTBEAT="0.2")
    client.stall_timeout = 0.5
    client.start(timeout=30)
    time.sleep(0.5)  # it has beaten: its silence would count, were a job pending
    os.kill(client.process.pid, signal.SIGSTOP)
    try:
        time.sleep(1.0)
        assert client.poll_events() == [] and client.heartbeat is not None  # beats are kept, not handed out
        assert client.is_alive()
    finally:
        os.kill(client.process.pid, signal.SIGCONT)


@pytest.mark.slow
def test_a_real_worker_stopped_mid_job_is_reported_as_stalled_and_replaced(tmp_path):
    """kill -STOP mid-job: heartbeats every 3 s stop, and within the 6 s stall timeout the client kills the
    worker and reports worker_stalled; wait_ready starts a fresh worker that runs the next job."""
    env = dict(os.environ, ZSS_HEARTBEAT_SECONDS="3")
    client = LocalClient(sys.executable, env=env, stall_timeout=6.0)
    base = {"prompt": "a brick wall", "model": "tiny", "width": 64, "height": 64, "output_dir": str(tmp_path)}
    try:
        client.wait_ready(timeout=120)
        client.submit({**base, "id": "long", "frames": 2, "steps": 500})
        client.wait_for(lambda e: e.id == "long" and e.type == "progress" and e.stage == "denoise", 120)
        deadline = time.monotonic() + 30
        while client.heartbeat is None or client.heartbeat.running != "long":  # a busy beat names the job
            assert time.monotonic() < deadline, client.heartbeat
            client.poll_events()
            time.sleep(0.05)
        assert client.heartbeat.interval == 3.0
        assert all(e.type != "heartbeat" for e in client.history)  # kept by the client, not handed out
        pid = client.process.pid
        os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        error = client.wait_for(lambda e: e.id == "long" and e.type in ("done", "error", "cancelled"), 30)
        waited = time.monotonic() - stopped_at
        assert error.type == "error" and error.code == "worker_stalled", error
        assert waited < 6.0 + 3.0, waited  # the timeout counts from the last line, at most 6 s before the stop
        assert "No frames were written" in error.message and "stall timeout" in error.hint
        assert not client.is_alive() and client.process.returncode == -signal.SIGKILL
        client.wait_ready(timeout=120)
        assert client.process.pid != pid
        client.submit({**base, "id": "next", "frames": 2, "steps": 2})
        done = client.wait_for(lambda e: e.id == "next" and e.type in ("done", "error"), 120)
        assert done.type == "done", done
    finally:
        client.close()
