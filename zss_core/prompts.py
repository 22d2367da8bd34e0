"""Prompt travel: a schedule of (frame, prompt) keys becomes one text embedding per frame.

Each key prompt is encoded once; frames between two keys get an interpolation of the two embeddings
(linear, or spherical — slerp keeps the embedding's norm, which linear mixing shrinks between
dissimilar prompts); frames before the first key or after the last hold that key's embedding.
A single prompt is the special case of one key, and the sampler then takes its old path untouched.
"""

from __future__ import annotations

from typing import Sequence

import torch

INTERPOLATIONS = ("linear", "slerp")


def normalize_schedule(prompt: str | Sequence, frames: int) -> list[tuple[int, str]]:
    """``"text"`` or ``[(frame, text), …]`` (0-based frames, any order) → sorted unique keys."""
    if isinstance(prompt, str):
        return [(0, prompt)]
    keys: dict[int, str] = {}
    for frame, text in prompt:
        frame = int(frame)
        if not 0 <= frame < frames:
            raise ValueError(f"prompt key at frame {frame} is outside the clip (frames 0..{frames - 1})")
        if frame in keys:
            raise ValueError(f"two prompts are keyed at frame {frame}")
        keys[frame] = str(text)
    if not keys:
        raise ValueError("the prompt schedule is empty")
    return sorted(keys.items())


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


def interpolate_keys(keys: Sequence[tuple[int, torch.Tensor]], frames: int, mode: str = "linear") -> torch.Tensor:
    """Per-frame embeddings (frames, tokens, width) from sorted (frame, embedding) keys."""
    if mode not in INTERPOLATIONS:
        raise ValueError(f"prompt interpolation must be one of {INTERPOLATIONS}, got {mode!r}")
    out = []
    for i in range(frames):
        if i <= keys[0][0]:
            out.append(keys[0][1])
        elif i >= keys[-1][0]:
            out.append(keys[-1][1])
        else:
            (fa, a), (fb, b) = next((ka, kb) for ka, kb in zip(keys, keys[1:]) if ka[0] <= i < kb[0])
            t = (i - fa) / (fb - fa)
            out.append(slerp(a, b, t) if mode == "slerp" else (1 - t) * a + t * b)
    return torch.stack(out)


def encode_schedule(pipe, schedule: Sequence[tuple[int, str]], frames: int, device, mode: str = "linear",
                    do_cfg: bool = True, negative_prompt: str = ""):
    """(per-frame prompt embeddings (frames, 77, d), negative embedding (1, 77, d) or None)."""
    keys, negative = [], None
    for frame, text in schedule:
        positive, negative = pipe.encode_prompt(text, device, 1, do_cfg, negative_prompt)
        keys.append((frame, positive[0]))
    return interpolate_keys(keys, frames, mode), negative
