"""Seamless loops and tileable frames: how seamless, and what they cost.

* wrap-around ratio: |frame m → frame 1| / mean |frame i → frame i+1| (mean absolute difference), on
  the initial noise and on decoded frames, with and without ``loop`` (1.0 = the loop point is like
  any other cut; target ≤ 1.2 in loop mode).
* seam ratio: difference across the image border (last column → first column, last row → first
  row) / mean difference between neighbouring columns/rows, with and without tiling (target ≤ 1.2).
* time overhead of each feature against the same clip without it (median of interleaved runs;
  target ≤ 3 % each). The last line is ``loop/tile overhead = X.XX / Y.YY``.
"""

from __future__ import annotations

import common
import numpy as np
import torch

from zss_core.noise import make_noise
from zss_core.sampler import sample_video


def wrap_ratio(frames) -> float:
    frames = [np.asarray(f, dtype=np.float32) for f in frames]
    neighbours = np.mean([np.abs(frames[i + 1] - frames[i]).mean() for i in range(len(frames) - 1)])
    return float(np.abs(frames[0] - frames[-1]).mean() / neighbours)


def seam_ratio(frame, axis: int) -> float:
    frame = np.asarray(frame, dtype=np.float32)
    inner = np.abs(np.diff(frame, axis=axis)).mean()
    return float(np.abs(np.take(frame, 0, axis=axis) - np.take(frame, -1, axis=axis)).mean() / inner)


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    frames, size, steps, repeats = (8, 64, 4, 2) if args.quick else (16, 128, 10, 3)
    common.header("loop_tile", args, f", {frames} frames {size}x{size}, {steps} steps")
    pipe = common.load_from_args(args)
    print(common.describe_pipeline(pipe, args.model, args.bench_size))
    base = dict(frames=frames, width=size, height=size, steps=steps, lam=0.1, seed=0, output_type="np")

    noise_rows = []
    for lam in (0.01, 0.1, 0.5):
        shape = (4, size // 8, size // 8)
        chain = make_noise("dependency", frames, shape, lam, generator=torch.Generator().manual_seed(0))
        ring = make_noise("dependency", frames, shape, lam, generator=torch.Generator().manual_seed(0), loop=True)
        noise_rows.append([lam, wrap_ratio(chain), wrap_ratio(ring)])
    common.print_table(["lambda", "wrap ratio chain", "wrap ratio loop"], noise_rows, "initial noise")

    runs = {
        "plain": lambda: sample_video(pipe, common.PROMPT, **base),
        "loop": lambda: sample_video(pipe, common.PROMPT, loop=True, **base),
        "tile xy": lambda: sample_video(pipe, common.PROMPT, tile_x=True, tile_y=True, **base),
    }
    results = {name: fn() for name, fn in runs.items()}
    times = common.time_interleaved(runs, repeats=repeats, warmup=0)
    rows = []
    for name, result in results.items():
        seams = [np.mean([seam_ratio(f, axis) for f in result.frames]) for axis in (1, 0)]
        rows.append([name, wrap_ratio(result.frames), seams[0], seams[1], common.median(times[name])])
    common.print_table(["run", "wrap ratio", "seam x", "seam y", "seconds"], rows, "decoded frames")
    plain = common.median(times["plain"])
    loop_cost = common.median(times["loop"]) / plain
    tile_cost = common.median(times["tile xy"]) / plain
    print(f"\nwrap ratio without/with loop = {rows[0][1]:.2f} / {rows[1][1]:.2f}")
    print(f"seam ratio x without/with tiling = {rows[0][2]:.2f} / {rows[2][2]:.2f}")
    print(f"loop/tile overhead = {loop_cost:.2f} / {tile_cost:.2f}")


if __name__ == "__main__":
    main()
