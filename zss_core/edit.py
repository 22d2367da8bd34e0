"""Instruction editing with ZS²: an InstructPix2Pix-class model edits source frames, coherently.

InstructPix2Pix (diffusers' ``StableDiffusionInstructPix2PixPipeline``) is an SD1.x UNet with 8 input
channels: the 4 of the noisy latents and the 4 of the frame being edited (its VAE posterior mean,
unscaled). The prompt is the instruction ("make it snowy"); classifier-free guidance runs three
branches, ``[instruction + image, no text + image, no text + no image]``, combined as

    ε = ε_uncond + guidance · (ε_text − ε_image) + image_guidance · (ε_image − ε_uncond)

(guidance only when ``guidance > 1`` and ``image_guidance ≥ 1``, as diffusers does). This module is
that step on one chunk of frames; everything else is the ZS² sampler unchanged: dependency noise,
temporal momentum attention across the three branches (each its own group), exact chunking, step
caching. With one frame it reproduces diffusers' pipeline (tested).

The model check accepts an 8-channel UNet only in this mode (``model_check``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

EDIT_CHANNELS = 8  # UNet input channels of an InstructPix2Pix-class model: latents + the edited frame's


def image_latents(
    pipe, options, images: Sequence | None, cancelled: Callable[[], bool] = lambda: False
) -> torch.Tensor:
    """The frames to edit as the UNet's extra channels: (frames, 4, h, w), unscaled posterior means."""
    from .restyle import encode_frames

    channels = pipe.unet.config.in_channels
    if options.image_guidance is None:
        raise ValueError(
            f"This UNet has {channels} input channels: it is an instruction-editing (InstructPix2Pix) model. "
            "Use it to edit source frames: give init_images and image_guidance (zss generate --edit … --init …)"
        )
    if channels != EDIT_CHANNELS:
        raise ValueError(
            f"Instruction editing needs an InstructPix2Pix-class model ({EDIT_CHANNELS} UNet input channels); "
            f"this UNet has {channels}"
        )
    if images is None:
        raise ValueError("Instruction editing needs init_images: the frames to edit, one per frame")
    if getattr(pipe, "controlnet", None) is not None:
        raise ValueError("Instruction editing does not take a ControlNet: leave the control images out")
    return encode_frames(pipe, images, options, cancelled, scaled=False)


def predict_edit_noise(denoiser, latent_chunk: torch.Tensor, t, start: int, end: int) -> torch.Tensor:
    """``ChunkedDenoiser.predict_noise`` for instruction editing: three-way guidance on frames start:end."""
    pipe, cond, options = denoiser.pipe, denoiser.cond, denoiser.options
    count = end - start
    denoiser.state.start, denoiser.state.count = start, count
    groups = denoiser.groups
    model_input = pipe.scheduler.scale_model_input(torch.cat([latent_chunk] * groups), t)
    image = cond.image_latents[start:end].to(device=model_input.device, dtype=model_input.dtype)
    if cond.do_cfg:  # [text + image, no text + image, no text + no image], as diffusers orders them
        image = torch.cat([image, image, torch.zeros_like(image)])
    model_input = torch.cat([model_input, image], dim=1)
    if cond.prompt_embeds.shape[0] == 1:
        embeds = cond.prompt_embeds.expand(count, -1, -1)
    else:
        embeds = cond.prompt_embeds[start:end]
    if cond.do_cfg:
        negative = cond.negative_embeds.expand(count, -1, -1)
        embeds = torch.cat([embeds, negative, negative])
    pred = denoiser.call_unet(model_input, t, embeds, start, end)
    if not cond.do_cfg:
        return pred
    text, image_only, uncond = pred.chunk(3)
    return uncond + options.guidance * (text - image_only) + options.image_guidance * (image_only - uncond)
