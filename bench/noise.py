"""Dependency noise model (DNM): search accuracy and cost, "exact" vs "paper" coefficient search.

For each λ and search, ``dependency_noise`` makes clips of 16 frames of 4×64×64 latents (SD1.5 at
512²) from several seeds and reports:

* DNM ms/frame: the whole generator (candidate pool of 10, random search, coefficient search, mix)
* search ms/frame: the coefficient search alone (``exact``: closed form; ``paper``: line search)
* mean / max |D − λ| over all transitions (D: the divergence of docs/algorithm.md)
* lag-1 correlation between consecutive frames vs the √α oracle, α = alpha_for_divergence(λ)
  (the correlation PYoCo's progressive noise has in expectation; it is shown as a reference row)
* marginals: the largest |mean| and the std range over frames (each frame should stay N(0, I))

A second table shows how close consecutive frames can get at small λ, against latent size, with
the default 10 candidates and with 1: the random search keeps the candidate whose own divergence is
closest to λ, i.e. the one with the largest B = mean(e^y·ε̃), and with B > 0 the smallest mixing
angle θ (√α = cos θ) that reaches D = λ is about 2B/A, a floor on per-frame change that grows as
the latent gets smaller (B's spread is about e/√N for N latent elements).

Then the share of DNM in one ``sample_video`` run of the model (``timings["noise_seconds"]`` over
``timings["total_seconds"]``, median over runs). Last line: ``dnm share of sampling = X.XX%``
(target ≤ 1 %).
"""

from __future__ import annotations

import math
import time

import common

LAMBDAS = (0.01, 0.05, 0.1, 0.25)
SHAPE = (4, 64, 64)


def lag1_correlation(noise) -> list[float]:
    import torch

    flat = noise.flatten(1).double()
    flat = flat - flat.mean(1, keepdim=True)
    flat = flat / flat.norm(dim=1, keepdim=True)
    return [float(torch.dot(flat[i], flat[i - 1])) for i in range(1, flat.shape[0])]


def measure(model: str, lam: float, search: str, frames: int, seeds: int) -> dict:
    """Run one generator over ``seeds`` seeds; the coefficient search is timed by wrapping it."""
    import torch

    from zss_core import noise as dnm

    solve_time = [0.0]
    original = dict(dnm._SOLVERS)

    def timed_solver(fn):
        def solve(prev, cand, target):
            start = time.perf_counter()
            try:
                return fn(prev, cand, target)
            finally:
                solve_time[0] += time.perf_counter() - start
        return solve

    errors, corrs, means, stds, totals = [], [], [], [], []
    dnm._SOLVERS.update({name: timed_solver(fn) for name, fn in original.items()})
    try:
        for seed in range(seeds):
            generator = torch.Generator("cpu").manual_seed(1000 + seed)
            options = dict(search=search, candidates=10) if model == "dependency" else {}
            start = time.perf_counter()
            noise, stats = dnm.make_noise(model, frames, SHAPE, lam, generator=generator, return_stats=True,
                                          **options)
            totals.append(time.perf_counter() - start)
            errors += [abs(d - t) for d, t in zip(stats.divergence[1:], stats.target[1:])]
            corrs += lag1_correlation(noise)
            means += noise.flatten(1).mean(1).tolist()
            stds += noise.flatten(1).std(1).tolist()
    finally:
        dnm._SOLVERS.update(original)
    runs = seeds * frames
    return {
        "dnm_ms": 1e3 * sum(totals) / runs,
        "search_ms": 1e3 * solve_time[0] / runs if model == "dependency" else None,
        "err_mean": sum(errors) / len(errors),
        "err_max": max(errors),
        "corr": sum(corrs) / len(corrs),
        "oracle": math.sqrt(dnm.alpha_for_divergence(lam)),
        "max_abs_mean": max(abs(m) for m in means),
        "std_range": f"{min(stds):.3f}-{max(stds):.3f}",
    }


