"""GPU check at Stable Diffusion 1.5 size with random weights: speed of ZS² vs a plain batch vs
Text2Video-Zero, and peak memory vs clip length with and without exact chunking.

Models are built from config (no download, no weights): UNet2DConditionModel's default config is
the SD1.5 shape (block_out_channels (320, 640, 1280, 1280), attention at the three highest
resolutions, 2 layers per block) with cross_attention_dim 768; a ControlNet from that UNet's config;
an SD-sized AutoencoderKL (128, 256, 512, 512), 4 latent channels; a CLIPTextModel 768 wide,
12 layers, 12 heads, vocab 514 to match the byte-level tokenizer of zss_core.models. fp16 on CUDA.

Sections (each one prints a table; everything also goes to ``$OUT/gpu_check.json`` if ``$OUT`` is
set, or ``--json``, rewritten after every section so that a timeout keeps what was done):

1. speed: 8 frames × 50 steps at 512², guidance 7.5, DDIM: zs2 (dependency noise λ=0.01 + TMA
   μ=0.98), plain (independent noise, stock attention, one batch), t2v-zero (diffusers'
   TextToVideoZeroPipeline, defaults t0=44, t1=47, motion field 12/12: 5 extra single-frame steps,
   48 all-frame steps); warm-up at a few steps, then round-robin, median of ``--repeats``.
2. memory: torch.cuda.max_memory_allocated above the loaded models for 8/16/32/64 frames, chunk 8 vs
   none, 2 steps; configurations that run out of memory are reported as OOM.
3. controlnet: zs2 vs plain with the SD-sized ControlNet, same settings as 1 (skipped if the time
   budget is spent).

4. fast (issue 16; first with ``--fast-only``): ZS² at 512², ``--fast-frames`` 16 frames, ``--fast-steps``
   25 steps: seconds per clip, clip it/s (denoising steps per second), frame it/s (steps × frames per
   second: comparable with one-image figures) and peak memory for plain, ``--fast``, ``--cache-interval
   3`` and both; the fast pipeline is a second copy (compiling changes it in place), its first run
   (compilation) is timed apart. Beside it the published one-image anchors on an A100 (SDPA ≈ 31 it/s,
   torch.compile ≈ 37, + channels-last ≈ 47, TensorRT ≈ 61).

5. draft (issue 15; alone with ``--draft-only``): the draft preset (``zss_core/presets.py``: 6 steps, LCM,
   guidance 1, so no negative batch) against the default job (30 steps, DDIM, guidance 7.5), ``--frames``
   frames at ``--size``: seconds per clip. The draft carries a rank-64 PEFT LoRA on the UNet (the layers an
   LCM-LoRA for SD 1.5 touches, random weights, not fused: what a draft LoRA costs) when peft is installed.
6. previews (issue 15; only it with ``--previews-only``): ZS² at 512², ``--fast-frames`` frames,
   ``--fast-steps`` steps, a live preview every 5 steps (the job default: the middle frame's x0 through
   the SD VAE's published latent→RGB map, a ≤ 256 px PNG written to a temporary folder) against none,
   round-robin; the ratio (target ≤ 1.03) and the previews' own time.

``--smoke`` runs the same code on the CPU with tiny configs (2 steps, 64², 4 frames) to catch bugs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

SD15 = dict(
    unet=dict(sample_size=64, cross_attention_dim=768),  # everything else: the class defaults = SD1.5
    vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, sample_size=512),
    text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
    controlnet=dict(conditioning_embedding_out_channels=(16, 32, 96, 256)),
)
SMOKE = dict(
    unet=dict(
        sample_size=8,
        cross_attention_dim=64,
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=1,
        attention_head_dim=4,
        norm_num_groups=16,
    ),
    vae=dict(block_out_channels=(16, 16, 16, 16), layers_per_block=1, norm_num_groups=8, sample_size=64),
    text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
    controlnet=dict(conditioning_embedding_out_channels=(16, 16, 16, 16)),
)


def build_pipelines(cfg: dict, device, dtype, seed: int = 0):
    """(text pipeline, controlnet pipeline) sharing every component; random weights, on ``device``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        StableDiffusionControlNetPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from zss_core.models import byte_level_vocab, sd_pipeline_parts

    torch.manual_seed(seed)
    with torch.device(device):  # initialise on the GPU: random init of 1 B parameters on a CPU is slow
        unet = UNet2DConditionModel(**cfg["unet"])
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            **cfg["vae"],
        )
        vocab = byte_level_vocab()
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(vocab),
                max_position_embeddings=77,
                bos_token_id=vocab["<|startoftext|>"],
                eos_token_id=vocab["<|endoftext|>"],
                pad_token_id=vocab["<|endoftext|>"],
                projection_dim=cfg["text"]["hidden_size"],
                **cfg["text"],
            )
        )
        controlnet = ControlNetModel.from_unet(unet, load_weights_from_unet=False, **cfg["controlnet"])
    if text_encoder.config.vocab_size != 514 or text_encoder.config.hidden_size != unet.config.cross_attention_dim:
        raise AssertionError("text encoder must have vocab 514 and width == cross_attention_dim")
    parts = sd_pipeline_parts(unet, vae, text_encoder)
    for module in (unet, vae, text_encoder, controlnet):
        module.to(device=device, dtype=dtype).eval()
    pipe = StableDiffusionPipeline(**parts)
    cpipe = StableDiffusionControlNetPipeline(controlnet=controlnet, **parts)
    for p in (pipe, cpipe):
        p.set_progress_bar_config(disable=True)
    return pipe, cpipe


