"""Initial noise: is every model's noise N(0, I) in every frame, at the divergence it was asked for?

For each λ, every noise model makes ``--seeds`` clips of ``--frames`` (128) frames of 4×64×64 latents
(SD1.5 at 512²), drawn like ``sample_video`` draws them (CPU, float32, seeded), and
``zss_core.noise_check`` reports, side by side with independent noise:

* mean |·| (SE): the largest |frame mean| over all frames, in standard errors of N(0, I) (1/√n)
* level (SE): the mean of all frame means over its SE under the model (a drift shows here)
* trend (SE): least-squares slope of the frame mean against the frame index over its SE under the
  model (an AR(1) chain for dependency/progressive, shared + individual for mixed)
* chan. (SE): the largest |channel mean|; std (SE): the largest |frame std − 1|; std min-max
* max |D-λ|: D the divergence of docs/algorithm.md (pinned by dnm/exact, dnm/closest; reached only
  in expectation by the baselines; independent noise is not asked for a λ)
* lag-1: mean correlation of consecutive frames, its closed form (1 − λ/√e for every model asked for
  λ, 0 for independent noise) and the largest |correlation − closed form| over consecutive pairs
* ms/frame: the whole generator

Generators: ``dnm/exact`` (the default: Gaussian AR(1) step pinned to D = λ, docs/algorithm.md
"Unbiased dependency noise"), ``dnm/closest`` (random search over 10 candidates + closed-form α, the
default before issue 16), ``dnm/paper`` (random search + the paper's line search), the PYoCo baselines
at the same expected divergence, and independent noise. Unbiased means: every SE column within ±4
like independent noise's, max |D-λ| ≈ 0 and lag-1 within 0.01 of its closed form.

A second table shows how close consecutive frames get at small λ against latent size (exact vs
closest): the random search keeps the candidate with the largest B = mean(e^y·ε̃), and with B > 0 the
smallest mixing angle reaching D = λ is about 2B/A, a floor on per-frame change that grows as the
latent gets smaller; the exact construction has no such floor.

Then the share of DNM in one ``sample_video`` run of the model (``timings["noise_seconds"]`` over
``timings["total_seconds"]``, median over runs). Last line: ``dnm share of sampling = X.XX%``
(target ≤ 1 %).
"""

from __future__ import annotations

import math
import time

import common

LAMBDAS = (0.01, 0.1)
SHAPE = (4, 64, 64)
SQRT_E = math.sqrt(math.e)
# (row name, noise model, search) in table order; independent noise last, as the reference.
GENERATORS = (
    ("dnm/exact", "dependency", "exact"),
    ("dnm/closest", "dependency", "closest"),
    ("dnm/paper", "dependency", "paper"),
    ("progressive", "progressive", None),
    ("mixed", "mixed", None),
    ("independent", "independent", None),
)


def model_correlation(model: str, lam: float, frames: int) -> list[float]:
    """The correlation between frames d apart that ``model`` is built to have at divergence λ."""
    from zss_core.noise_check import chain_correlation

    rho = max(1.0 - lam / SQRT_E, 0.0)
    if model == "independent":
        return [1.0] + [0.0] * (frames - 1)
    if model == "mixed":  # shared + individual: every pair of distinct frames correlates with α = ρ
        return [1.0] + [rho] * (frames - 1)
    return chain_correlation(frames, rho)


def measure(model: str, search: str | None, lam: float, frames: int, seeds: int):
    """Clips of one generator over ``seeds`` seeds: (NoiseCheck, ms per frame)."""
    import torch

    from zss_core.noise import make_noise
    from zss_core.noise_check import check_noise

    options = {"search": search, "candidates": 10} if search else {}
    clips, seconds = [], 0.0
    for seed in range(seeds):
        generator = torch.Generator("cpu").manual_seed(1000 + seed)
        start = time.perf_counter()
        clips.append(make_noise(model, frames, SHAPE, lam, generator=generator, **options))
        seconds += time.perf_counter() - start
    target = None if model == "independent" else lam
    return check_noise(torch.stack(clips), target, model_correlation(model, lam, frames)), 1e3 * seconds / (
        seeds * frames
    )


