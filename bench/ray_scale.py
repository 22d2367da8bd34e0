"""How `zss serve`'s backends scale with workers: Ray actors vs local worker processes (issue 14).

Both backends are driven the way the server drives them (a `JobStore` record committed, then
`Backend.submit`; done when the store says so), without HTTP, so the numbers are about the backend.

* scale: ``--jobs`` small jobs (default 8; tiny model, 64×64) submitted at once to 1 and to 2 workers,
  each worker with 1 torch thread, after a warm-up job per worker (model loaded). Throughput is jobs
  per second from the first submit to the last ending event; the ratio 2 workers / 1 worker is the
  scale (target ≥ 1.7 with 2 free cores). Also the mean queue wait (submit → ``accepted``).
* overhead: one job at a time on a warm single worker, Ray and local side by side taking turns,
  ``--repeats`` times each; ratio of medians Ray / local (target ≤ 1.15). The worker's own job time
  (its ``done`` event's ``seconds``) is printed beside it: the rest is the backend's overhead.

Ray runs as a local cluster started here (``ray.init(num_cpus=…)``; ``ray.shutdown()`` at the end).
Run from the repository root: ``.venv/bin/python bench/ray_scale.py [--jobs 8] [--frames 4] [--steps 8]``.
The last lines are ``ray scale 2/1 = X.XX``, ``local scale 2/1 = X.XX``, ``overhead ray/local, backend
only = X.XX`` (the worker's job time taken as equal, only what each backend adds around it) and
``overhead ray/local = X.XX`` (wall-clock medians).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ["OMP_NUM_THREADS"] = "1"  # local workers inherit it: 1 torch thread each, as the Ray actors
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)

from zss_core.server.backend import Backend, LocalBackend  # noqa: E402
from zss_core.server.config import config_from_options  # noqa: E402
from zss_core.server.store import JobStore  # noqa: E402

OWNER = "bench"
counter = itertools.count()


def make_backend(kind: str, workers: int, data: str) -> Backend:
    config = config_from_options(data=data, workers=workers, gpus=(), backend=kind, max_queued=10_000)
    store = JobStore(config.data)
    if kind == "ray":
        from zss_core.server.ray_backend import RayBackend

        return RayBackend(config, store, torch_threads=1)
    return LocalBackend(config, store)


def store_of(backend: Backend) -> JobStore:
    store = getattr(backend, "store", None)
    assert isinstance(store, JobStore)
    return store


def submit(backend: Backend, frames: int, steps: int) -> str:
    store = store_of(backend)
    record = store.create(f"bench-{next(counter):05d}", OWNER, "tiny")
    assert store.commit(record)
    job = {"id": record.id, "output_dir": record.output_dir, "prompt": "blue marble veins", "model": "tiny",
           "frames": frames, "width": 64, "height": 64, "steps": steps, "seed": 1, "device": "cpu"}  # fmt: skip
    backend.submit(record.id, job)
    return record.id


def wait_all(backend: Backend, ids: list[str], timeout: float = 1800) -> dict[str, Any]:
    """Wait for every job to end; returns when each was accepted and ended (monotonic seconds)."""
    store = store_of(backend)
    accepted: dict[str, float] = {}
    ended: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(ended) < len(ids):
        if time.monotonic() > deadline:
            raise SystemExit(f"jobs did not end within {timeout} s")
        now = time.monotonic()
        for job_id in ids:
            record = store.get(job_id, OWNER)
            assert record is not None
            if job_id not in accepted and record.state != "queued":
                accepted[job_id] = now
            if job_id not in ended and not record.active:
                if record.state != "done":
                    raise SystemExit(f"job {job_id} ended {record.state}: {record.events[-1]}")
                ended[job_id] = now
        time.sleep(0.005)
    return {"accepted": accepted, "ended": ended}


def wait_ready(backend: Backend, workers: int) -> None:
    deadline = time.monotonic() + 600
    while not (len(backend.workers()) == workers and all(w["ready"] for w in backend.workers())):
        if time.monotonic() > deadline:
            raise SystemExit("the workers did not start")
        time.sleep(0.1)


def scale(kind: str, workers: int, jobs: int, frames: int, steps: int, data: str) -> tuple[float, float]:
    """(jobs per second, mean queue wait in seconds) for `jobs` jobs submitted at once."""
    backend = make_backend(kind, workers, data)
    backend.start()
    try:
        wait_ready(backend, workers)
        wait_all(backend, [submit(backend, frames, steps) for _ in range(workers)])  # warm every worker
        started = time.monotonic()
        ids = [submit(backend, frames, steps) for _ in range(jobs)]
        times = wait_all(backend, ids)
        seconds = max(times["ended"].values()) - started
        wait = statistics.mean(times["accepted"][i] - started for i in ids)
    finally:
        backend.close()
    print(f"  {kind:5s} {workers} worker{'s' if workers > 1 else ' '}  {jobs} jobs in {seconds:6.2f} s  "
          f"{jobs / seconds:5.2f} jobs/s  mean queue wait {wait:5.2f} s", flush=True)  # fmt: skip
    return jobs / seconds, wait


def one_job(repeats: int, frames: int, steps: int, data: str) -> dict[str, tuple[list[float], list[float]]]:
    """Per backend: (wall seconds submit → end, the worker's own seconds from its `done` event) per repeat.

    Both single-worker backends run side by side and take turns (round-robin, one job at a time), so
    a change in the machine's load hits both alike."""
    backends = {kind: make_backend(kind, 1, os.path.join(data, kind)) for kind in ("ray", "local")}
    times: dict[str, tuple[list[float], list[float]]] = {kind: ([], []) for kind in backends}
    try:
        for backend in backends.values():
            backend.start()
        for backend in backends.values():
            wait_ready(backend, 1)
            wait_all(backend, [submit(backend, frames, steps)])  # warm-up: the model loads
        for _ in range(repeats):
            for kind, backend in backends.items():
                started = time.monotonic()
                job_id = submit(backend, frames, steps)
                times[kind][0].append(wait_all(backend, [job_id])["ended"][job_id] - started)
                record = store_of(backend).get(job_id, OWNER)
                assert record is not None
                times[kind][1].append(float(record.events[-1]["seconds"]))
    finally:
        for backend in backends.values():
            backend.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpus", type=int, default=2, help="logical CPUs of the local Ray cluster")
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory(prefix="zss-bench-ray-") as tmp:
            print(f"scale: {args.jobs} jobs of {args.frames} frames, {args.steps} steps, 64×64, tiny model; "
                  f"1 torch thread per worker; {os.cpu_count()} cores here", flush=True)  # fmt: skip
            result = {}
            for workers in (1, 2):
                for kind in ("ray", "local"):
                    result[kind, workers] = scale(kind, workers, args.jobs, args.frames, args.steps,
                                                  os.path.join(tmp, f"{kind}{workers}"))  # fmt: skip
            print(f"\noverhead: one job at a time on one warm worker, {args.repeats} repeats, round-robin (seconds)")
            single = one_job(args.repeats, args.frames, args.steps, os.path.join(tmp, "one"))
            for kind, (values, inside) in single.items():
                outside = statistics.median(w - i for w, i in zip(values, inside))
                print(f"  {kind:5s} median {statistics.median(values):.3f}  ({', '.join(f'{v:.3f}' for v in values)})"
                      f"  in the worker's job {statistics.median(inside):.3f}, outside it {outside:.3f}")  # fmt: skip
    finally:
        ray.shutdown()
    print(f"ray scale 2/1 = {result['ray', 2][0] / result['ray', 1][0]:.2f}")
    print(f"local scale 2/1 = {result['local', 2][0] / result['local', 1][0]:.2f}")
    walls = {kind: statistics.median(values) for kind, (values, _) in single.items()}
    outside = {kind: statistics.median(w - i for w, i in zip(*single[kind])) for kind in single}
    job = statistics.median(single["local"][1])
    # The same job's compute differs between processes on a loaded machine; this one counts only what
    # each backend adds around the worker's job (queue, events, files), on the local worker's job time.
    print(f"overhead ray/local, backend only = {(job + outside['ray']) / (job + outside['local']):.2f}")
    print(f"overhead ray/local = {walls['ray'] / walls['local']:.2f}")


if __name__ == "__main__":
    main()