def control_images(frames: int, size: int):
    """Synthetic depth-like maps: a gradient with a moving disc, one per frame."""
    import numpy as np
    from PIL import Image

    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = []
    for i in range(frames):
        cx = 0.3 + 0.4 * i / max(frames - 1, 1)
        disc = ((xs - cx) ** 2 + (ys - 0.5) ** 2) < 0.04
        depth = np.clip(0.3 + 0.5 * ys + 0.4 * disc, 0, 1)
        images.append(Image.fromarray((depth * 255).astype(np.uint8)).convert("RGB"))
    return images


class Report:
    """Collects results and rewrites the JSON file after every section."""

    def __init__(self, path: Path | None):
        self.path = path
        self.data: dict = {}

    def add(self, key: str, value) -> None:
        self.data[key] = value
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data, indent=2, default=str))


def speed_section(pipe, args, report: Report, cpipe=None) -> dict:
    from zss_core.sampler import sample_video

    device = pipe._execution_device
    base = dict(
        prompt=common.PROMPT,
        frames=args.frames,
        width=args.size,
        height=args.size,
        guidance=7.5,
        seed=0,
        output_type="np",
    )
    zs2 = dict(noise="dependency", lam=0.01, mu=0.98, tma=True)
    plain = dict(noise="independent", tma=False)
    if cpipe is None:
        runners = {
            "zs2": lambda steps: sample_video(pipe, steps=steps, **base, **zs2),
            "plain": lambda steps: sample_video(pipe, steps=steps, **base, **plain),
        }
        t2vz = common.text2video_zero(pipe)
        runners["t2v-zero"] = lambda steps: common.run_text2video_zero(
            t2vz, common.PROMPT, frames=args.frames, width=args.size, height=args.size, steps=steps
        )
    else:
        images = control_images(args.frames, args.size)
        runners = {
            "zs2+controlnet": lambda steps: sample_video(cpipe, steps=steps, control_images=images, **base, **zs2),
            "plain+controlnet": lambda steps: sample_video(cpipe, steps=steps, control_images=images, **base, **plain),
        }
    warm = max(2, min(3, args.steps))
    for run in runners.values():  # kernels, cuDNN/cuBLAS heuristics, allocator pools
        run(warm)
    times = common.time_interleaved(
        {name: (lambda run=run: run(args.steps)) for name, run in runners.items()},
        repeats=args.repeats,
        warmup=0,
        device=device,
    )
    med = {name: common.median(v) for name, v in times.items()}
    ref = med["plain"] if "plain" in med else med["plain+controlnet"]
    rows = []
    for name in runners:
        work = (
            common.t2vz_unet_work(args.steps, args.frames)
            if name == "t2v-zero"
            else f"{args.steps} steps x {args.frames} frames"
        )
        rows.append([name, med[name], common.spread(times[name]), med[name] / ref, work])
    title = (
        f"{'ControlNet ' if cpipe is not None else ''}speed: {args.frames} frames {args.size}x{args.size}, "
        f"{args.steps} steps, median of {args.repeats}"
    )
    common.print_table(["candidate", "median s", "min-max s", "x plain", "UNet work (x2 under CFG)"], rows, title=title)
    result = {
        "settings": {"frames": args.frames, "size": args.size, "steps": args.steps, "repeats": args.repeats},
        "seconds": times,
        "median_seconds": med,
        "ratio_to_plain": {k: v / ref for k, v in med.items()},
    }
    if "t2v-zero" in med:
        t0, t1 = common.t2vz_times(args.steps)
        result["t2vz"] = {
            "t0": t0,
            "t1": t1,
            "motion_field_strength": [12, 12],
            "unet_work": common.t2vz_unet_work(args.steps, args.frames),
        }
    report.add("controlnet_speed" if cpipe is not None else "speed", result)
    return result


