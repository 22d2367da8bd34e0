"""Speed of ZS² against the same frames sampled as one plain batch, and against Text2Video-Zero.

Candidates (same model, prompt, frames, size, steps, guidance 7.5, DDIM, seed 0):

* zs2        ``sample_video`` with dependency noise (λ=0.01, exact search) + TMA (μ=0.98)
* plain      ``sample_video`` with independent noise and tma=False: one batch of all frames, the
             stock attention. The baseline of every ratio.
* dnm only / tma only: one ZS² ingredient at a time, to see where extra time goes
* stock SD   ``StableDiffusionPipeline.__call__`` with num_images_per_prompt=frames (the library's
             own loop, for reference)
* t2v-zero   diffusers' TextToVideoZeroPipeline from the same components. It does other work: it
             denoises frame 0 alone down to t1, warps its latent with a global motion field
             (motion_field_strength 12, 12: the defaults), re-noises it from t0 to t1 (DDPM forward)
             and then denoises all frames from t1 with cross-frame attention to frame 0. t0/t1 are
             its defaults (44, 47) at ≥ 48 steps, scaled to the step count below that.

All candidates are warmed up, then run round-robin; the table shows the median of the repeats.
The last line is ``overhead zs2/plain = X.XX`` (target ≤ 1.05).

Then step caching (issue 16) on the built-in, really trained model (``builtin:textures``, 64², 8
frames, 20 DDIM steps, guidance 5): wall time at ``cache_interval`` 3 against no caching, round-robin
(target ≤ 0.6), for the default cache branch (only the last up-path layer recomputed) and branch 2
(the whole final up block); and the quality cost on 8 prompts × their seeds: consecutive-frame
coherence (MAD and DIS-flow warp error of bench/quality.py) and the built-in classifier's colour
adherence, each within 5 % of uncached, plus the mean absolute pixel difference (0–255) to the uncached
clip. ``--cache-only`` runs only this part.

``--lora`` runs only the LoRA timings (issue 15) on the tiny SD1 model: loading a LoRA file, switching
between loaded LoRAs and disabling them (ms), and sampling with a LoRA on against none.
"""

from __future__ import annotations

import time

import common


def instrumented_tma_cost(pipe, kwargs) -> dict:
    """Run ZS² once with TMA's extra work timed: the K/V mixing (``_mix``) and, inside it, the
    closed-form weights (``recurrence_weights``, built once per chunk shape and then reused).
    Patched here only; zss_core is untouched."""
    from zss_core import attention
    from zss_core.sampler import sample_video

    totals = {"mix": 0.0, "weights": 0.0, "calls": 0}
    original_weights, original_mix = attention.recurrence_weights, attention.TemporalMomentumAttnProcessor._mix

    def weights(mu):
        start = time.perf_counter()
        try:
            return original_weights(mu)
        finally:
            totals["weights"] += time.perf_counter() - start

    def mix(self, hidden):
        start = time.perf_counter()
        try:
            return original_mix(self, hidden)
        finally:
            totals["mix"] += time.perf_counter() - start
            totals["calls"] += 1

    attention.recurrence_weights, attention.TemporalMomentumAttnProcessor._mix = weights, mix
    try:
        seconds, result = common.timed(lambda: sample_video(pipe, **kwargs), pipe._execution_device)
    finally:
        attention.recurrence_weights, attention.TemporalMomentumAttnProcessor._mix = original_weights, original_mix
    return dict(totals, seconds=seconds, timings=result.timings)


CACHE_CONFIGS = {  # name: (cache_interval, cache_branch)
    "off": (1, None),
    "interval 3": (3, None),
    "interval 3, branch 2": (3, 2),  # the built-in model's whole final up block
}


