"""Temporal coherence of sampled clips without a learned metric, over λ, μ and the noise baselines.

For every pair of consecutive frames (pixels in [0, 1], RGB):

* MAD: mean absolute difference (lower = more coherent)
* SSIM: Gaussian-window SSIM (11×11, σ = 1.5, C1 = 0.01², C2 = 0.03², mean over channels; higher =
  more coherent)
* warp error: optical flow from frame i to i+1 (OpenCV DIS, medium preset, on grey levels), frame
  i+1 warped back onto frame i with that flow (bilinear), mean absolute error against frame i
  (lower = more coherent: what motion cannot explain)

Sweeps: λ ∈ {0.001, 0.01, 0.1, 0.5, 1.65} at μ = 0.98 and μ ∈ {0, 0.5, 0.9, 0.98, 1} at λ = 0.01
(dependency noise + TMA), then the baselines mixed / progressive / independent noise (and ZS²'s
dependency noise) with TMA at μ = 0.98 and without, all on the same seeds. docs/algorithm.md (What the
benchmarks check) expects coherence to improve monotonically as λ falls and as μ rises.

With the default random-weight model the UNet's attention carries little structure, so TMA's effect
is small and the noise dominates; run with ``--model`` pointing at real SD1.x weights for real
pictures. Results go to bench/out/coherence.json and, if matplotlib is installed,
bench/out/coherence.png. The last lines are ``coherence MAD λ 0.001→1.65 = A→B, μ 0→1 = C→D`` and
``coherence MAD zs2/independent = X.XX`` (ZS² at λ=0.01, μ=0.98 against plain per-frame sampling).
"""

from __future__ import annotations

import itertools
import json

import common
import numpy as np

LAMBDAS = (0.001, 0.01, 0.1, 0.5, 1.65)
MUS = (0.0, 0.5, 0.9, 0.98, 1.0)
LAM0, MU0 = 0.01, 0.98
BASELINES = ("dependency", "mixed", "progressive", "independent")


