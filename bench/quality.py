"""Quality on the built-in texture model (issue 7): prompt alignment, temporal coherence and motion.

The built-in ``builtin:textures`` model is really trained, so unlike the random-weight benchmarks these
numbers mean something. Same prompts and seeds for every method:

* ``zs2``: ZS² as shipped (dependency noise λ = 0.01 + temporal momentum attention μ = 0.98)
* ``independent``: per-frame DDIM (independent noise, the model's own attention)
* ``t2v-zero``: diffusers' TextToVideoZeroPipeline from the same components (its default motion field)
* ``mixed`` / ``progressive``: those noise models with TMA (only the noise differs from ``zs2``)

Metrics (frames as float RGB in [0, 1]; consecutive pairs averaged over the clip and the prompts):

* alignment: the built-in classifier's family / colour accuracy against the prompt (CLIP-score stand-in)
* MAD: mean absolute difference of consecutive frames (lower = steadier, but blind to structure)
* SSIM of consecutive frames (grey, Gaussian window σ = 1.5)
* warp error: mean |frame t − frame t+1 warped back by OpenCV DIS optical flow| (lower = coherent)
* spectrum corr: correlation of consecutive log-magnitude spectra — phase- and colour-invariant, so it
  shows structure kept across frames even when textures drift (TEXTURE-MODEL-NOTES.md)
* motion: mean optical-flow magnitude in pixels per frame (how much the clip moves)

Then sweeps over λ (μ fixed at 0.98) and μ (λ fixed at 0.01): coherence against motion, plotted to
bench/out/quality.png when matplotlib is installed. ``--quick``: 8 prompts × 8 frames, short sweeps.

First, two short checks (alone with ``--speed``):

* speed: seconds for 8 frames of 64² (20 steps) with the text model and with its depth ControlNet,
  wall clock and CPU time per thread (on a busy machine the wall clock says little); the budget the
  built-in model was made for is 10 s on 2 CPU cores (train/README.md);
* loop wrap: a looping clip with a prompt schedule (keys at frames 0 and 8 of 16), mean frame difference
  (0–255) across the wrap against the mean and largest one between neighbours — the wrap must not stand out.

    .venv/bin/python bench/quality.py --quick
    .venv/bin/python bench/quality.py --speed --threads 2
"""

from __future__ import annotations

import itertools
import time

import common
import numpy as np

METHODS = ("zs2", "independent", "t2v-zero", "mixed", "progressive")
LAMBDAS = (0.001, 0.01, 0.05, 0.1, 0.3)
MUS = (0.0, 0.5, 0.9, 0.98, 0.995)


def prompts(count: int):
    from zss_core.builtin import COLOURS, FAMILY_WORDS

    # 8 families × 4 colours, every colour 4 times; --quick takes every 4th (each family once).
    pairs = [(f, (f * 3 + k * 2) % 8) for k in range(4) for f in range(8)]
    pairs = pairs[:count] if count >= 8 else pairs[:: max(1, 32 // count)][:count]
    return [(f, c, f"{COLOURS[c]} {FAMILY_WORDS[f]}") for f, c in pairs]


# ---------------------------------------------------------------------------------------------
# Metrics


def _grey(frame):
    return (frame @ np.array([0.299, 0.587, 0.114])).astype(np.float32)


def ssim(a, b):
    import cv2

    c1, c2 = 0.01**2, 0.03**2
    blur = lambda x: cv2.GaussianBlur(x, (0, 0), 1.5)  # noqa: E731
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    return float(np.mean(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))))


