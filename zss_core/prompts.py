"""Prompt travel: a schedule of (frame, prompt) keys becomes one text embedding per frame.

Each key prompt is encoded once; frames between two keys get an interpolation of the two embeddings
(linear, or spherical — slerp keeps the embedding's norm, which linear mixing shrinks between
dissimilar prompts). Which keys each frame blends, and by how much, is ``schedule.prompt_blend``:
frames before the first key or after the last hold that key's embedding, except in a loop, where
they travel from the last key back to the first. A single prompt is the special case of one key,
and the sampler then takes its old path untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .defaults import PROMPT_INTERPOLATIONS as INTERPOLATIONS
from .schedule import normalize_schedule, prompt_blend

__all__ = ["INTERPOLATIONS", "encode_schedule", "interpolate_keys", "normalize_schedule", "slerp"]


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
    """(per-frame prompt embeddings (frames, 77, d), negative embedding (1, 77, d) or None)."""
    keys, negative = [], None
    for frame, text in schedule:
        positive, negative = pipe.encode_prompt(text, device, 1, do_cfg, negative_prompt)
        keys.append((frame, positive[0]))
    return interpolate_keys(keys, frames, mode, loop), negative