def memory_section(pipe, args, report: Report, deadline: float) -> dict:
    import torch

    from zss_core.protocol import Job
    from zss_core.runner import auto_chunk, free_memory, measure_frame_memory
    from zss_core.sampler import sample_video

    cuda = pipe._execution_device.type == "cuda"
    rows, results = [], {}
    probe = Job(id="probe", prompt=common.PROMPT, model="bench", output_dir=".", width=args.size, height=args.size)
    per_frame = measure_frame_memory(pipe, probe)  # what chunk="auto" measures in the worker (None on CPU)
    results["auto_per_frame_mib"] = per_frame / 2**20 if per_frame else None
    for frames in args.memory_frames:
        row = [frames]
        for chunk in (None, args.chunk, "auto"):
            if chunk == "auto":
                free = torch.cuda.mem_get_info()[0] if cuda else None
                chunk = auto_chunk(free, per_frame, frames)
                key = f"{frames}/auto"
                results[f"{frames}/auto_chunk"] = chunk
            else:
                key = f"{frames}/{chunk or 'none'}"
            if chunk is not None and chunk >= frames and key != f"{frames}/none":
                results[key] = results[f"{frames}/none"]
                row.append(row[1])  # the whole clip at once: the no-chunk column's figure
                continue
            if time.monotonic() > deadline:
                results[key] = "skipped (time budget)"
                row.append("skipped")
                continue
            free_memory()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            start = time.perf_counter()
            try:
                sample_video(
                    pipe,
                    common.PROMPT,
                    frames=frames,
                    width=args.size,
                    height=args.size,
                    steps=args.memory_steps,
                    chunk=chunk,
                    output_type="np",
                )
                common.sync(pipe._execution_device)
                peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else None
                results[key] = {"peak_mib": peak, "seconds": time.perf_counter() - start}
                row.append(peak if peak is not None else "n/a (CPU)")
            except Exception as exc:  # OOM comes as several types; anything else is reported too
                from zss_core.runner import is_out_of_memory

                results[key] = "OOM" if is_out_of_memory(exc) else f"failed: {type(exc).__name__}: {exc}"
                row.append("OOM" if is_out_of_memory(exc) else "failed")
                free_memory()
            print(f"  frames={frames} chunk={chunk or 'none'}: {results[key]}", flush=True)
        rows.append(row)
    common.print_table(
        ["frames", "no chunk MiB", f"chunk {args.chunk} MiB", "auto chunk MiB"],
        rows,
        digits=1,
        title=f"Peak memory above the loaded models ({args.size}x{args.size}, {args.memory_steps} steps)",
    )

    def ratio(chunk):
        lo = results.get(f"{args.memory_frames[0]}/{chunk or 'none'}")
        hi = results.get(f"{args.memory_frames[-1]}/{chunk or 'none'}")
        if isinstance(lo, dict) and isinstance(hi, dict) and lo["peak_mib"] and hi["peak_mib"] is not None:
            return hi["peak_mib"] / lo["peak_mib"]
        return None

    summary = {"unchunked_ratio": ratio(None), "chunked_ratio": ratio(args.chunk), "auto_ratio": ratio("auto")}
    report.add(
        "memory",
        {
            "settings": {
                "size": args.size,
                "steps": args.memory_steps,
                "chunk": args.chunk,
                "frames": list(args.memory_frames),
            },
            "results": results,
            **summary,
        },
    )
    return summary


