"""Prompt travel: a schedule of (frame, prompt) keys becomes one text embedding per frame.

Each key prompt is encoded once; frames between two keys get an interpolation of the two embeddings
(linear, or spherical — slerp keeps the embedding's norm, which linear mixing shrinks between
dissimilar prompts). Which keys each frame blends, and by how much, is ``schedule.prompt_blend``:
frames before the first key or after the last hold that key's embedding, except in a loop, where
they travel from the last key back to the first. A single prompt is the special case of one key,
and the sampler then takes its old path untouched.

Prompts with weights (``(word:1.3)``) or over 77 tokens are encoded by ``weighted_prompts`` (compel),
every key and the negative prompt together, padded to one length so the keys can be interpolated.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import weighted_prompts
from .defaults import PROMPT_INTERPOLATIONS as INTERPOLATIONS
from .schedule import normalize_schedule, prompt_blend

__all__ = ["INTERPOLATIONS", "encode_keys", "encode_schedule", "interpolate_keys", "normalize_schedule", "slerp"]


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation per token (last axis), falling back to linear for parallel vectors."""
    a32, b32 = a.float(), b.float()
    na, nb = a32.norm(dim=-1, keepdim=True), b32.norm(dim=-1, keepdim=True)
    cos = ((a32 / na.clamp_min(1e-8)) * (b32 / nb.clamp_min(1e-8))).sum(-1, keepdim=True).clamp(-1, 1)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    linear = (1 - t) * a32 + t * b32
    spherical = (torch.sin((1 - t) * omega) * a32 + torch.sin(t * omega) * b32) / sin.clamp_min(1e-8)
    return torch.where(sin > 1e-4, spherical, linear).to(a.dtype)


def interpolate_keys(
    keys: Sequence[tuple[int, torch.Tensor]], frames: int, mode: str = "linear", loop: bool = False
) -> torch.Tensor:
    """Per-frame embeddings (frames, tokens, width) from sorted (frame, embedding) keys.

    ``loop``: the frames after the last key blend back towards the first (``schedule.prompt_blend``).
    """
    if mode not in INTERPOLATIONS:
        raise ValueError(f"prompt interpolation must be one of {INTERPOLATIONS}, got {mode!r}")
    out = []
    for a, b, t in prompt_blend([frame for frame, _ in keys], frames, loop):
        first, second = keys[a][1], keys[b][1]
        if a == b:
            out.append(first)
        else:
            out.append(slerp(first, second, t) if mode == "slerp" else (1 - t) * first + t * second)
    return torch.stack(out)


def encode_keys(
    pipe, texts: Sequence[str], device, do_cfg: bool = True, negative_prompt: str = ""
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """(one (1, tokens, d) embedding per text, the negative embedding (1, tokens, d) or None).

    Plain prompts go through the pipeline's own ``encode_prompt``, as they always have; when any text
    (or the negative prompt, under guidance) has weights or is over 77 tokens, all of them go through
    ``weighted_prompts.encode`` together, so they come out with one length.
    """
    if weighted_prompts.needs_compel(pipe.tokenizer, [*texts, negative_prompt if do_cfg else ""]):
        encoded = weighted_prompts.encode(pipe, texts, negative_prompt, do_cfg, device)
        return encoded.prompts, encoded.negative
    positives, negative = [], None
    for text in texts:
        positive, negative = pipe.encode_prompt(text, device, 1, do_cfg, negative_prompt)
        positives.append(positive)
    return positives, negative


def encode_schedule(
    pipe,
    schedule: Sequence[tuple[int, str]],
    frames: int,
    device,
    mode: str = "linear",
    do_cfg: bool = True,
    negative_prompt: str = "",
    loop: bool = False,
):
    """(per-frame prompt embeddings (frames, tokens, d), negative embedding (1, tokens, d) or None);
    tokens is 77, or a multiple of it for long prompts."""
    positives, negative = encode_keys(pipe, [text for _, text in schedule], device, do_cfg, negative_prompt)
    keys = [(frame, positive[0]) for (frame, _), positive in zip(schedule, positives)]
    return interpolate_keys(keys, frames, mode, loop), negative