def step_caching(args) -> dict[str, float]:
    """Time and quality of step caching on the built-in model; returns time ratios against "off"."""
    import numpy as np
    import quality

    from zss_core.builtin.classifier import classify, load_classifier
    from zss_core.models import load_pipeline
    from zss_core.sampler import sample_video

    pipe = load_pipeline("builtin:textures", device=args.device, dtype=args.dtype)
    classifier, _ = load_classifier()
    clip = dict(frames=8, width=64, height=64, steps=20, guidance=5.0, output_type="np")
    print(f"\nstep caching on builtin:textures: {clip['frames']} frames 64x64, 20 DDIM steps, guidance 5")

    def run(name, prompt, seed):
        interval, branch = CACHE_CONFIGS[name]
        return sample_video(pipe, prompt, seed=seed, cache_interval=interval, cache_branch=branch, **clip)

    fns = {name: (lambda name=name: run(name, common.PROMPT, 0)) for name in CACHE_CONFIGS}
    times = common.time_interleaved(fns, repeats=args.repeats, warmup=1, device=pipe._execution_device)
    med = {name: common.median(values) for name, values in times.items()}
    items = quality.prompts(8)
    scores: dict[str, dict[str, list[float]]] = {name: {} for name in CACHE_CONFIGS}
    reference: dict[int, np.ndarray] = {}
    for index, (_, colour, prompt) in enumerate(items):
        for name in CACHE_CONFIGS:
            frames = np.stack(run(name, prompt, 1000 + index).frames)
            metrics = quality.clip_metrics(list(frames))
            _, colours = classify(classifier, list(frames))
            row = scores[name]
            row.setdefault("mad", []).append(metrics["mad"])
            row.setdefault("warp", []).append(metrics["warp"])
            row.setdefault("colour", []).append(float(np.mean(colours == colour)))
            reference.setdefault(index, frames)
            row.setdefault("pixel", []).append(float(np.abs(frames - reference[index]).mean() * 255))
    mean = {name: {k: float(np.mean(v)) for k, v in row.items()} for name, row in scores.items()}
    base = mean["off"]
    rows = []
    for name in CACHE_CONFIGS:
        m = mean[name]
        rows.append(
            [
                name,
                med[name],
                med[name] / med["off"],
                m["mad"],
                m["mad"] / base["mad"],
                m["warp"],
                m["warp"] / base["warp"],
                m["colour"],
                m["colour"] / base["colour"],
                m["pixel"],
            ]
        )
    common.print_table(
        ["cache", "median s", "x off", "MAD", "x off", "warp", "x off", "colour acc", "x off", "|px - off|"],
        rows,
        title=f"Step caching (time: median of {args.repeats}; quality: {len(items)} prompts)",
    )
    ratios = {name: med[name] / med["off"] for name in CACHE_CONFIGS}
    for name in CACHE_CONFIGS:
        if name == "off":
            continue
        m = mean[name]
        within = all(abs(m[k] / base[k] - 1) <= 0.05 for k in ("mad", "warp", "colour"))
        print(
            f"cache {name}/off = {ratios[name]:.2f} (target <= 0.6); quality within 5 %: {'yes' if within else 'no'}; "
            f"mean |pixel - uncached| = {m['pixel']:.2f} / 255"
        )
    return ratios


def _random_lora(pipe, path, seed: int) -> None:
    """A LoRA for the tiny model with random (non-zero) weights, saved by diffusers' save_lora_weights."""
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = LoraConfig(
            r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
        )
        pipe.unet.add_adapter(config, "bench_made")
    layers = get_peft_model_state_dict(pipe.unet, adapter_name="bench_made")
    pipe.unet.delete_adapters("bench_made")
    type(pipe).save_lora_weights(path, unet_lora_layers=layers, safe_serialization=True)


def lora_timing(args) -> dict[str, float]:
    """LoRAs (issue 15) on the tiny SD1 model: first load of a file (diffusers' load_lora_weights as a named
    adapter), switching between loaded ones, disabling them for a job without LoRAs (each ms, median of
    ``--repeats``), and the sampling time with one LoRA on against none."""
    import statistics
    import tempfile
    from pathlib import Path

    from zss_core.loras import apply_loras
    from zss_core.models import load_pipeline
    from zss_core.sampler import sample_video

    common.apply_threads(args)
    pipe = load_pipeline("tiny", device=args.device, dtype=args.dtype)
    folder = Path(tempfile.mkdtemp(prefix="zss-bench-loras-"))
    repeats = max(2, args.repeats)
    files = []
    for index in range(repeats + 1):
        _random_lora(pipe, folder / f"lora{index}", seed=index)
        files.append([{"path": str(folder / f"lora{index}"), "weight": 1.0}])

    def timed(loras) -> float:
        start = time.perf_counter()
        apply_loras(pipe, loras)
        return (time.perf_counter() - start) * 1000

    load = [timed(entry) for entry in files]  # each file is new to the pipeline: loaded once
    switch = [timed(files[i % 2]) for i in range(2 * repeats)]  # both already loaded: set_adapters only
    disable = []
    for i in range(repeats):
        apply_loras(pipe, files[i % 2])
        disable.append(timed(None))
    clip = dict(prompt=common.PROMPT, frames=args.frames, width=64, height=64, steps=5, seed=0, output_type="latent")
    seconds = {"none": [], "lora": []}
    for _ in range(repeats + 1):  # the first round warms up
        for name, loras in (("none", None), ("lora", files[0])):
            apply_loras(pipe, loras)
            seconds[name].append(sample_video(pipe, **clip).timings["denoise_seconds"])
    numbers = {
        "load_ms": statistics.median(load),
        "switch_ms": statistics.median(switch),
        "disable_ms": statistics.median(disable),
        "sampling_ratio": statistics.median(seconds["lora"][1:]) / statistics.median(seconds["none"][1:]),
    }
    print(
        f"lora (tiny SD1, {pipe._execution_device}): load {numbers['load_ms']:.1f} ms, switch {numbers['switch_ms']:.2f} ms, "
        f"disable {numbers['disable_ms']:.2f} ms (median of {repeats})"
    )
    print(f"lora sampling with/without = {numbers['sampling_ratio']:.2f} ({args.frames} frames 64x64, 5 steps)")
    return numbers


