"""Shared helpers for the benchmarks in bench/: arguments, model loading, timing, tables.

Benchmarks are not tests: each script prints tables and ends with one ratio measured against a
baseline run in the same process (the last line is meant to be grepped).

Models (``--model``):

* ``bench`` (default in most scripts): ``bench_pipeline()``, an SD1.x-shaped UNet with random
  weights that is larger than the built-in tiny one, so that on a CPU the numbers are about the
  network (convolutions and attention), not about Python overhead. It reuses the tiny VAE and
  scheduler; the text encoder is a small CLIPTextModel whose hidden size matches the UNet's
  cross-attention width, with the byte-level tokenizer of ``zss_core.models``.
* ``tiny``: ``zss_core.models``' tiny test model (attention only at the lowest level).
* anything else: a diffusers folder, a .safetensors file or a hub id, through ``load_pipeline``.

Run from the repository root: ``.venv/bin/python bench/overhead.py --quick``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT_DIR = Path(__file__).resolve().parent / "out"
BENCH = "bench"
PROMPT = "a red brick wall in the rain, cinematic"

# SD1.x-shaped UNets with random weights. SD1.5 is (320, 640, 1280, 1280) with cross-attention
# blocks at the three highest resolutions, none at the lowest, attention in the mid block, two
# layers per block, 8 heads and a 768-wide text encoder. "small" keeps that layout on three levels.
BENCH_SIZES = {
    "small": dict(
        block_out_channels=(64, 128, 256),
        layers_per_block=2,
        cross_attention_dim=256,
        attention_head_dim=8,
        norm_num_groups=32,
        text_layers=2,
    ),
    "medium": dict(
        block_out_channels=(128, 256, 512),
        layers_per_block=2,
        cross_attention_dim=512,
        attention_head_dim=8,
        norm_num_groups=32,
        text_layers=4,
    ),
}


# ---------------------------------------------------------------------------------------------
# Arguments


def parser(description: str, model_default: str = BENCH) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a ~30 s version with smaller settings")
    p.add_argument(
        "--model",
        default=model_default,
        help="'bench' (SD1.x-shaped random UNet, see --bench-size), 'tiny', a diffusers "
        "folder, a .safetensors file or a hub id",
    )
    p.add_argument("--bench-size", default="small", choices=sorted(BENCH_SIZES), help="size of the 'bench' model")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", default="auto", help="auto (fp16 on GPUs, fp32 on CPU), float32, float16")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (0: torch's default). 1 by default: on a small machine shared with "
        "other jobs, multi-threaded runs stall whenever one thread is descheduled (a 2-core "
        "machine with two niced jobs measured 1.5-20 s per run with 2 threads, 0.55 s with 1)",
    )
    return p


# ---------------------------------------------------------------------------------------------
# Models


def bench_pipeline(size: str = "small", seed: int = 0):
    """An SD1.x-shaped pipeline with random weights, larger than the tiny test model (CPU, fp32).

    The UNet is built from config (``BENCH_SIZES[size]``): cross-attention down/up blocks at every
    level but the lowest-resolution one and a cross-attention mid block, like SD1.x. The VAE,
    scheduler and tokenizer come from ``build_tiny_pipeline()``; the text encoder is rebuilt with
    ``hidden_size == cross_attention_dim`` (the tiny one is 32 wide).
    """
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from zss_core.models import build_tiny_pipeline

    cfg = BENCH_SIZES[size]
    levels = len(cfg["block_out_channels"])
    tiny = build_tiny_pipeline(controlnet=False, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            layers_per_block=cfg["layers_per_block"],
            block_out_channels=cfg["block_out_channels"],
            down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
            cross_attention_dim=cfg["cross_attention_dim"],
            attention_head_dim=cfg["attention_head_dim"],
            norm_num_groups=cfg["norm_num_groups"],
        )
        tc = tiny.text_encoder.config
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=tc.vocab_size,
                hidden_size=cfg["cross_attention_dim"],
                intermediate_size=4 * cfg["cross_attention_dim"],
                num_hidden_layers=cfg["text_layers"],
                num_attention_heads=8,
                max_position_embeddings=tc.max_position_embeddings,
                bos_token_id=tc.bos_token_id,
                eos_token_id=tc.eos_token_id,
                pad_token_id=tc.pad_token_id,
                projection_dim=cfg["cross_attention_dim"],
            )
        )
    if text_encoder.config.hidden_size != unet.config.cross_attention_dim:
        raise AssertionError("text encoder width must equal the UNet's cross_attention_dim")
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=tiny.vae,
        text_encoder=text_encoder,
        tokenizer=tiny.tokenizer,
        scheduler=tiny.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe_pipeline(pipe, model: str, bench_size: str = "small") -> str:
    """A few lines that say what model the numbers are about."""
    u = pipe.unet.config
    attn_levels = [i for i, t in enumerate(u.down_block_types) if "CrossAttn" in t]
    lines = [
        f"model: {model}" + (f" (bench_pipeline size={bench_size!r}, random weights)" if model == BENCH else ""),
        f"  unet: block_out_channels={tuple(u.block_out_channels)} layers_per_block={u.layers_per_block} "
        f"attention at down levels {attn_levels} + mid, cross_attention_dim={u.cross_attention_dim}, "
        f"attention_head_dim={u.attention_head_dim}, {count_parameters(pipe.unet) / 1e6:.1f} M params",
        f"  vae: block_out_channels={tuple(pipe.vae.config.block_out_channels)} "
        f"({count_parameters(pipe.vae) / 1e6:.2f} M params); text encoder: hidden "
        f"{pipe.text_encoder.config.hidden_size} x {pipe.text_encoder.config.num_hidden_layers} layers",
        f"  scheduler: {type(pipe.scheduler).__name__}; device {pipe._execution_device}, dtype {pipe.unet.dtype}",
    ]
    return "\n".join(lines)


def load_model(model: str = BENCH, device: str = "auto", dtype: str = "auto", bench_size: str = "small"):
    """``bench``, ``tiny``, or a real model through ``zss_core.models.load_pipeline``; on its device."""
    from zss_core.models import load_pipeline, resolve_device, resolve_dtype, set_scheduler

    if model != BENCH:
        return load_pipeline(model, device=device, dtype=dtype)
    torch_device = resolve_device(device)
    pipe = bench_pipeline(bench_size)
    set_scheduler(pipe, "ddim")
    return pipe.to(torch_device, resolve_dtype(dtype, torch_device))


def apply_threads(args) -> None:
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)


def load_from_args(args):
    apply_threads(args)
    return load_model(args.model, args.device, args.dtype, args.bench_size)


# ---------------------------------------------------------------------------------------------
# Timing


def sync(device=None) -> None:
    """Wait for queued GPU work so that wall-clock timings are honest."""
    import torch

    if torch.cuda.is_available() and (device is None or str(device).startswith("cuda")):
        torch.cuda.synchronize()
    mps = getattr(torch, "mps", None)
    if device is not None and str(device).startswith("mps") and mps is not None:
        mps.synchronize()


def timed(fn: Callable, device=None) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def time_interleaved(
    fns: dict[str, Callable], repeats: int = 3, warmup: int = 1, device=None, verbose: bool = True
) -> dict[str, list[float]]:
    """Warm every function up, then run them round-robin ``repeats`` times; seconds per run.

    Interleaving spreads machine noise (other processes, thermal drift) over all candidates
    instead of penalising whichever runs last; report the median (``median``).
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            gc.collect()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        for name, fn in fns.items():
            seconds, _ = timed(fn, device)
            times[name].append(seconds)
            gc.collect()
            if verbose:
                print(f"  run {r + 1}/{repeats} {name}: {seconds:.3f} s", flush=True)
    return times


