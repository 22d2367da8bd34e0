"""What `zss serve` costs over the local worker, and how it holds up under many clients.

* overhead: the same job (default 16 frames of the tiny model, 64×64) through ``LocalClient`` (a warm
  local worker) and through ``RemoteClient`` → ``zss serve`` on loopback (a warm server worker, the
  frames, MP4 and job.json downloaded into a local folder). Warm-up once each, then round-robin
  repeats; medians. Ratio target ≤ 1.10.
* load: ``--clients`` threads (default 50) for ``--duration`` seconds (default 60), each submitting a
  small job (1 frame, 1 step), polling its status until it ends, and again. Counts 5xx answers and
  lost jobs (submitted, not listed afterwards), prints p50/p99 of the status calls.

Run from the repository root: ``.venv/bin/python bench/serve.py [--duration 60] [--clients 50]``.
The last line is ``overhead serve/local = X.XX`` (target ≤ 1.10).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from zss_core.client import LocalClient, child_env  # noqa: E402
from zss_core.remote import RemoteClient, ServerError, Unreachable  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, workers: int, max_queued: int) -> tuple[subprocess.Popen, str, str]:
    """`zss serve` on loopback with one token and the tiny model as `tiny`; returns (process, url, token)."""
    (folder / "models.toml").write_text('[models.tiny]\nmodel = "tiny"\ncontrolnet = "tiny"\n')
    tokens = folder / "tokens.txt"
    token = subprocess.run(
        [sys.executable, "-m", "zss_core.cli", "token", "new", "--token-file", str(tokens)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
    ).stdout.strip()
    port = free_port()
    cmd = [sys.executable, "-m", "zss_core.cli", "serve", "--port", str(port), "--data", str(folder / "data")]
    cmd += ["--token-file", str(tokens), "--models", str(folder / "models.toml"), "--workers", str(workers)]
    cmd += ["--max-queued", str(max_queued)]
    log = open(folder / "server.log", "w")  # noqa: SIM115 - the child keeps it
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=child_env())
    url = f"http://127.0.0.1:{port}"
    client = RemoteClient(url, token)
    deadline = time.monotonic() + 180
    while True:
        try:
            client.wait_ready(timeout=5)
            if all(w["ready"] for w in client.workers):
                return process, url, token
        except Exception:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("zss serve did not start:\n" + (folder / "server.log").read_text()[-3000:])
        time.sleep(0.5)


def job(job_id: str, out: Path, frames: int, steps: int) -> dict:
    return {
        "id": job_id,
        "prompt": "blue marble veins",
        "model": "tiny",
        "output_dir": str(out),
        "frames": frames,
        "width": 64,
        "height": 64,
        "steps": steps,
        "seed": 1,
    }


def run_one(client, job_dict: dict) -> tuple[float, float]:
    """(wall seconds from submit to the done event in this process, the worker's own seconds)."""
    start = time.perf_counter()
    client.submit(job_dict)
    while True:
        for event in client.poll_events():
            if event.id == job_dict["id"] and event.type in ("done", "error", "cancelled"):
                if event.type != "done":
                    raise SystemExit(f"job failed: {event}")
                return time.perf_counter() - start, event.seconds
        time.sleep(0.002)


def overhead(url: str, token: str, folder: Path, frames: int, steps: int, repeats: int) -> float:
    local = LocalClient(sys.executable, env=child_env())
    local.start(timeout=180)
    remote = RemoteClient(url, token, poll_wait=10)
    remote.wait_ready(timeout=30)
    times: dict[str, list[float]] = {"local": [], "serve": []}
    outside: dict[str, list[float]] = {"local": [], "serve": []}  # wall time not spent in the worker's job
    try:
        for i in range(repeats + 1):  # round 0 warms both up (model load)
            for name, client in (("local", local), ("serve", remote)):
                wall, worker = run_one(client, job(f"{name}-{i}", folder / name, frames, steps))
                if i:
                    times[name].append(wall)
                    outside[name].append(wall - worker)
    finally:
        local.stop()
        remote.close()
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{frames}-frame job, {steps} steps, 64×64, tiny model, {repeats} repeats (median seconds)")
    print("  path   wall     (each)                        outside the worker's job (queue, HTTP, downloads)")
    for name, values in times.items():
        each = ", ".join(f"{v:.3f}" for v in values)
        print(f"  {name:6s} {medians[name]:7.3f}   ({each})   {statistics.median(outside[name]):.3f}")
    return medians["serve"] / medians["local"]


def load(url: str, token: str, clients: int, duration: float) -> None:
    api = RemoteClient(url, token, timeout=60)
    latencies: list[float] = []
    submitted: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    body = {"prompt": "load", "model": "tiny", "frames": 1, "width": 64, "height": 64, "steps": 1}
    stop_at = time.monotonic() + duration

    def one_client() -> None:
        while time.monotonic() < stop_at:
            try:
                job_id = json.loads(api.request("POST", "/v1/jobs", body))["id"]
                with lock:
                    submitted.append(job_id)
                while True:
                    t = time.perf_counter()
                    state = api.get_json(f"/v1/jobs/{job_id}")["state"]
                    with lock:
                        latencies.append(time.perf_counter() - t)
                    if state not in ("queued", "running") or time.monotonic() > stop_at + 120:
                        break
                    time.sleep(0.2)
            except (Unreachable, ServerError) as e:
                with lock:
                    errors.append(str(e))
                time.sleep(0.5)

    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    listed = {j["id"]: j["state"] for j in api.get_json("/v1/jobs")["jobs"]}
    lost = [j for j in submitted if j not in listed]
    server_errors = [e for e in errors if "answered 5" in e]
    states = collections.Counter(listed[j] for j in submitted if j in listed)
    ms = sorted(v * 1000 for v in latencies)
    p50 = ms[len(ms) // 2] if ms else float("nan")
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else float("nan")
    done = sum(1 for j in submitted if listed.get(j) == "done")
    print(f"\nload: {clients} clients for {duration:g} s")
    print(f"  jobs submitted {len(submitted)}, done {done}, lost {len(lost)}, states {dict(states)}")
    print(f"  status calls {len(ms)}: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"  5xx answers {len(server_errors)}, other errors {len(errors) - len(server_errors)}")
    for e in errors[:5]:
        print(f"    {e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the load test (0: skip it)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="zss-bench-serve-") as tmp:
        folder = Path(tmp)
        process, url, token = start_server(folder, args.workers, max_queued=args.clients * 2)
        try:
            ratio = overhead(url, token, folder, args.frames, args.steps, args.repeats)
            if args.duration > 0:
                load(url, token, args.clients, args.duration)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"overhead serve/local = {ratio:.2f}")


if __name__ == "__main__":
    main()
