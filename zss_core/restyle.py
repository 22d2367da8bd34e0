"""Restyle (video-to-video): ZS² sampling that starts from source frames instead of pure noise.

The start is diffusers' image-to-image (``StableDiffusionImg2ImgPipeline.get_timesteps`` and
``prepare_latents``): ``strength`` picks how many of the ``steps`` are run,
``min(int(steps · strength), steps)``, the source latents are noised up to the first of those
timesteps with the scheduler's own ``add_noise``, and the denoising loop runs the remaining steps
(``ChunkedDenoiser.run(start_step=…)``), with TMA, chunked exactly as text-to-video is.

Two choices keep a clip coherent where per-frame img2img flickers:

* the noise added to the source is the clip's **dependency noise** (``initial_noise``: the same
  λ-dependent frames text-to-video starts from, drawn first from the same generator), not an
  independent draw per frame;
* a source frame is encoded to its VAE posterior **mean**, not a posterior sample: a sample would add
  a second, independent noise per frame (and randomness at ``strength=0``).

Limits: ``strength=1`` is text-to-video itself (the source is not read: bit-identical to sampling
without it); ``strength`` below ``1/steps`` runs no step and returns the source re-encoded (a VAE
round trip).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from .families import vae_precision
from .sampler import SamplingCancelled, SamplingOptions, frame_chunks


def denoise_steps(steps: int, strength: float) -> int:
    """The denoising steps a restyle runs: diffusers' ``init_timestep`` (all of them at strength 1)."""
    return min(int(steps * strength), steps)


def start_step(steps: int, strength: float) -> int:
    """Index of the first step run (diffusers' ``t_start``): the steps before it are skipped."""
    return steps - denoise_steps(steps, strength)


def source_of(options: SamplingOptions, init_images: Sequence | None) -> Sequence | None:
    """The frames this clip starts from, or None for text-to-video (strength 1 does not read them)."""
    if options.strength >= 1.0:
        return None
    if init_images is None:
        raise ValueError(f"strength {options.strength} below 1 needs init_images: the source frames to restyle")
    return init_images


def _as_pil(image) -> Image.Image:
    """8-bit arrays become images (diffusers would read a uint8 array as floats in [0, 1])."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        return Image.fromarray(image).convert("RGB")
    return image


def encode_frames(
    pipe,
    images: Sequence,
    options: SamplingOptions,
    cancelled: Callable[[], bool] = lambda: False,
    scaled: bool = True,
) -> torch.Tensor:
    """Source frames → latents (frames, C, h, w), scaled like the UNet's (``scaled``; unscaled is what
    InstructPix2Pix conditions on), ``options.chunk`` frames per VAE call (the VAE is per frame, so
    chunking is exact); each frame is its posterior mean."""
    if len(images) != options.frames:
        raise ValueError(f"Got {len(images)} source frames for {options.frames} frames: give exactly one per frame")
    vae = pipe.vae
    device = pipe._execution_device
    out = []
    for start, end in frame_chunks(options.frames, options.chunk):
        if cancelled():
            raise SamplingCancelled("cancelled while encoding the source frames")
        pixels = pipe.image_processor.preprocess(
            [_as_pil(im) for im in images[start:end]], height=options.height, width=options.width
        )
        with vae_precision(pipe) as dtype:  # an SDXL VAE that overflows in float16 encodes in float32
            latents = vae.encode(pixels.to(device=device, dtype=dtype)).latent_dist.mode()
        out.append(latents * vae.config.scaling_factor if scaled else latents)
    return torch.cat(out)


def init_latents(
    pipe,
    options: SamplingOptions,
    images: Sequence,
    noise: torch.Tensor,
    cancelled: Callable[[], bool] = lambda: False,
) -> tuple[torch.Tensor, int]:
    """(the denoising loop's starting latents, the index of its first step).

    The source latents noised with ``noise`` (the clip's dependency noise) at the timestep that
    ``options.strength`` selects, as diffusers' img2img does; with no step to run, the source
    latents themselves.
    """
    source = encode_frames(pipe, images, options, cancelled)
    first = start_step(options.steps, options.strength)
    if first >= options.steps:
        return source, first
    scheduler = pipe.scheduler
    scheduler.set_timesteps(options.steps, device=source.device)
    timestep = scheduler.timesteps[first * scheduler.order]
    noise = noise.to(device=source.device, dtype=source.dtype)
    noised = scheduler.add_noise(source, noise, timestep.repeat(options.frames))
    return noised, first