def main(argv=None) -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=128, help="width = height in pixels")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-t2vz", action="store_true", help="skip Text2Video-Zero")
    p.add_argument("--no-cache", action="store_true", help="skip the step-caching part")
    p.add_argument("--cache-only", action="store_true", help="only the step-caching part")
    p.add_argument("--lora", action="store_true", help="only the LoRA part: load / switch / disable ms (tiny SD1)")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.steps = min(args.size, 64), min(args.steps, 5)
    if args.lora:
        lora_timing(args)
        return 0
    if args.cache_only:
        common.apply_threads(args)
        step_caching(args)
        return 0

    from zss_core.sampler import sample_video

    common.header(
        "overhead: ZS² vs plain batch vs Text2Video-Zero",
        args,
        f", {args.frames} frames {args.size}x{args.size}, {args.steps} steps, "
        f"median of {args.repeats} after 1 warm-up, round-robin",
    )
    pipe = common.load_from_args(args)
    print(common.describe_pipeline(pipe, args.model, args.bench_size))
    device = pipe._execution_device
    base = dict(
        prompt=common.PROMPT,
        frames=args.frames,
        width=args.size,
        height=args.size,
        steps=args.steps,
        guidance=7.5,
        seed=0,
        output_type="np",
    )
    configs = {
        "zs2": dict(noise="dependency", lam=0.01, tma=True, mu=0.98),
        "plain": dict(noise="independent", tma=False),
        "dnm only": dict(noise="dependency", lam=0.01, tma=False),
        "tma only": dict(noise="independent", tma=True, mu=0.98),
    }
    last_timings: dict[str, dict] = {}

    def sampler(name):
        def run():
            last_timings[name] = sample_video(pipe, **base, **configs[name]).timings

        return run

    def stock():
        import torch

        pipe(
            common.PROMPT,
            num_images_per_prompt=args.frames,
            width=args.size,
            height=args.size,
            num_inference_steps=args.steps,
            guidance_scale=7.5,
            output_type="np",
            generator=torch.Generator("cpu").manual_seed(0),
        )

    fns = {name: sampler(name) for name in configs}

    fns["stock SD"] = stock
    t2vz_note = ""
    if not args.no_t2vz:
        t2vz = common.text2video_zero(pipe)
        t0, t1 = common.t2vz_times(args.steps)
        default = (t0, t1) == (common.T2VZ_T0, common.T2VZ_T1)
        t2vz_note = (
            f"t0={t0}, t1={t1} ({'defaults' if default else 'defaults 44/47 scaled to the step count'}), "
            f"motion_field_strength_x=y=12 (defaults); "
            f"UNet work: {common.t2vz_unet_work(args.steps, args.frames)}"
        )
        fns["t2v-zero"] = lambda: common.run_text2video_zero(
            t2vz, common.PROMPT, frames=args.frames, width=args.size, height=args.size, steps=args.steps
        )
        print(f"text2video-zero: {t2vz_note}")

    times = common.time_interleaved(fns, repeats=args.repeats, warmup=1, device=device)
    med = {name: common.median(values) for name, values in times.items()}
    plain = med["plain"]
    work = {name: f"{args.steps} steps x {args.frames} frames" for name in fns}
    if "t2v-zero" in fns:
        work["t2v-zero"] = common.t2vz_unet_work(args.steps, args.frames)
    rows = [
        [name, med[name], common.spread(times[name]), med[name] / plain, med[name] / args.frames, work[name]]
        for name in fns
    ]
    common.print_table(
        ["candidate", "median s", "min-max s", "x plain", "s/frame", "UNet work (x2 under CFG)"],
        rows,
        title="Wall time per clip",
    )

    breakdown = [
        [
            name,
            last_timings[name]["noise_seconds"] * 1e3,
            last_timings[name]["denoise_seconds"],
            last_timings[name]["decode_seconds"],
        ]
        for name in configs
    ]
    common.print_table(
        ["candidate", "noise ms", "denoise s", "decode s"],
        breakdown,
        title="Where the time goes (sample_video's timings, last run)",
    )

    cost = instrumented_tma_cost(pipe, dict(base, **configs["zs2"]))
    calls = cost["calls"]
    print(f"\nTMA extra work in one instrumented ZS² run ({cost['seconds']:.3f} s, {calls} self-attention calls):")
    print(
        f"  _mix (K/V momentum mixing, whole):  {cost['mix'] * 1e3:8.1f} ms  "
        f"({100 * cost['mix'] / cost['seconds']:.2f}% of the run, {1e3 * cost['mix'] / max(calls, 1):.3f} ms/call)"
    )
    print(
        f"  of which recurrence_weights:        {cost['weights'] * 1e3:8.1f} ms  "
        f"({100 * cost['weights'] / cost['seconds']:.2f}% of the run; built once per chunk shape)"
    )
    print(f"  zs2 - plain (medians):              {(med['zs2'] - plain) * 1e3:8.1f} ms")

    if "t2v-zero" in med:
        print(f"t2vz/plain = {med['t2v-zero'] / plain:.2f}")
    print(f"overhead zs2/plain = {med['zs2'] / plain:.2f}")
    if not args.no_cache:
        step_caching(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
