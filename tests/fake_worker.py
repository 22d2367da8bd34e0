"""A stand-in generator for test_client.py: speaks the protocol with the stdlib only.

It writes raw JSON (not zss_core.protocol) so the client is checked against the wire format
itself. FAKE_WORKER_MODE picks a misbehaviour:
  normal        answers like the real worker
  die_midjob    exits with code 3 after the first progress event of a job
  noisy         prints a non-JSON line on stdout and chatter on stderr before ready
  slow_start    sleeps FAKE_WORKER_DELAY seconds (default 5) before ready
  crash_on_start writes a traceback to stderr and exits with code 2 before ready
  stubborn      ignores shutdown, stdin EOF and SIGTERM (only SIGKILL stops it)
  slow_line     writes each pong in two halves, FAKE_WORKER_DELAY seconds (default 5) apart
  freeze_after_frame  after a job's first frame event writes nothing more, heartbeats included (frozen)
FAKE_STEP_SECONDS sets the sleep per denoising step (default 0.01). FAKE_HEARTBEAT (seconds) makes it send
heartbeat events from a thread of its own, like the real worker; unset, it never beats (an older worker).
"""

import json
import os
import queue
import signal
import sys
import threading
import time

MODE = os.environ.get("FAKE_WORKER_MODE", "normal")
STEP_SECONDS = float(os.environ.get("FAKE_STEP_SECONDS", "0.01"))
_print_lock = threading.Lock()
_cancelled = set()
_jobs = queue.Queue()
_frozen = threading.Event()


def emit(kind, **fields):
    if _frozen.is_set():
        return
    with _print_lock:
        sys.stdout.write(json.dumps({"type": kind, **fields}) + "\n")
        sys.stdout.flush()


def emit_slowly(kind, **fields):
    """One event line, cut in the middle: a reader that waits for the newline waits the delay."""
    line = json.dumps({"type": kind, **fields}) + "\n"
    with _print_lock:
        sys.stdout.write(line[: len(line) // 2])
        sys.stdout.flush()
        time.sleep(float(os.environ.get("FAKE_WORKER_DELAY", "5")))
        sys.stdout.write(line[len(line) // 2 :])
        sys.stdout.flush()


def run_job(job):
    job_id = job["id"]
    steps, frames = job.get("steps", 30), job.get("frames", 8)
    folder = os.path.join(job.get("output_dir", "."), job_id)
    started = time.monotonic()
    for step in range(1, steps + 1):
        if job_id in _cancelled:
            emit("cancelled", id=job_id, frames=[], manifest=None)
            return
        time.sleep(STEP_SECONDS)
        elapsed = time.monotonic() - started
        emit(
            "progress",
            id=job_id,
            step=step,
            total=steps,
            fraction=step / steps,
            elapsed=elapsed,
            eta=elapsed / step * (steps - step),
            stage="denoise",
        )
        if MODE == "die_midjob":
            sys.stderr.write("fake worker: simulated crash in the middle of a job\n")
            sys.stderr.flush()
            os._exit(3)
    paths = [os.path.join(folder, f"frame_{i + 1:04d}.png") for i in range(frames)]
    for i, path in enumerate(paths):
        emit("frame", id=job_id, index=i, path=path)
        if MODE == "freeze_after_frame":
            _frozen.set()
            threading.Event().wait()  # stuck for good
    emit(
        "done",
        id=job_id,
        frames=paths,
        video=os.path.join(folder, "clip.mp4"),
        contact_sheet=None,
        manifest=os.path.join(folder, "job.json"),
        seconds=time.monotonic() - started,
        model_load_seconds=0,
    )


def beat(interval):
    while not _frozen.is_set():
        emit("heartbeat", id=None, interval=interval, running=None, queued=0)
        time.sleep(interval)


def job_loop():
    while True:
        job = _jobs.get()
        if job["id"] in _cancelled:
            emit("cancelled", id=job["id"], frames=[], manifest=None)
            continue
        run_job(job)


def main():
    if MODE == "crash_on_start":
        sys.stderr.write("Traceback (most recent call last):\nImportError: fake worker cannot import torch\n")
        sys.exit(2)
    if MODE == "slow_start":
        time.sleep(float(os.environ.get("FAKE_WORKER_DELAY", "5")))
    if MODE == "noisy":
        print("this line is not JSON", flush=True)
        sys.stderr.write("fake worker: some library warning\n")
        sys.stderr.flush()
    if MODE == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    emit(
        "ready",
        id=None,
        protocol=1,
        versions={"python": sys.version.split()[0], "zss": "fake"},
        device="cpu",
        dtype="float32",
        gpu_free_bytes=None,
        gpu_total_bytes=None,
        pid=os.getpid(),
    )
    runner = threading.Thread(target=job_loop, daemon=True)
    runner.start()
    if os.environ.get("FAKE_HEARTBEAT"):
        threading.Thread(target=beat, args=(float(os.environ["FAKE_HEARTBEAT"]),), daemon=True).start()
    known = set()
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["type"] == "ping":
            (emit_slowly if MODE == "slow_line" else emit)("pong", id=msg.get("id"))
        elif msg["type"] == "generate":
            known.add(msg["job"]["id"])
            emit("accepted", id=msg["job"]["id"], queue_position=_jobs.qsize())
            _jobs.put(msg["job"])
        elif msg["type"] == "cancel":
            if msg["id"] in known:
                _cancelled.add(msg["id"])
            else:
                emit(
                    "error",
                    id=msg["id"],
                    code="unknown_job",
                    message=f"no job {msg['id']!r}",
                    hint="",
                    field="id",
                    problems=None,
                )
        elif msg["type"] == "shutdown" and MODE != "stubborn":
            break
    while MODE == "stubborn":
        time.sleep(1)
    # Like the real worker, finish nothing more: the daemon job thread dies with the process.


if __name__ == "__main__":
    main()
