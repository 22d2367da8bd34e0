"""ZS² video sampling on diffusers Stable Diffusion (and SD + ControlNet) pipelines.

ZS² = dependency-noise initial latents + temporal momentum attention + the model's own scheduler.
The denoising loop below is the one of ``StableDiffusionPipeline`` / ``StableDiffusionControlNetPipeline``
(same prompt encoding, guidance, scheduler calls and decoding, from the pipeline's own components),
written out so that it can do what the stock ``__call__`` cannot:

* **exact chunking**: within every denoising step the UNet (and ControlNet) see ``chunk`` frames at a
  time, in frame order, while TMA carries each layer's momentum state across chunks. TMA is causal
  over frames and everything else is per frame, so the result equals the unchunked one; the VAE also
  decodes chunk by chunk. Peak memory depends on the chunk, not on the clip length.
* progress, cancellation between chunks, and each frame handed out as soon as it is decoded.

With one frame, or μ = 0 with independent noise, it reproduces the stock pipeline exactly (tested).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from . import schedule
from .attention import TemporalState, temporal_momentum_attention
from .noise import NoiseStats, make_noise
from .prompts import encode_schedule
from .tiling import seamless_tiling


class SamplingCancelled(Exception):
    """Raised between chunks when ``should_cancel()`` turns true; holds the frames done so far."""


@dataclass
class ClipResult:
    frames: list  # PIL images; float arrays (H, W, 3) in [0, 1] with output_type="np"; latents with "latent"
    noise_stats: NoiseStats
    seed: int
    timings: dict = field(default_factory=dict)


def _chunks(frames: int, chunk: int | None):
    size = frames if not chunk or chunk >= frames else chunk
    return [(start, min(start + size, frames)) for start in range(0, frames, size)]


def _is_controlnet(pipe) -> bool:
    return getattr(pipe, "controlnet", None) is not None


def _prepare_control(pipe, images, frames, width, height, device, dtype) -> torch.Tensor:
    """Control images → (frames, 3, H, W) in [0, 1], preprocessed like the stock pipeline does."""
    if images is None:
        raise ValueError("This pipeline has a ControlNet: give one control image per frame")
    if len(images) != frames:
        raise ValueError(f"Got {len(images)} control images for {frames} frames: give exactly one per frame")
    # diffusers reads numpy arrays as floats in [0, 1]: 8-bit arrays become images first, or the
    # ControlNet would see inputs 255 times too strong.
    images = [Image.fromarray(im) if isinstance(im, np.ndarray) and im.dtype == np.uint8 else im for im in images]
    tensor = pipe.control_image_processor.preprocess(images, height=height, width=width)
    return tensor.to(device=device, dtype=dtype)


def _decode(pipe, latents, chunks, output_type, cancelled, on_frame) -> list:
    """Decode chunk by chunk (the VAE is per frame, so this is exact), handing frames out as they come."""
    out = []
    for start, end in chunks:
        if cancelled():
            raise SamplingCancelled("cancelled while decoding")
        images = pipe.vae.decode(latents[start:end] / pipe.vae.config.scaling_factor, return_dict=False)[0]
        images = pipe.image_processor.postprocess(images, output_type=output_type, do_denormalize=[True] * (end - start))
        for offset, image in enumerate(images):
            out.append(image)
            if on_frame is not None:
                on_frame(start + offset, image)
    return out


@torch.no_grad()
def sample_video(
    pipe,
    prompt: str | Sequence[tuple[int, str]],
    *,
    frames: int = 8,
    width: int = 512,
    height: int = 512,
    steps: int = 30,
    guidance: float = 7.5,
    negative_prompt: str = "",
    seed: int = 0,
    lam: float | Sequence[float] = 0.01,
    mu: float | Sequence[float] = 0.98,
    noise: str = "dependency",
    search: str = "exact",
    candidates: int = 10,
    tma: bool = True,
    control_images: Sequence | None = None,
    control_scale: float = 1.0,
    chunk: int | None = None,
    loop: bool = False,
    tile_x: bool = False,
    tile_y: bool = False,
    prompt_interpolation: str = "linear",
    latents: torch.Tensor | None = None,
    output_type: str = "pil",
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_frame: Callable[[int, object], None] | None = None,
) -> ClipResult:
    """Sample a clip of ``frames`` frames with ZS². Returns the frames and the noise statistics.

    ``lam``/``mu``: a number or per-frame lists (length ``frames``, entry 0 unused, or ``frames − 1``).
    ``prompt``: a string, or a schedule of (frame, prompt) keys (0-based frames) whose text embeddings
    are interpolated per frame (``prompt_interpolation``: ``linear`` or ``slerp``).
    ``loop``: a seamless loop — closed noise path and cyclic momentum (frame 0 also carries momentum
    from the clip's end). ``tile_x``/``tile_y``: frames that tile seamlessly on those axes.
    ``noise``: ``dependency`` (ZS²), ``mixed``, ``progressive`` or ``independent``. ``tma=False`` keeps
    the model's own attention (for baselines). ``latents``: initial noise (frames, 4, H/8, W/8) to use
    instead of drawing it (unscaled, like the stock pipeline's ``latents``). The initial noise is drawn
    on the CPU from ``seed`` so a clip is reproducible on any device. ``progress(step, total)`` is
    called after each denoising step; ``should_cancel()`` is checked before every chunk;
    ``on_frame(index, frame)`` receives each frame as soon as it is decoded.
    """
    if frames < 1:
        raise ValueError(f"frames must be ≥ 1, got {frames}")
    if width % 8 or height % 8:
        raise ValueError(f"width and height must be multiples of 8, got {width}×{height}")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    device = pipe._execution_device
    unet, controlnet = pipe.unet, getattr(pipe, "controlnet", None)
    dtype = unet.dtype
    cancelled = should_cancel or (lambda: False)

    # 1. Initial noise (ZS²'s dependency noise model or a baseline), drawn on the CPU.
    vae_factor = pipe.vae_scale_factor
    shape = (unet.config.in_channels, height // vae_factor, width // vae_factor)
    t0 = time.perf_counter()
    generator = torch.Generator("cpu").manual_seed(int(seed))
    if latents is None:
        latents, stats = make_noise(noise, frames, shape, lam, generator=generator, candidates=candidates,
                                    search=search, loop=loop, return_stats=True)
    else:
        if tuple(latents.shape) != (frames, *shape):
            raise ValueError(f"latents must have shape {(frames, *shape)}, got {tuple(latents.shape)}")
        stats = NoiseStats(target=[0.0] * frames, alpha=[0.0] * frames, divergence=[0.0] * frames)
    timings["noise_seconds"] = time.perf_counter() - t0

    # 2. Prompt, control images, timesteps: the stock pipeline's own components and helpers.
    do_cfg = guidance > 1.0 and unet.config.time_cond_proj_dim is None
    keys = schedule.normalize_schedule(prompt, frames)
    if len(keys) == 1:
        prompt_embeds, negative_embeds = pipe.encode_prompt(keys[0][1], device, 1, do_cfg, negative_prompt)
    else:
        prompt_embeds, negative_embeds = encode_schedule(pipe, keys, frames, device, prompt_interpolation,
                                                         do_cfg, negative_prompt, loop)
    control = None
    if _is_controlnet(pipe):
        control = _prepare_control(pipe, control_images, frames, width, height, device, controlnet.dtype)
    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps, device=device)
    timesteps = scheduler.timesteps
    latents = latents.to(device=device, dtype=prompt_embeds.dtype) * scheduler.init_noise_sigma
    extra_step_kwargs = pipe.prepare_extra_step_kwargs(generator, 0.0)

    mu_values = (schedule.loop_mu_list(mu, frames) if loop else schedule.mu_list(mu, frames)) if tma else [0.0] * frames
    state = TemporalState(mu=mu_values, loop=loop)
    chunks = _chunks(frames, chunk)
    groups = 2 if do_cfg else 1

    def predict_noise(latent_chunk: torch.Tensor, t, start: int, end: int) -> torch.Tensor:
        count = end - start
        state.start, state.count = start, count
        model_input = torch.cat([latent_chunk] * groups) if do_cfg else latent_chunk
        model_input = scheduler.scale_model_input(model_input, t)
        if prompt_embeds.shape[0] == 1:
            embeds = prompt_embeds.expand(count, -1, -1)
        else:
            embeds = prompt_embeds[start:end]
        if do_cfg:
            embeds = torch.cat([negative_embeds.expand(count, -1, -1), embeds])
        residuals = {}
        if controlnet is not None:
            cond = control[start:end]
            cond = torch.cat([cond] * groups) if do_cfg else cond
            down, mid = controlnet(model_input, t, encoder_hidden_states=embeds, controlnet_cond=cond,
                                   conditioning_scale=control_scale, guess_mode=False, return_dict=False)
            residuals = dict(down_block_additional_residuals=down, mid_block_additional_residual=mid)
        pred = unet(model_input, t, encoder_hidden_states=embeds, return_dict=False, **residuals)[0]
        if do_cfg:
            uncond, text = pred.chunk(2)
            pred = uncond + guidance * (text - uncond)
        return pred

    # 3. Denoising: every step runs all chunks in frame order, then one scheduler step on the clip.
    #    Tiling (circular padding) stays on through decoding: the VAE's convolutions must wrap too.
    t0 = time.perf_counter()
    models = [unet, controlnet] if tma else []
    with seamless_tiling([unet, controlnet, pipe.vae], tile_x, tile_y):
        with temporal_momentum_attention(models, state):
            for step_index, t in enumerate(timesteps):
                state.step = step_index
                noise_pred = torch.empty_like(latents)
                for start, end in chunks:
                    if cancelled():
                        raise SamplingCancelled(f"cancelled at step {step_index + 1} of {len(timesteps)}")
                    noise_pred[start:end] = predict_noise(latents[start:end], t, start, end)
                latents = scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
                if progress is not None:
                    progress(step_index + 1, len(timesteps))
        timings["denoise_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = list(latents) if output_type == "latent" else _decode(pipe, latents, chunks, output_type, cancelled,
                                                                    on_frame)
    timings["decode_seconds"] = time.perf_counter() - t0
    timings["total_seconds"] = time.perf_counter() - started
    if output_type == "np":
        out = [np.asarray(frame) for frame in out]
    return ClipResult(frames=out, noise_stats=stats, seed=int(seed), timings=timings)