def time_fn(fn: Callable, repeats: int = 3, warmup: int = 1, device=None) -> list[float]:
    """Warm-up runs, then ``repeats`` timed runs; seconds per run."""
    return time_interleaved({"fn": fn}, repeats, warmup, device, verbose=False)["fn"]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """'min-max' of a list of seconds, for the tables."""
    return f"{min(values):.3f}-{max(values):.3f}"


# ---------------------------------------------------------------------------------------------
# Output


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) < 10**-digits or abs(value) >= 10**6):
            return f"{value:.{digits}e}"
        return f"{value:.{digits}f}"
    return str(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence], title: str | None = None, digits: int = 3) -> None:
    """A plain fixed-width table; numbers right-aligned, text left-aligned."""
    cells = [[fmt(v, digits) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) if rows else False
        for i in range(len(headers))
    ]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    if title:
        print(f"\n{title}")
    print(line([str(h) for h in headers]))
    print(line(["-" * w for w in widths]))
    for row in cells:
        print(line(row))
    sys.stdout.flush()


def header(name: str, args, extra: str = "") -> None:
    """First lines of every benchmark: what runs where."""
    import torch

    apply_threads(args)
    print(f"== {name} ==")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu count {os.cpu_count()}"
        + (f", CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )
    load = ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    print(f"settings: {'--quick' if getattr(args, 'quick', False) else 'default'}{extra}{load}")
    sys.stdout.flush()


def ensure_out_dir() -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUT_DIR


# ---------------------------------------------------------------------------------------------
# Baselines shared by overhead.py and gpu_check.py


def text2video_zero(pipe):
    """diffusers' TextToVideoZeroPipeline built from ``pipe``'s components (shared, not copied)."""
    from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import (
        TextToVideoZeroPipeline,
    )

    t2vz = TextToVideoZeroPipeline(
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        unet=pipe.unet,
        scheduler=pipe.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    t2vz.set_progress_bar_config(disable=True)
    return t2vz


T2VZ_T0, T2VZ_T1 = 44, 47  # TextToVideoZeroPipeline's defaults, meant for 50 inference steps


def t2vz_times(steps: int) -> tuple[int, int]:
    """T2V-Zero's (t0, t1): the defaults (44, 47) when they fit, else scaled to ``steps``.

    The defaults index the timestep list from its end and need ``steps ≥ 48``; with fewer steps the
    pipeline fails, so they are scaled by steps/50 and clamped to 0 ≤ t0 < t1 ≤ steps − 1.
    """
    if steps >= T2VZ_T1 + 1:
        return T2VZ_T0, T2VZ_T1
    if steps < 2:
        raise ValueError("Text2Video-Zero needs at least 2 inference steps")
    t1 = min(steps - 1, round(T2VZ_T1 * steps / 50))
    t0 = min(t1 - 1, round(T2VZ_T0 * steps / 50))
    return max(t0, 0), t1


def t2vz_unet_work(steps: int, frames: int) -> str:
    """How many UNet passes T2V-Zero makes: frame-0-only steps + all-frame steps (×2 under CFG)."""
    t0, t1 = t2vz_times(steps)
    single = steps - t0 - 1  # timesteps[:-t1-1] then timesteps[-t1-1:-t0-1], first frame only
    full = t1 + 1  # timesteps[-t1-1:], every frame
    return f"{single} steps x 1 frame + {full} steps x {frames} frames"


def run_text2video_zero(
    t2vz,
    prompt: str,
    *,
    frames: int,
    width: int,
    height: int,
    steps: int,
    guidance: float = 7.5,
    seed: int = 0,
    output_type: str = "np",
):
    """One T2V-Zero clip with its default motion field (12, 12) and t0/t1 from ``t2vz_times``."""
    import torch

    t0, t1 = t2vz_times(steps)
    return t2vz(
        prompt,
        video_length=frames,
        width=width,
        height=height,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(seed),
        t0=t0,
        t1=t1,
        output_type=output_type,
    ).images