def flow(a, b):
    """Dense optical flow from grey frame a to grey frame b (DIS, medium preset), in pixels."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc((a * 255).astype(np.uint8), (b * 255).astype(np.uint8), None)


def warp_error(a_rgb, b_rgb, f):
    """|a − b warped back onto a by the flow a → b|, mean over pixels and channels."""
    import cv2

    h, w = f.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(
        b_rgb.astype(np.float32), gx + f[..., 0], gy + f[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    return float(np.abs(a_rgb - warped).mean())


def spectrum_corr(a, b):
    sa = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(a - a.mean()))))
    sb = np.log1p(np.abs(np.fft.fft2(b - b.mean())))
    sb = np.fft.fftshift(sb)
    sa, sb = sa - sa.mean(), sb - sb.mean()
    return float((sa * sb).sum() / np.sqrt((sa * sa).sum() * (sb * sb).sum()))


def clip_metrics(frames) -> dict:
    frames = [np.asarray(f, dtype=np.float32) for f in frames]
    grey = [_grey(f) for f in frames]
    out = dict(mad=[], ssim=[], warp=[], spec=[], motion=[])
    for i in range(len(frames) - 1):
        f = flow(grey[i], grey[i + 1])
        out["mad"].append(float(np.abs(frames[i] - frames[i + 1]).mean()))
        out["ssim"].append(ssim(grey[i], grey[i + 1]))
        out["warp"].append(warp_error(frames[i], frames[i + 1], f))
        out["spec"].append(spectrum_corr(grey[i], grey[i + 1]))
        out["motion"].append(float(np.linalg.norm(f, axis=-1).mean()))
    return {k: float(np.mean(v)) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# Runs


def generate(method, pipe, t2vz, prompt, args, seed, lam=0.01, mu=0.98):
    from zss_core.sampler import sample_video

    common_kw = dict(
        frames=args.frames, width=64, height=64, steps=args.steps, guidance=args.guidance, seed=seed, output_type="np"
    )
    if method == "t2v-zero":
        frames = common.run_text2video_zero(
            t2vz, prompt, frames=args.frames, width=64, height=64, steps=args.steps, guidance=args.guidance, seed=seed
        )
        return [np.asarray(f, dtype=np.float32) for f in frames]
    if method == "independent":
        return sample_video(pipe, prompt, noise="independent", tma=False, **common_kw).frames
    if method in ("mixed", "progressive"):
        return sample_video(pipe, prompt, noise=method, lam=lam, mu=mu, **common_kw).frames
    return sample_video(pipe, prompt, lam=lam, mu=mu, **common_kw).frames


def evaluate(method, pipe, t2vz, classifier, items, args, **kw) -> dict:
    from zss_core.builtin.classifier import classify

    rows, fam_hits, col_hits = [], [], []
    started = time.perf_counter()
    for index, (f, c, prompt) in enumerate(items):
        frames = generate(method, pipe, t2vz, prompt, args, seed=1000 + index, **kw)
        fam, col = classify(classifier, frames)
        fam_hits += list(fam == f)
        col_hits += list(col == c)
        rows.append(clip_metrics(frames))
    result = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    result.update(
        family=float(np.mean(fam_hits)), colour=float(np.mean(col_hits)), seconds=time.perf_counter() - started
    )
    return result


def speed(pipe, control_pipe, args) -> None:
    """Seconds for 8 frames of 64² on the built-in model (text, then depth ControlNet), warm."""
    import torch

    from train.textures import control_maps, make_batch
    from zss_core.sampler import sample_video

    maps = control_maps(make_batch(5, 8)[1])
    runs = {
        "text": lambda: sample_video(
            pipe, "orange wood rings", frames=8, width=64, height=64, steps=20, guidance=5.0, seed=1
        ),
        "depth ControlNet": lambda: sample_video(
            control_pipe,
            "green marble veins",
            frames=8,
            width=64,
            height=64,
            steps=20,
            guidance=5.0,
            control_images=maps,
            seed=1,
        ),
    }
    rows = []
    for name, run in runs.items():
        run()  # warm-up: first-call allocations and kernel selection
        cpu = time.process_time()
        seconds, _ = common.timed(run, pipe._execution_device)
        per_thread = (time.process_time() - cpu) / max(1, torch.get_num_threads())
        rows.append((name, seconds, per_thread))
    common.print_table(
        ("8 frames, 64², 20 steps", "wall s", "CPU s per thread"),
        rows,
        title=f"speed ({torch.get_num_threads()} threads; budget 10 s on 2 CPU cores)",
    )


def loop_wrap(pipe) -> None:
    """A looping prompt schedule: the frame difference across the wrap against the neighbours'."""
    from zss_core.sampler import sample_video

    clip = sample_video(
        pipe,
        [(0, "red bricks"), (8, "blue marble veins")],
        frames=16,
        width=64,
        height=64,
        steps=20,
        guidance=5.0,
        seed=0,
        loop=True,
        output_type="np",
    )
    frames = [np.asarray(f, dtype=np.float32) * 255 for f in clip.frames]
    neighbours = [float(np.abs(b - a).mean()) for a, b in itertools.pairwise(frames)]
    wrap = float(np.abs(frames[0] - frames[-1]).mean())
    common.print_table(
        ("loop, keys at 0 and 8 of 16", "wrap", "neighbours mean", "neighbours max"),
        [("frame difference (0-255)", wrap, float(np.mean(neighbours)), max(neighbours))],
        title="loop wrap with a prompt schedule",
    )