ANCHORS_A100 = {  # published it/s for one 512² image, SD 1.5, fp16, A100 (diffusers' optimisation guides)
    "SDPA": 31.0,
    "torch.compile": 37.0,
    "compile + channels-last": 47.0,
    "TensorRT": 61.0,
}


def fast_section(cfg: dict, pipe, args, report: Report, device, dtype) -> dict:
    """Plain / --fast / --cache-interval 3 / both on the SD-class UNet: time, it/s, peak memory."""
    import torch

    from zss_core import fast
    from zss_core.sampler import sample_video

    fast_pipe, _ = build_pipelines(cfg, device, dtype)
    paths = fast.plan(device, enabled=True)
    fast.apply(fast_pipe, paths, compile_mode=args.compile_mode)
    print(f"\nfast paths on {device}: {', '.join(paths.names()) or 'none (CPU: --fast changes nothing)'}")
    frames, steps = args.fast_frames, args.fast_steps
    base = dict(prompt=common.PROMPT, frames=frames, width=args.size, height=args.size, guidance=7.5, seed=0)
    base.update(output_type="np", noise="dependency", lam=0.01, mu=0.98, tma=True)
    configs = {
        "plain": (pipe, 1),
        "--fast": (fast_pipe, 1),
        "--cache-interval 3": (pipe, 3),
        "--fast --cache-interval 3": (fast_pipe, 3),
    }

    def run(name, n_steps):
        target, interval = configs[name]
        return sample_video(target, steps=n_steps, cache_interval=interval, **base)

    t = time.perf_counter()
    run("--fast", max(2, min(3, steps)))  # compiles (Inductor) for this shape
    compile_seconds = time.perf_counter() - t
    for name in configs:
        run(name, max(2, min(3, steps)))
    peaks, times = {}, {name: [] for name in configs}
    for _ in range(args.repeats):
        for name in configs:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds, _ = common.timed(lambda name=name: run(name, steps), device)
            times[name].append(seconds)
            if device.type == "cuda":
                peaks[name] = torch.cuda.max_memory_allocated(device) / 2**30
    med = {name: common.median(v) for name, v in times.items()}
    rows = [
        [name, med[name], steps / med[name], steps * frames / med[name], peaks.get(name), med[name] / med["plain"]]
        for name in configs
    ]
    rows += [[f"published A100, 1 image: {k}", None, None, v, None, None] for k, v in ANCHORS_A100.items()]
    common.print_table(
        ["candidate", "s/clip", "clip it/s", "frame it/s", "peak GiB", "x plain"],
        rows,
        title=f"fast paths: {frames} frames {args.size}x{args.size}, {steps} steps, ZS², median of {args.repeats} "
        f"(first --fast run incl. compilation: {compile_seconds:.1f} s)",
    )
    result = {
        "settings": {"frames": frames, "size": args.size, "steps": steps, "compile_mode": args.compile_mode},
        "paths": paths.names(),
        "compile_seconds": compile_seconds,
        "seconds": times,
        "median_seconds": med,
        "clip_it_per_s": {k: steps / v for k, v in med.items()},
        "frame_it_per_s": {k: steps * frames / v for k, v in med.items()},
        "peak_gib": peaks,
        "anchors_a100_it_per_s": ANCHORS_A100,
    }
    report.add("fast", result)
    del fast_pipe
    return result


