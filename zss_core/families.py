"""What differs between the model families at sampling time: prompt encoding and extra UNet inputs.

SD 1.x and 2.x condition the UNet on one text embedding (``StableDiffusionPipeline.encode_prompt``);
SD 2.x's v-prediction lives in the scheduler config and needs nothing here. SDXL also conditions on
the pooled embedding of its second text encoder and on "time ids" (original size, crop corner, target
size), given to the UNet (and ControlNet) as ``added_cond_kwargs``, and decodes with its VAE in
float32 when the VAE's config says it overflows in float16 (``force_upcast``). ``StableDiffusionXL``
does this with the pipeline's own ``encode_prompt`` and ``_get_add_time_ids``, in the order of
``StableDiffusionXLPipeline.__call__``; ``AddedConditioning.for_chunk`` cuts the extra inputs to the
frames of one chunk, [negative, positive] under classifier-free guidance like the text embeddings.

Which family a loaded pipeline is, is read from it (``family_of``): a second text encoder or a UNet
with ``text_time`` embeddings is SDXL. (``model_check`` names families before loading; this module
only needs to know how to condition the loaded one.)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from . import weighted_prompts
from .prompts import encode_keys, encode_schedule, interpolate_keys

# Casting a VAE whose list of modules to keep in float32 is empty logs "There are modules in
# AutoencoderKL that should be kept in float32: []" on every cast (the stock SDXL pipeline's upcast too):
# with nothing in the list the warning says nothing, and SDXL jobs would print it twice per clip.
logging.getLogger("diffusers.models.modeling_utils").addFilter(
    lambda record: "AutoencoderKL that should be kept in float32: []" not in record.getMessage()
)


@dataclass
class AddedConditioning:
    """SDXL's pooled text embeddings and size/crop time ids for the clip, on the pipeline's device."""

    text_embeds: torch.Tensor  # (1, P) for one prompt, (frames, P) for a prompt schedule
    negative_text_embeds: torch.Tensor | None  # (1, P) under classifier-free guidance
    time_ids: torch.Tensor  # (1, 6): original size, crop top-left, target size
    negative_time_ids: torch.Tensor | None

    def for_chunk(self, start: int, end: int) -> dict[str, torch.Tensor]:
        """``added_cond_kwargs`` for frames ``start:end`` (both guidance halves when guided)."""
        count = end - start
        text = self.text_embeds.expand(count, -1) if self.text_embeds.shape[0] == 1 else self.text_embeds[start:end]
        time_ids = self.time_ids.expand(count, -1)
        if self.negative_text_embeds is not None and self.negative_time_ids is not None:
            text = torch.cat([self.negative_text_embeds.expand(count, -1), text])
            time_ids = torch.cat([self.negative_time_ids.expand(count, -1), time_ids])
        return {"text_embeds": text, "time_ids": time_ids}


Encoded = tuple[torch.Tensor, "torch.Tensor | None", "AddedConditioning | None"]


class StableDiffusion:
    """SD 1.x and 2.x: one text encoder, nothing added per chunk, the VAE decodes in its own dtype."""

    name = "sd"
    upcast_vae = False

    def encode(self, pipe, keys: Sequence[tuple[int, str]], options, device, do_cfg: bool) -> Encoded:
        """(prompt embeddings (1 or frames, 77, d), negative (1, 77, d) or None, None)."""
        if len(keys) == 1:
            (positive,), negative = encode_keys(pipe, [keys[0][1]], device, do_cfg, options.negative_prompt)
            return positive, negative, None
        positive, negative = encode_schedule(
            pipe,
            keys,
            options.frames,
            device,
            options.prompt_interpolation,
            do_cfg,
            options.negative_prompt,
            options.loop,
        )
        return positive, negative, None


class StableDiffusionXL:
    """SDXL (and SDXL-Turbo): two text encoders, pooled embeddings and size/crop time ids."""

    name = "sdxl"
    upcast_vae = True

    def encode(self, pipe, keys: Sequence[tuple[int, str]], options, device, do_cfg: bool) -> Encoded:
        """As ``StableDiffusionXLPipeline.__call__`` steps 3 and 7, for one prompt or a schedule.

        An empty negative prompt is passed as None, as the stock call without one: SDXL then uses a
        zero negative embedding (``force_zeros_for_empty_prompt``) instead of encoding "".
        A schedule interpolates the pooled embeddings between keys like the token embeddings.
        Weighted and long prompts go through compel (``encode_keys_xl``).
        """
        encoded = encode_keys_xl(pipe, [text for _, text in keys], device, do_cfg, options.negative_prompt or None)
        _, negative, _, negative_pooled = encoded[0]
        if len(keys) == 1:
            positive, pooled = encoded[0][0], encoded[0][2]
        else:
            frames = [frame for frame, _ in keys]
            mode, loop = options.prompt_interpolation, options.loop
            positive = interpolate_keys([(f, e[0][0]) for f, e in zip(frames, encoded)], options.frames, mode, loop)
            pooled = interpolate_keys([(f, e[2][0]) for f, e in zip(frames, encoded)], options.frames, mode, loop)
        if pipe.text_encoder_2 is None:
            projection_dim = int(pooled.shape[-1])
        else:
            projection_dim = pipe.text_encoder_2.config.projection_dim
        size = (options.height, options.width)
        time_ids = pipe._get_add_time_ids(
            size, (0, 0), size, dtype=positive.dtype, text_encoder_projection_dim=projection_dim
        ).to(device)
        added = AddedConditioning(
            text_embeds=pooled.to(device),
            negative_text_embeds=negative_pooled.to(device) if do_cfg else None,
            time_ids=time_ids,
            negative_time_ids=time_ids if do_cfg else None,
        )
        return positive, negative if do_cfg else None, added


def encode_keys_xl(pipe, texts: Sequence[str], device, do_cfg: bool, negative_prompt: str | None) -> list[tuple]:
    """SDXL's (embeds, negative embeds, pooled, negative pooled) per text, as ``encode_prompt`` returns.

    Plain prompts go through the pipeline's own ``encode_prompt``, bit for bit; when any text (or the
    negative prompt, under guidance) has weights or is over 77 tokens, all of them go through
    ``weighted_prompts.encode`` together (compel on both text encoders), padded to one length.
    """
    tokenizer = pipe.tokenizer if pipe.tokenizer is not None else pipe.tokenizer_2
    if weighted_prompts.needs_compel(tokenizer, [*texts, (negative_prompt or "") if do_cfg else ""]):
        weighted = weighted_prompts.encode(pipe, texts, negative_prompt, do_cfg, device)
        pooled = weighted.pooled or []
        return [
            (embeds, weighted.negative, pool, weighted.negative_pooled)
            for embeds, pool in zip(weighted.prompts, pooled)
        ]
    return [
        pipe.encode_prompt(
            prompt=text,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=do_cfg,
            negative_prompt=negative_prompt,
        )
        for text in texts
    ]


def family_of(pipe) -> StableDiffusion | StableDiffusionXL:
    """How to condition this loaded pipeline: SDXL when it has a second text encoder or ``text_time`` UNet."""
    if getattr(pipe, "text_encoder_2", None) is not None or pipe.unet.config.addition_embed_type == "text_time":
        return StableDiffusionXL()
    return StableDiffusion()


@contextlib.contextmanager
def vae_precision(pipe) -> Iterator[torch.dtype]:
    """The dtype to decode latents in: float32 for an SDXL VAE in float16 whose config says it
    overflows there (``force_upcast``), as the stock SDXL pipeline does; the VAE's own otherwise."""
    vae = pipe.vae
    if not (family_of(pipe).upcast_vae and vae.dtype == torch.float16 and vae.config.force_upcast):
        yield vae.dtype
        return
    vae.to(dtype=torch.float32)
    try:
        yield torch.float32
    finally:
        vae.to(dtype=torch.float16)