def table(results: dict, title: str) -> None:
    headers = ("method", "family acc", "colour acc", "MAD", "SSIM", "warp err", "spectrum corr", "motion px", "seconds")
    rows = [
        (name, r["family"], r["colour"], r["mad"], r["ssim"], r["warp"], r["spec"], r["motion"], r["seconds"])
        for name, r in results.items()
    ]
    common.print_table(headers, rows, title=title)


def plot(sweeps: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in (
        (axes[0], "warp", "warp error (lower = coherent)"),
        (axes[1], "spec", "spectrum corr (higher = coherent)"),
    ):
        for name, points in sweeps.items():
            xs = [r["motion"] for _, r in points]
            ys = [r[metric] for _, r in points]
            ax.plot(xs, ys, "o-", label=name)
            for (value, _), x, y in zip(points, xs, ys):
                ax.annotate(str(value), (x, y), fontsize=7)
        ax.set_xlabel("motion (mean flow, px/frame)")
        ax.set_ylabel(label)
        ax.legend()
    fig.tight_layout()
    path = common.ensure_out_dir() / "quality.png"
    fig.savefig(path, dpi=100)
    print(f"plot → {path}")


def main() -> None:
    p = common.parser(__doc__.split("\n")[0], model_default="builtin:textures")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--sweep-prompts", type=int, default=8, help="prompts per λ/μ sweep point")
    p.add_argument("--no-sweep", action="store_true")
    p.add_argument("--speed", action="store_true", help="only the speed and loop-wrap checks")
    args = p.parse_args()
    if args.quick:
        args.prompts, args.frames, args.sweep_prompts = 8, 8, 4
    common.apply_threads(args)

    from zss_core.builtin import builtin_path
    from zss_core.builtin.classifier import load_classifier
    from zss_core.models import load_pipeline

    model = str(builtin_path(args.model)) if args.model.startswith("builtin:") else args.model
    pipe = load_pipeline(model, device=args.device, dtype=args.dtype)
    if args.model == "builtin:textures":
        control_pipe = load_pipeline(
            model, str(builtin_path("builtin:textures-depth")), device=args.device, dtype=args.dtype
        )
        speed(pipe, control_pipe, args)
    loop_wrap(pipe)
    if args.speed:
        return
    t2vz = common.text2video_zero(pipe)
    classifier, config = load_classifier()
    common.header(
        "quality",
        args,
        f", {args.prompts} prompts × {args.frames} frames, {args.steps} DDIM steps, "
        f"guidance {args.guidance}; classifier held-out accuracy: family "
        f"{config['held_out_family_accuracy']}, colour {config['held_out_colour_accuracy']}",
    )
    items = prompts(args.prompts)
    results = {m: evaluate(m, pipe, t2vz, classifier, items, args) for m in METHODS}
    table(results, "methods (same prompts and seeds)")
    if not args.no_sweep:
        sweep_items = prompts(args.sweep_prompts)
        sweeps = {
            "λ (μ=0.98)": [
                (lam, evaluate("zs2", pipe, t2vz, classifier, sweep_items, args, lam=lam)) for lam in LAMBDAS
            ],
            "μ (λ=0.01)": [(mu, evaluate("zs2", pipe, t2vz, classifier, sweep_items, args, mu=mu)) for mu in MUS],
        }
        for name, points in sweeps.items():
            table({f"{name.split()[0]}={v}": r for v, r in points}, f"sweep {name}, {len(sweep_items)} prompts")
        plot(sweeps)
    z, ind = results["zs2"], results["independent"]
    print(
        f"zs2 vs independent: warp error {z['warp']:.4f} vs {ind['warp']:.4f}, spectrum corr "
        f"{z['spec']:.3f} vs {ind['spec']:.3f}, family acc {z['family']:.2f} vs {ind['family']:.2f}"
    )


if __name__ == "__main__":
    main()