def unbiasedness_table(frames: int, seeds: int) -> list[list]:
    rows = []
    for lam in LAMBDAS:
        for name, model, search in GENERATORS:
            c, ms = measure(model, search, lam, frames, seeds)
            rows.append(
                [
                    lam,
                    name,
                    c.frame_mean_se,
                    c.level_se,
                    c.trend_se,
                    c.channel_mean_se,
                    c.frame_std_se,
                    f"{c.std_min:.3f}-{c.std_max:.3f}",
                    None if math.isnan(c.divergence_error) else c.divergence_error,
                    c.lag1,
                    c.lag1_closed_form,
                    c.lag1_error,
                    ms,
                ]
            )
    common.print_table(
        [
            "λ",
            "generator",
            "mean |·| (SE)",
            "level (SE)",
            "trend (SE)",
            "chan. (SE)",
            "std (SE)",
            "std min-max",
            "max |D-λ|",
            "lag-1",
            "closed form",
            "max |lag-1 - cf|",
            "ms/frame",
        ],
        rows,
        title=f"Is every frame N(0, I)? {frames} frames x {seeds} seeds of {'x'.join(map(str, SHAPE))} "
        "latents (SE columns: standard errors of N(0, I); unbiased = within ±4, like independent)",
        digits=3,
    )
    return rows


def floor_table(seeds: int) -> None:
    """Lag-1 correlation vs its closed form at small λ for several latent sizes, exact vs closest."""
    import torch

    from zss_core.noise import dependency_noise
    from zss_core.noise_check import lag1_correlations

    rows = []
    for side in (8, 16, 32, 64):
        for lam in (0.001, 0.01):
            corr = {}
            for search in ("exact", "closest"):
                values = []
                for seed in range(seeds):
                    noise = dependency_noise(
                        16,
                        (4, side, side),
                        lam,
                        search=search,
                        generator=torch.Generator("cpu").manual_seed(2000 + seed),
                    )
                    values += lag1_correlations(noise).tolist()
                corr[search] = sum(values) / len(values)
            rows.append([f"4x{side}x{side} ({8 * side}²)", lam, corr["exact"], corr["closest"], 1 - lam / SQRT_E])
    common.print_table(
        ["latent (image)", "λ", "lag-1, exact", "lag-1, closest", "1 - λ/√e"],
        rows,
        digits=4,
        title="How close consecutive frames get at small λ (mean lag-1 correlation, 16 frames)",
    )


def main(argv=None) -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=128, help="frames per noise clip")
    p.add_argument("--seeds", type=int, default=4, help="clips per (λ, generator)")
    p.add_argument("--sample-frames", type=int, default=8, help="frames of the sampling run for the share")
    p.add_argument("--sample-size", type=int, default=128)
    p.add_argument("--sample-steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="sampling runs for the share")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.sample_size = min(args.seeds, 2), min(args.sample_size, 64)
        args.sample_steps = min(args.sample_steps, 5)

    common.header(
        "noise: is every frame's noise N(0, I) at the asked divergence",
        args,
        f", {args.frames} frames of {'x'.join(map(str, SHAPE))} latents, {args.seeds} seeds per row; "
        "CPU float32 (sample_video always draws noise on the CPU)",
    )
    rows = unbiasedness_table(args.frames, args.seeds)
    floor_table(args.seeds)

    from zss_core.sampler import sample_video

    pipe = common.load_from_args(args)
    print("\n" + common.describe_pipeline(pipe, args.model, args.bench_size))
    kwargs = {
        "prompt": common.PROMPT,
        "frames": args.sample_frames,
        "width": args.sample_size,
        "height": args.sample_size,
        "steps": args.sample_steps,
        "lam": 0.01,
        "mu": 0.98,
        "noise": "dependency",
        "search": "exact",
        "output_type": "np",
    }
    sample_video(pipe, **kwargs)  # warm-up
    shares, share_rows = [], []
    for r in range(args.repeats):
        t = sample_video(pipe, **kwargs, seed=r).timings
        shares.append(t["noise_seconds"] / t["total_seconds"])
        share_rows.append([r + 1, t["noise_seconds"] * 1e3, t["total_seconds"], 100 * shares[-1]])
    common.print_table(
        ["run", "DNM ms", "sampling s", "DNM %"],
        share_rows,
        title=f"DNM share of one ZS² sampling run ({args.sample_frames} frames "
        f"{args.sample_size}x{args.sample_size}, {args.sample_steps} steps, exact search)",
    )
    exact_512 = common.median([row[-1] for row in rows if row[1] == "dnm/exact"])
    print(
        f"for scale: at SD1.5's 4x64x64 latents the generator takes {exact_512:.2f} ms/frame here "
        f"(exact search, median over λ), {exact_512 * args.sample_frames:.1f} ms for {args.sample_frames} frames"
    )
    print(f"dnm share of sampling = {100 * common.median(shares):.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
