"""GPU check for the model families (issue 15): float16 on CUDA, no downloads.

1. The tiny SD 2.x (v-prediction) and SDXL test models (tests/conftest.py), saved and loaded through
   ``load_pipeline`` in float16: one frame of ZS² against the stock diffusers pipeline with the same
   latents (SDXL's VAE decodes in float32 there, ``force_upcast``; ours must too), and chunked against
   unchunked.
2. An SDXL-sized model with random weights (SDXL base's UNet, VAE and text-encoder shapes, built from
   configs on the GPU): a clip of ``--frames`` at 1024², chunked and not, with TMA and as a plain batch —
   seconds and peak GPU memory. Random weights make noise, not pictures: this measures cost only.

    python bench/families_gpu.py [--frames 16] [--steps 8] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def max_diff(a, b) -> float:
    return max(float(np.abs(np.asarray(x, np.float32) - np.asarray(y, np.float32)).max()) for x, y in zip(a, b))


def tiny_checks(device: str) -> dict:
    from conftest import _save_family_model, build_tiny_sd2, build_tiny_sdxl

    from zss_core.models import load_pipeline
    from zss_core.sampler import sample_video

    results = {}
    folder = Path(tempfile.mkdtemp())
    for name, build in (("sd2", build_tiny_sd2), ("sdxl", build_tiny_sdxl)):
        path = _save_family_model(folder / name, build())
        for dtype in ("float32", "float16"):
            pipe = load_pipeline(str(path), device=device, dtype=dtype)
            latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
            ours = sample_video(
                pipe, "a red wall", frames=1, latents=latents, width=64, height=64, steps=4, output_type="np"
            )
            stock = pipe(
                "a red wall",
                width=64,
                height=64,
                num_inference_steps=4,
                guidance_scale=7.5,
                latents=latents.clone().to(pipe.unet.dtype),  # the stock pipeline does not cast them
                output_type="np",
            ).images
            clip = dict(frames=5, seed=3, width=64, height=64, steps=4, output_type="np")
            whole = sample_video(pipe, "a red wall", **clip).frames
            parts = sample_video(pipe, "a red wall", chunk=2, **clip).frames
            results[f"{name}_{dtype}"] = {
                "one_frame_vs_stock": max_diff(ours.frames, stock),
                "chunked_vs_unchunked": max_diff(whole, parts),
                "finite": bool(all(np.isfinite(f).all() for f in whole)),
                "vae_dtype_after": str(pipe.vae.dtype),
            }
            log(name, dtype, results[f"{name}_{dtype}"])
    return results


def sdxl_sized(device: str, dtype: torch.dtype):
    """SDXL base's architecture with random weights, built on the GPU (no weights exist here)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from zss_core.models import sdxl_pipeline

    text = dict(vocab_size=514, max_position_embeddings=77, bos_token_id=512, eos_token_id=513, pad_token_id=513)
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=128,
            layers_per_block=2,
            block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            cross_attention_dim=2048,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        )
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=2,
            sample_size=1024,
            scaling_factor=0.13025,
            force_upcast=True,
        )
        te1 = CLIPTextModel(
            CLIPTextConfig(
                **text, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12
            )
        )
        te2 = CLIPTextModelWithProjection(
            CLIPTextConfig(
                **text,
                hidden_size=1280,
                intermediate_size=5120,
                num_hidden_layers=32,
                num_attention_heads=20,
                projection_dim=1280,
                hidden_act="gelu",
            )
        )
    pipe = sdxl_pipeline(unet, vae, te1, te2)
    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sized_runs(device: str, frames: int, steps: int) -> dict:
    from zss_core.models import check_model
    from zss_core.sampler import sample_video

    started = time.perf_counter()
    pipe = sdxl_sized(device, torch.float16)
    family = check_model(pipe)
    params = sum(
        p.numel()
        for name in ("unet", "vae", "text_encoder", "text_encoder_2")
        for p in getattr(pipe, name).parameters()
    )
    results: dict = {"family": family.name, "parameters": params, "build_seconds": time.perf_counter() - started}
    log("built SDXL-sized model", results)
    sample_video(pipe, "warm up", frames=1, width=1024, height=1024, steps=2, output_type="latent")
    for label, chunk, tma in (("chunk4_tma", 4, True), ("chunk4_plain", 4, False), ("unchunked_tma", None, True)):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            clip = sample_video(
                pipe,
                "a lighthouse",
                frames=frames,
                width=1024,
                height=1024,
                steps=steps,
                chunk=chunk,
                tma=tma,
                output_type="np",
            )
        except torch.cuda.OutOfMemoryError as exc:  # a measurement too: the clip does not fit unchunked
            results[label] = {"out_of_memory": str(exc).splitlines()[0]}
            log(label, results[label])
            torch.cuda.empty_cache()
            continue
        torch.cuda.synchronize()
        results[label] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "denoise_seconds": round(clip.timings["denoise_seconds"], 2),
            "decode_seconds": round(clip.timings["decode_seconds"], 2),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "finite_fraction": float(np.mean([np.isfinite(f).mean() for f in clip.frames])),
            "vae_dtype_after": str(pipe.vae.dtype),
        }
        log(label, results[label])
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", default="")
    parser.add_argument("--skip-sized", action="store_true", help="only the tiny-model checks")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        log("no CUDA device: this check runs only where a GPU is present")
        return 0
    results = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "tiny": tiny_checks("cuda")}
    write(results, args.out)  # kept even if the SDXL-sized runs fail
    if not args.skip_sized:
        results["sdxl_sized"] = sized_runs("cuda", args.frames, args.steps)
        write(results, args.out)
    print(json.dumps(results, indent=2))
    return 0


def write(results: dict, out: str) -> None:
    if out:
        Path(out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