# The UNet layers an SD 1.5 LCM-LoRA adapts (latent-consistency/lcm-lora-sdv1-5 is rank 64).
LCM_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
LCM_LORA_TARGETS += ["conv1", "conv2", "conv_shortcut", "time_emb_proj"]


def draft_section(pipe, args, report: Report) -> dict:
    """The draft preset vs the default job at the same clip size: seconds per clip (adds a LoRA to ``pipe``)."""
    import importlib.util

    from zss_core import presets
    from zss_core.sampler import sample_video

    device = pipe._execution_device
    default = {"steps": 30, "guidance": 7.5, "scheduler": "ddim"}
    draft = presets.expand(default, "draft")
    lora = importlib.util.find_spec("peft") is not None
    if lora:
        from peft import LoraConfig

        pipe.unet.add_adapter(LoraConfig(r=64, lora_alpha=64, target_modules=LCM_LORA_TARGETS), adapter_name="draft")
    base = dict(prompt=common.PROMPT, frames=args.frames, width=args.size, height=args.size, seed=0, output_type="np")
    jobs = {"default (30 steps, ddim, guidance 7.5)": default, f"draft ({presets.PRESETS['draft'].summary()})": draft}

    def run(fields, steps=None):
        if lora:  # the draft runs with its LoRA, the default job without
            (pipe.unet.enable_adapters if fields is draft else pipe.unet.disable_adapters)()
        return sample_video(pipe, **base, **{**fields, "steps": steps or fields["steps"]})

    for fields in jobs.values():
        run(fields, steps=2)  # warm-up: kernels, allocator pools
    times = common.time_interleaved(
        {name: (lambda fields=fields: run(fields)) for name, fields in jobs.items()},
        repeats=args.repeats,
        warmup=0,
        device=device,
    )
    med = {name: common.median(v) for name, v in times.items()}
    full, quick = med[next(iter(jobs))], med[list(jobs)[1]]
    common.print_table(
        ["job", "median s", "min-max s", "x default"],
        [[name, med[name], common.spread(times[name]), med[name] / full] for name in jobs],
        title=f"draft preset: {args.frames} frames {args.size}x{args.size}, median of {args.repeats}"
        + ("" if lora else " (peft missing: the draft runs without its LoRA)"),
    )
    if lora:
        pipe.unet.delete_adapters("draft")
    result = {
        "settings": {"frames": args.frames, "size": args.size, "default": default, "draft": draft, "lora": lora},
        "seconds": times,
        "median_seconds": med,
        "draft_over_default": quick / full,
    }
    report.add("draft", result)
    return result


