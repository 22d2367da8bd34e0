"""Cost of going through the generator process (zss_core.worker over stdio) instead of calling
``zss_core.runner.run_job`` in-process, for the same job and model.

Measured from the client's side (``zss_core.client.WorkerClient``, what the Blender add-on uses):

* start-up: ``start()`` until ``ready``
* accepted: ``generate`` sent → ``accepted`` received
* first denoise progress: ``generate`` sent → first ``progress`` event of stage ``denoise`` (noise,
  prompt, first denoising step); compared with the same moment in-process (first progress callback)
* total: ``generate`` sent → ``done`` received, against the wall time of ``run_job`` in-process

Job 1 through the worker is cold (it loads the model); the ratio uses the warm jobs that follow. The
worker and in-process runs alternate (warm-up first) and the table shows medians. The job writes
PNG frames, the MP4 and the contact sheet in both paths. The worker loads its model by name, so the
model is ``tiny`` (or a real model path), not the ``bench`` model of the other scripts; the default
job (16 frames, 128×128, 40 steps) takes a few seconds so that the ratio means something.
Last line: ``worker overhead = X.XX`` (target ≤ 1.05).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import common


def make_job(args, job_id: str, output_dir: str) -> dict:
    return {
        "id": job_id,
        "prompt": common.PROMPT,
        "model": args.model,
        "output_dir": output_dir,
        "frames": args.frames,
        "width": args.size,
        "height": args.size,
        "steps": args.steps,
        "seed": 0,
        "device": args.device,
        "dtype": args.dtype,
    }


def through_worker(client, job: dict) -> dict:
    """Submit one job and time its events as the client sees them."""
    job_id = job["id"]
    start = time.perf_counter()
    client.submit(job)
    marks = {}

    def ours(event):
        return getattr(event, "id", None) == job_id

    event = client.wait_for(lambda e: ours(e) and e.type in ("accepted", "error"), timeout=60)
    if event.type == "error":
        raise RuntimeError(f"worker refused the job: {event.message} ({event.hint})")
    marks["accepted"] = time.perf_counter() - start
    while True:
        event = client.wait_for(lambda e: ours(e) and e.type in ("progress", "done", "error", "cancelled"), timeout=600)
        now = time.perf_counter() - start
        if event.type == "progress" and event.stage == "denoise" and "first_denoise" not in marks:
            marks["first_denoise"] = now
        if event.type in ("done", "error", "cancelled"):
            if event.type != "done":
                raise RuntimeError(f"job {job_id} ended with {event.type}: {getattr(event, 'message', '')}")
            marks["total"] = now
            marks["worker_seconds"] = event.seconds  # run_job's own wall time inside the worker
            marks["load_seconds"] = event.model_load_seconds
            return marks


def in_process(pipe, job: dict) -> dict:
    from zss_core.protocol import Job
    from zss_core.runner import JobCallbacks, run_job

    marks = {}
    start = time.perf_counter()

    def progress(step, total):
        marks.setdefault("first_denoise", time.perf_counter() - start)

    run_job(Job.from_dict(job), pipe, JobCallbacks(progress=progress))
    marks["total"] = time.perf_counter() - start
    return marks


def main(argv=None) -> int:
    p = common.parser(__doc__.splitlines()[0], model_default="tiny")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=128, help="width = height in pixels")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3, help="warm jobs per path")
    args = p.parse_args(argv)
    if args.model == common.BENCH:
        p.error("the worker loads models by name: use --model tiny or a real model path")
    if args.quick:
        args.frames, args.steps, args.repeats = min(args.frames, 8), min(args.steps, 20), min(args.repeats, 2)

    from zss_core.client import WorkerClient
    from zss_core.models import load_pipeline

    common.header(
        "worker: generator process vs in-process run_job",
        args,
        f", model {args.model}, job of {args.frames} frames {args.size}x{args.size}, {args.steps} steps, "
        f"{args.repeats} warm jobs per path",
    )
    env = dict(os.environ)
    env.setdefault("ZSS_LOG_LEVEL", "WARNING")
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="zss-bench-worker-") as tmp:
        started = time.perf_counter()
        client = WorkerClient(sys.executable, env=env)
        ready = client.start(timeout=180)
        startup = time.perf_counter() - started
        print(f"worker ready in {startup:.2f} s (pid {ready.pid}, device {ready.device}, dtype {ready.dtype})")
        try:
            cold = through_worker(client, make_job(args, "cold", tmp))
            print(f"cold job: {cold['total']:.2f} s (model load {cold['load_seconds']:.2f} s)")
            pipe = load_pipeline(args.model, device=args.device, dtype=args.dtype)
            in_process(pipe, make_job(args, "warmup-inproc", tmp))  # warm-up
            worker_runs, local_runs = [], []
            for r in range(args.repeats):
                worker_runs.append(through_worker(client, make_job(args, f"worker-{r}", tmp)))
                local_runs.append(in_process(pipe, make_job(args, f"inproc-{r}", tmp)))
                print(
                    f"  run {r + 1}/{args.repeats}: worker {worker_runs[-1]['total']:.3f} s, "
                    f"in-process {local_runs[-1]['total']:.3f} s",
                    flush=True,
                )
        finally:
            client.stop()

    def med(runs, key):
        return common.median([r[key] for r in runs])

    rows = [
        ["worker start-up (start → ready)", startup * 1e3, None],
        ["generate → accepted", med(worker_runs, "accepted") * 1e3, None],
        [
            "generate → first denoise progress",
            med(worker_runs, "first_denoise") * 1e3,
            med(local_runs, "first_denoise") * 1e3,
        ],
        ["generate → done / run_job", med(worker_runs, "total") * 1e3, med(local_runs, "total") * 1e3],
        ["run_job inside the worker (done.seconds)", med(worker_runs, "worker_seconds") * 1e3, None],
    ]
    common.print_table(
        ["warm job, medians", "worker ms", "in-process ms"], rows, digits=1, title="Latency and wall time (ms)"
    )
    transport = med(worker_runs, "total") - med(worker_runs, "worker_seconds")
    print(f"protocol + event transport outside run_job: {transport * 1e3:.1f} ms per job")
    print(f"worker overhead = {med(worker_runs, 'total') / med(local_runs, 'total'):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