def floor_table(seeds: int) -> None:
    """Lag-1 correlation vs the oracle at small λ for several latent sizes, 10 candidates vs 1."""
    import torch

    from zss_core.noise import alpha_for_divergence, dependency_noise

    rows = []
    for side in (8, 16, 32, 64):
        for lam in (0.001, 0.01):
            corr = {}
            for candidates in (10, 1):
                values = []
                for seed in range(seeds):
                    noise = dependency_noise(16, (4, side, side), lam, candidates=candidates,
                                             generator=torch.Generator("cpu").manual_seed(2000 + seed))
                    values += lag1_correlation(noise)
                corr[candidates] = sum(values) / len(values)
            oracle = math.sqrt(alpha_for_divergence(lam))
            rows.append([f"4x{side}x{side} ({8 * side}²)", lam, corr[10], corr[1], oracle])
    common.print_table(["latent (image)", "λ", "corr, 10 cand.", "corr, 1 cand.", "√α oracle"], rows, digits=4,
                       title="How close consecutive frames get at small λ (lag-1 correlation, exact search)")


def main(argv=None) -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=16, help="frames per DNM clip")
    p.add_argument("--seeds", type=int, default=5, help="clips per (λ, search)")
    p.add_argument("--sample-frames", type=int, default=8, help="frames of the sampling run for the share")
    p.add_argument("--sample-size", type=int, default=128)
    p.add_argument("--sample-steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="sampling runs for the share")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.sample_size = min(args.seeds, 2), min(args.sample_size, 64)
        args.sample_steps = min(args.sample_steps, 5)

    import torch

    common.header("noise: dependency noise model search", args,
                  f", {args.frames} frames of {'x'.join(map(str, SHAPE))} latents, {args.seeds} seeds per row, "
                  f"10 candidates; CPU float32 (sample_video always draws noise on the CPU)")
    torch.manual_seed(0)
    rows = []
    for lam in LAMBDAS:
        for model, search in (("dependency", "exact"), ("dependency", "paper"), ("progressive", None)):
            m = measure(model, lam, search or "exact", args.frames, args.seeds)
            name = f"dnm/{search}" if model == "dependency" else "progressive (oracle α)"
            rows.append([lam, name, m["dnm_ms"], m["search_ms"], m["err_mean"], m["err_max"], m["corr"],
                         m["oracle"], m["max_abs_mean"], m["std_range"]])
    common.print_table(["λ", "generator", "ms/frame", "search ms/frame", "mean |D-λ|", "max |D-λ|",
                        "lag-1 corr", "√α oracle", "max |mean|", "std min-max"], rows,
                       title="Dependency noise: accuracy and cost (ms per frame, |D-λ| over all transitions)",
                       digits=4)

    floor_table(args.seeds)

    from zss_core.sampler import sample_video

    pipe = common.load_from_args(args)
    print("\n" + common.describe_pipeline(pipe, args.model, args.bench_size))
    kwargs = dict(prompt=common.PROMPT, frames=args.sample_frames, width=args.sample_size, height=args.sample_size,
                  steps=args.sample_steps, lam=0.01, mu=0.98, noise="dependency", search="exact", output_type="np")
    sample_video(pipe, **kwargs)  # warm-up
    shares, share_rows = [], []
    for r in range(args.repeats):
        t = sample_video(pipe, **dict(kwargs, seed=r)).timings
        shares.append(t["noise_seconds"] / t["total_seconds"])
        share_rows.append([r + 1, t["noise_seconds"] * 1e3, t["total_seconds"], 100 * shares[-1]])
    common.print_table(["run", "DNM ms", "sampling s", "DNM %"], share_rows,
                       title=f"DNM share of one ZS² sampling run ({args.sample_frames} frames "
                             f"{args.sample_size}x{args.sample_size}, {args.sample_steps} steps, exact search)")
    exact_512 = common.median([row[2] for row in rows if row[1] == "dnm/exact"])
    print(f"for scale: at SD1.5's 4x64x64 latents the generator takes {exact_512:.2f} ms/frame here "
          f"(exact search, median over λ), {exact_512 * args.sample_frames:.1f} ms for {args.sample_frames} frames")
    print(f"dnm share of sampling = {100 * common.median(shares):.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