def previews_section(pipe, args, report: Report) -> dict:
    """ZS² with a live preview every 5 steps against none: seconds per clip, ratio, time per preview."""
    import tempfile

    from zss_core.previews import PreviewWriter
    from zss_core.protocol import PREVIEW_EVERY
    from zss_core.sampler import sample_video

    device = pipe._execution_device
    frames, steps, size = args.fast_frames, max(args.fast_steps, PREVIEW_EVERY), args.size  # ≥ 1 preview
    base = dict(prompt=common.PROMPT, frames=frames, width=size, height=size, guidance=7.5, seed=0)
    base.update(output_type="np", noise="dependency", lam=0.01, mu=0.98, tma=True)
    folder = tempfile.mkdtemp(prefix="zss-gpu-previews-")
    spent = {"seconds": 0.0, "calls": 0}

    def with_previews(n_steps):
        writer = PreviewWriter(pipe.vae, folder, PREVIEW_EVERY, frames, size, size)

        def timed_writer(step, total, latents, x0):
            if step % PREVIEW_EVERY == 0:
                common.sync(device)  # the step's GPU work belongs to the step, not to the preview
                start = time.perf_counter()
                writer(step, total, latents, x0)
                spent["seconds"] += time.perf_counter() - start
                spent["calls"] += 1

        return sample_video(pipe, steps=n_steps, on_latents=timed_writer, **base)

    runners = {"off": lambda n: sample_video(pipe, steps=n, **base), f"every {PREVIEW_EVERY}": with_previews}
    for run in runners.values():
        run(max(2, min(3, steps)))
    spent.update(seconds=0.0, calls=0)
    times = common.time_interleaved(
        {name: (lambda run=run: run(steps)) for name, run in runners.items()},
        repeats=args.repeats,
        warmup=0,
        device=device,
    )
    med = {name: common.median(v) for name, v in times.items()}
    ratio = med[f"every {PREVIEW_EVERY}"] / med["off"]
    per_preview = spent["seconds"] / max(spent["calls"], 1)
    rows = [[name, med[name], common.spread(times[name]), med[name] / med["off"]] for name in runners]
    common.print_table(
        ["previews", "median s", "min-max s", "x off"],
        rows,
        title=f"live previews: {frames} frames {size}x{size}, {steps} steps, ZS², median of {args.repeats}; "
        f"{per_preview * 1e3:.2f} ms per preview",
    )
    result = {
        "settings": {"frames": frames, "size": size, "steps": steps, "every": PREVIEW_EVERY},
        "seconds": times,
        "median_seconds": med,
        "ratio": ratio,
        "ms_per_preview": per_preview * 1e3,
    }
    report.add("previews", result)
    print(f"previews every {PREVIEW_EVERY}/off = {ratio:.3f} (target <= 1.03)")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny configs on the CPU, to check the script")
    p.add_argument("--device", default="auto")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory-frames", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--memory-steps", type=int, default=2)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument(
        "--budget-s",
        type=float,
        default=480.0,
        help="after this many seconds remaining sections are skipped (and say so)",
    )
    p.add_argument("--no-controlnet", action="store_true")
    p.add_argument("--json", default=None, help="where to write the results (default: $OUT/gpu_check.json)")
    p.add_argument("--fast-frames", type=int, default=16)
    p.add_argument("--fast-steps", type=int, default=25)
    p.add_argument("--compile-mode", default="max-autotune-no-cudagraphs", help="torch.compile mode for --fast")
    p.add_argument("--fast-only", action="store_true", help="only the fast-paths table (section 4)")
    p.add_argument("--draft-only", action="store_true", help="only the draft-preset table (section 5)")
    p.add_argument("--previews-only", action="store_true", help="only the live-preview table (section 6)")
    p.add_argument("--no-fast", action="store_true", help="skip the fast-paths table (its compiles take minutes)")
    args = p.parse_args(argv)
    if args.smoke:
        args.device = "cpu" if args.device == "auto" else args.device
        args.size, args.frames, args.steps, args.repeats = 64, 4, 2, 1
        args.memory_frames, args.memory_steps, args.chunk = [2, 4], 1, 2
        args.fast_frames, args.fast_steps = 4, 3

    started = time.monotonic()
    deadline = started + args.budget_s
    import diffusers
    import torch
    import transformers

    from zss_core.models import resolve_device

    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # steadier on a small shared machine (see common.parser's --threads)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    json_path = args.json or (os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None)
    report = Report(Path(json_path) if json_path else None)
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "device": str(device),
        "dtype": str(dtype),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "smoke": args.smoke,
    }
    print("== gpu_check ==")
    print(", ".join(f"{k} {v}" for k, v in env.items()))
    report.add("environment", env)

    cfg = SMOKE if args.smoke else SD15
    t = time.perf_counter()
    pipe, cpipe = build_pipelines(cfg, device, dtype)
    build = time.perf_counter() - t
    params = {
        name: sum(p.numel() for p in m.parameters()) / 1e6
        for name, m in (
            ("unet", pipe.unet),
            ("vae", pipe.vae),
            ("text_encoder", pipe.text_encoder),
            ("controlnet", cpipe.controlnet),
        )
    }
    print(f"built in {build:.1f} s; parameters (M): " + ", ".join(f"{k} {v:.1f}" for k, v in params.items()))
    print(
        f"unet: block_out_channels={tuple(pipe.unet.config.block_out_channels)}, "
        f"cross_attention_dim={pipe.unet.config.cross_attention_dim}; "
        f"vae: {tuple(pipe.vae.config.block_out_channels)}; text: {pipe.text_encoder.config.hidden_size} x "
        f"{pipe.text_encoder.config.num_hidden_layers}"
    )
    report.add(
        "models",
        {
            "config": {
                k: {kk: list(vv) if isinstance(vv, tuple) else vv for kk, vv in v.items()} for k, v in cfg.items()
            },
            "params_millions": params,
            "build_seconds": build,
        },
    )

    if args.draft_only:
        result = draft_section(pipe, args, report)
        print(f"draft/default = {result['draft_over_default']:.2f}")
        return 0
    if args.previews_only:
        previews_section(pipe, args, report)
        return 0
    fast_result = None if args.no_fast else fast_section(cfg, pipe, args, report, device, dtype)
    if args.fast_only and fast_result is not None:
        print(f"fast/plain = {fast_result['median_seconds']['--fast'] / fast_result['median_seconds']['plain']:.2f}")
        return 0
    speed = speed_section(pipe, args, report)
    print(f"elapsed {time.monotonic() - started:.0f} s", flush=True)
    memory = memory_section(pipe, args, report, deadline)
    print(f"elapsed {time.monotonic() - started:.0f} s", flush=True)
    if args.no_controlnet:
        print("controlnet section: skipped (--no-controlnet)")
    elif time.monotonic() > deadline - 60:
        print("controlnet section: skipped (time budget)")
        report.add("controlnet_speed", "skipped (time budget)")
    else:
        speed_section(pipe, args, report, cpipe=cpipe)
    if time.monotonic() > deadline - 60:
        print("draft section: skipped (time budget)")
        report.add("draft", "skipped (time budget)")
    else:
        draft_section(pipe, args, report)

    if time.monotonic() > deadline - 60:
        print("previews section: skipped (time budget)")
        report.add("previews", "skipped (time budget)")
    else:
        previews_section(pipe, args, report)

    ratios = speed["ratio_to_plain"]
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    summary = {
        "zs2_over_plain": ratios["zs2"],
        "t2vz_over_plain": ratios.get("t2v-zero"),
        "unchunked_64_over_8": memory["unchunked_ratio"],
        "chunked_64_over_8": memory["chunked_ratio"],
        "auto_64_over_8": memory["auto_ratio"],
        "total_seconds": time.monotonic() - started,
    }
    report.add("summary", summary)
    print(f"\ntotal {summary['total_seconds']:.0f} s" + (f"; results in {json_path}" if json_path else ""))
    first, last = args.memory_frames[-1], args.memory_frames[0]
    print(f"unchunked {first}/{last} frames peak = {fmt(memory['unchunked_ratio'])}")
    print(f"chunked {first}/{last} frames peak = {fmt(memory['chunked_ratio'])}")
    print(f"auto chunk {first}/{last} frames peak = {fmt(memory['auto_ratio'])}")
    print(f"t2vz/plain = {fmt(ratios.get('t2v-zero'))}")
    print(f"overhead zs2/plain = {fmt(ratios['zs2'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