# ---------------------------------------------------------------------------------------------
# Metrics


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two float images (H, W, C) in [0, 1] with an 11×11 Gaussian window, σ = 1.5."""
    import cv2

    c1, c2 = 0.01**2, 0.03**2
    a, b = a.astype(np.float64), b.astype(np.float64)

    def blur(x):
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


_DIS = None


def warp_error(a: np.ndarray, b: np.ndarray) -> float:
    """Flow a→b (DIS), b warped back onto a, mean |warped − a| (float images in [0, 1])."""
    import cv2

    global _DIS
    if _DIS is None:
        _DIS = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey = [cv2.cvtColor((np.clip(x, 0, 1) * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY) for x in (a, b)]
    flow = _DIS.calc(grey[0], grey[1], None)
    h, w = grey[0].shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(
        b.astype(np.float32), xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return float(np.abs(warped - a.astype(np.float32)).mean())


def clip_metrics(frames) -> dict:
    frames = [np.asarray(f, dtype=np.float32) for f in frames]
    pairs = list(itertools.pairwise(frames))
    return {
        "mad": float(np.mean([np.abs(b - a).mean() for a, b in pairs])),
        "ssim": float(np.mean([ssim(a, b) for a, b in pairs])),
        "warp": float(np.mean([warp_error(a, b) for a, b in pairs])),
    }


def monotonic(values, direction: str) -> bool:
    """Non-strictly monotonic: direction 'up' (each ≥ the previous) or 'down'."""
    steps = np.diff(np.asarray(values, dtype=np.float64))
    return bool(np.all(steps >= 0) if direction == "up" else np.all(steps <= 0))


# ---------------------------------------------------------------------------------------------


def plot(results: dict, path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (the numbers are in coherence.json)"
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for row, (key, xs, label) in enumerate((("lam", LAMBDAS, "λ (μ = 0.98)"), ("mu", MUS, "μ (λ = 0.01)"))):
        for col, metric in enumerate(("mad", "ssim", "warp")):
            ax = axes[row][col]
            ax.plot(xs, [results[key][str(x)][metric] for x in xs], "o-", label="ZS² (dependency + TMA)")
            if key == "lam":
                ax.set_xscale("log")
                for (name, value), style in zip(results["baselines"].items(), ("--", ":", "-.") * 4):
                    if name.endswith("/tma") and not name.startswith("dependency"):
                        ax.axhline(
                            value[metric],
                            linestyle=style,
                            color="grey",
                            linewidth=1,
                            label=f"{name.split('/')[0]} noise + TMA, λ=0.01",
                        )
                if col == 0:
                    ax.legend(fontsize=7)
            ax.set_xlabel(label)
            ax.set_ylabel({"mad": "MAD ↓", "ssim": "SSIM ↑", "warp": "warp error ↓"}[metric])
            ax.grid(alpha=0.3)
    fig.suptitle("Consecutive-frame coherence (" + results["settings"]["model"] + ")")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot written to {path}"


def main(argv=None) -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=128, help="width = height in pixels")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seeds", type=int, default=2, help="clips per configuration (seeds 0..n-1)")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.steps, args.seeds = min(args.size, 64), min(args.steps, 5), 1

    from zss_core.sampler import sample_video

    common.header(
        "coherence: consecutive-frame MAD, SSIM, warp error",
        args,
        f", {args.frames} frames {args.size}x{args.size}, {args.steps} steps, seeds 0..{args.seeds - 1}",
    )
    pipe = common.load_from_args(args)
    print(common.describe_pipeline(pipe, args.model, args.bench_size))
    if args.model in (common.BENCH, "tiny"):
        print(
            "NOTE: random weights. The UNet's self-attention carries little structure, so TMA (μ) moves "
            "coherence only slightly here; λ (the initial noise) dominates. Use --model with real SD1.x "
            "weights for meaningful pictures."
        )

    cache: dict[tuple, dict] = {}

    def measure(noise: str, lam: float, mu: float, tma: bool) -> dict:
        key = (noise, lam, mu if tma else None, tma)
        if key not in cache:
            per_seed = []
            for seed in range(args.seeds):
                result = sample_video(
                    pipe,
                    common.PROMPT,
                    frames=args.frames,
                    width=args.size,
                    height=args.size,
                    steps=args.steps,
                    seed=seed,
                    noise=noise,
                    lam=lam,
                    mu=mu,
                    tma=tma,
                    output_type="np",
                )
                per_seed.append(clip_metrics(result.frames))
            cache[key] = {m: float(np.mean([s[m] for s in per_seed])) for m in per_seed[0]}
            print(
                f"  {noise:11s} λ={lam:<6g} μ={mu if tma else '-':<5} tma={'on ' if tma else 'off'} "
                f"MAD {cache[key]['mad']:.4f} SSIM {cache[key]['ssim']:.4f} warp {cache[key]['warp']:.4f}",
                flush=True,
            )
        return cache[key]

    lam_sweep = {lam: measure("dependency", lam, MU0, True) for lam in LAMBDAS}
    mu_sweep = {mu: measure("dependency", LAM0, mu, True) for mu in MUS}
    baselines = {(noise, tma): measure(noise, LAM0, MU0, tma) for noise in BASELINES for tma in (True, False)}

    def rows(items):
        return [[label, r["mad"], r["ssim"], r["warp"]] for label, r in items]

    cols = ["", "MAD ↓", "SSIM ↑", "warp err ↓"]
    common.print_table(
        ["λ (μ=0.98)", *cols[1:]],
        rows([(f"{lam:g}", r) for lam, r in lam_sweep.items()]),
        title="λ sweep (dependency noise + TMA μ=0.98)",
        digits=4,
    )
    common.print_table(
        ["μ (λ=0.01)", *cols[1:]],
        rows([(f"{mu:g}", r) for mu, r in mu_sweep.items()]),
        title="μ sweep (dependency noise λ=0.01 + TMA)",
        digits=4,
    )
    common.print_table(
        ["noise, attention", *cols[1:]],
        rows([(f"{noise}, {'TMA μ=0.98' if tma else 'plain attention'}", r) for (noise, tma), r in baselines.items()]),
        title="Noise baselines at λ=0.01 (same expected divergence), with and without TMA",
        digits=4,
    )

    dep, prog = baselines[("dependency", True)]["mad"], baselines[("progressive", True)]["mad"]
    if dep > 1.2 * prog:
        print(
            f"NOTE: at the same λ, dependency noise is {dep / prog:.1f}x less coherent (MAD) than progressive "
            f"noise here. With search='exact' both follow the same AR(1) correlation 1 - λ/√e, so this "
            f"points at the noise: run bench/noise.py (lag-1 correlation against its closed form; "
            f"docs/algorithm.md, 'Unbiased dependency noise')."
        )

    print("\nMonotonicity (docs/algorithm.md: coherence must improve as λ falls and as μ rises):")
    for name, sweep, xs, worse in (("λ", lam_sweep, LAMBDAS, "up"), ("μ", mu_sweep, MUS, "down")):
        for metric, better_low in (("mad", True), ("ssim", False), ("warp", True)):
            values = [sweep[x][metric] for x in xs]
            direction = worse if better_low else ("down" if worse == "up" else "up")
            verdict = "monotonic" if monotonic(values, direction) else "NOT monotonic"
            span = (max(values) - min(values)) / abs(np.mean(values)) * 100
            print(
                f"  {metric:4s} vs {name} ({'rising' if direction == 'up' else 'falling'} expected as {name} "
                f"rises): {verdict}  [{' '.join(f'{v:.6f}' for v in values)}] (range {span:.2f}% of the mean)"
            )

    out = common.ensure_out_dir()
    results = {
        "settings": {
            "model": args.model,
            "frames": args.frames,
            "size": args.size,
            "steps": args.steps,
            "seeds": args.seeds,
        },
        "lam": {str(k): v for k, v in lam_sweep.items()},
        "mu": {str(k): v for k, v in mu_sweep.items()},
        "baselines": {f"{noise}/{'tma' if tma else 'plain'}": v for (noise, tma), v in baselines.items()},
    }
    (out / "coherence.json").write_text(json.dumps(results, indent=2))
    print(f"\nresults written to {out / 'coherence.json'}; {plot(results, out / 'coherence.png')}")
    lo, hi = lam_sweep[LAMBDAS[0]]["mad"], lam_sweep[LAMBDAS[-1]]["mad"]
    m0, m1 = mu_sweep[MUS[0]]["mad"], mu_sweep[MUS[-1]]["mad"]
    print(
        f"coherence MAD λ {LAMBDAS[0]:g}→{LAMBDAS[-1]:g} = {lo:.4f}→{hi:.4f}, μ {MUS[0]:g}→{MUS[-1]:g} = "
        f"{m0:.4f}→{m1:.4f}"
    )
    zs2, independent = baselines[("dependency", True)]["mad"], baselines[("independent", False)]["mad"]
    print(f"coherence MAD zs2/independent = {zs2 / independent:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
