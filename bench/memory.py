"""Peak memory of ZS² sampling against clip length, with exact chunking (chunk 8) and without.

Every configuration runs in a fresh process (this script re-invoked with ``--child``) so peaks do
not leak from one configuration into the next:

* CPU: peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) after sampling minus the peak after
  loading the model and a warm-up of 1 frame at 64×64, 1 step (library start-up costs excluded).
  Children run with ``MALLOC_MMAP_THRESHOLD_=1048576`` (glibc): blocks of 1 MiB and more are mapped
  and unmapped directly, so RSS follows live tensors instead of what malloc's growing heap keeps
  after a free (without it the same configuration's peak varies by ±30 % from run to run);
* CUDA: ``torch.cuda.max_memory_allocated()`` minus what was allocated after the same warm-up.

Within a denoising step the sampler runs the UNet on ``chunk`` frames at a time and decodes chunk by
chunk, so with chunking the peak should stay flat while the clip grows; frames are returned as PIL
images (what the worker writes), which is what still grows with the clip. The last line is
``chunked 64/8 frames peak = X.XX`` (target ≤ 1.1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import common

FRAMES = (8, 16, 32, 64)
CHUNK = 8


def peak_rss_bytes() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB, macOS bytes


def child(args) -> int:
    """One configuration: load, warm up, sample once, print one JSON line with the peak."""
    import gc

    import torch

    from zss_core.sampler import sample_video

    pipe = common.load_from_args(args)
    device = pipe._execution_device
    cuda = device.type == "cuda"
    kwargs = dict(prompt=common.PROMPT, steps=args.steps, lam=0.01, mu=0.98, output_type="pil")
    sample_video(pipe, frames=1, width=64, height=64, **dict(kwargs, steps=1))
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = peak_rss_bytes()
    start = time.perf_counter()
    result = sample_video(pipe, frames=args.frames, width=args.size, height=args.size, chunk=args.chunk, **kwargs)
    common.sync(device)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if cuda else peak_rss_bytes()) - base
    print(
        json.dumps(
            {
                "frames": args.frames,
                "chunk": args.chunk,
                "peak_bytes": peak,
                "baseline_bytes": base,
                "seconds": seconds,
                "frames_out": len(result.frames),
                "measure": "cuda max_memory_allocated" if cuda else "peak RSS",
            }
        ),
        flush=True,
    )
    return 0


def run_child(args, frames: int, chunk: int | None) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--frames",
        str(frames),
        "--size",
        str(args.size),
        "--steps",
        str(args.steps),
        "--model",
        args.model,
        "--bench-size",
        args.bench_size,
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--threads",
        str(args.threads),
    ]
    if chunk:
        cmd += ["--chunk", str(chunk)]
    env = dict(os.environ)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(2**20))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        oom = "out of memory" in proc.stderr.lower() or proc.returncode in (-9, 137)
        print(f"  frames={frames} chunk={chunk}: {'OOM' if oom else 'FAILED'} (exit {proc.returncode})\n{tail}")
        return {
            "frames": frames,
            "chunk": chunk,
            "peak_bytes": None,
            "seconds": None,
            "error": "OOM" if oom else "failed",
        }
    return json.loads(lines[-1])


def main(argv=None) -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256, help="width = height in pixels")
    p.add_argument("--steps", type=int, default=1, help="denoising steps (every step has the same peak)")
    p.add_argument("--child", action="store_true", help=argparse_hidden())
    p.add_argument("--frames", type=int, default=8, help=argparse_hidden())
    p.add_argument("--chunk", type=int, default=None, help=argparse_hidden())
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    frame_counts = FRAMES
    if args.quick:  # 3 processes instead of 7
        args.size, args.steps, frame_counts = min(args.size, 128), 1, (FRAMES[0], FRAMES[-1])

    common.header(
        "memory: peak memory vs frames, chunk 8 vs none",
        args,
        f", {args.size}x{args.size}, {args.steps} steps, each configuration in a fresh process",
    )
    print(
        "model: "
        + args.model
        + (
            f" (bench_pipeline size={args.bench_size!r}: {common.BENCH_SIZES[args.bench_size]})"
            if args.model == common.BENCH
            else ""
        )
    )
    results = {}
    for frames in frame_counts:
        for chunk in (None, CHUNK):
            if chunk is not None and chunk >= frames:
                results[(frames, chunk)] = results[(frames, None)]  # one chunk: the same run
                continue
            results[(frames, chunk)] = r = run_child(args, frames, chunk)
            if r["peak_bytes"] is not None:
                print(
                    f"  frames={frames:3d} chunk={chunk or 'none':>4}: peak +{r['peak_bytes'] / 2**20:8.1f} MiB "
                    f"({r['seconds']:.2f} s, {r['measure']})",
                    flush=True,
                )

    def mib(r):
        return None if r["peak_bytes"] is None else r["peak_bytes"] / 2**20

    rows = []
    for frames in frame_counts:
        none, chunked = results[(frames, None)], results[(frames, CHUNK)]
        rows.append(
            [
                frames,
                mib(none) if mib(none) is not None else none.get("error"),
                mib(chunked) if mib(chunked) is not None else chunked.get("error"),
                frames * args.size * args.size * 3 / 2**20,
                none["seconds"],
                chunked["seconds"],
            ]
        )
    common.print_table(
        ["frames", "no chunk MiB", f"chunk {CHUNK} MiB", "frames out MiB", "no chunk s", f"chunk {CHUNK} s"],
        rows,
        digits=1,
        title="Peak memory above the loaded model (MiB) and sampling time (s); 'frames out' is "
        "the returned RGB frames themselves, which must grow with the clip",
    )

    def ratio(chunk):
        hi, lo = results[(frame_counts[-1], chunk)]["peak_bytes"], results[(frame_counts[0], chunk)]["peak_bytes"]
        return "n/a" if hi is None or lo in (None, 0) else f"{hi / lo:.2f}"

    if args.quick:
        print(
            f"(--quick: at {args.size}x{args.size} a chunk's activations are small, so what must grow with the "
            f"clip (returned frames, latents, noise) weighs more in the ratio than at the default 256x256)"
        )
    print(f"unchunked {frame_counts[-1]}/{frame_counts[0]} frames peak = {ratio(None)}")
    print(f"chunked {frame_counts[-1]}/{frame_counts[0]} frames peak = {ratio(CHUNK)}")
    return 0


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
