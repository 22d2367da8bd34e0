"""Per-frame schedules of a clip: λ and μ per frame, and which prompt keys each frame blends.

One definition shared by the protocol (validation and ``Job``), the engine (noise, attention, prompt
embeddings) and the Blender add-on (its panel shows what a job will do). Standard library only:
Blender's Python imports it and has no torch or numpy.

Conventions (docs/algorithm.md ▸ Per-frame values): frames are 0-based; a per-frame value list has one
entry per frame (entry 0 belongs to the first frame, which has no predecessor) or one per transition
(entry i applies between frame i and frame i + 1).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

Number = float | int
Values = Number | Sequence[Number]
PromptKeys = list[tuple[int, str]]


def per_frame(values: Values, frames: int, name: str) -> list[float]:
    """Expand a scalar or a per-frame sequence (λ, μ) into a list of length ``frames``.

    A sequence of length ``frames`` is taken as is, except entry 0: it belongs to the first frame,
    which has no predecessor, and becomes 0.0; a sequence of length ``frames − 1`` holds the
    transitions (entry i applies between frame i and frame i+1) and gets a leading 0.0.
    """
    if isinstance(values, (int, float)):
        return [0.0] + [float(values)] * (frames - 1) if frames > 0 else []
    floats = [float(v) for v in values]
    if len(floats) == frames:
        return [0.0, *floats[1:]] if frames > 0 else []
    if len(floats) == frames - 1:
        return [0.0, *floats]
    raise ValueError(f"{name} must be a number or a list of {frames} or {frames - 1} values, got {len(floats)}")


def mu_list(mu: Values, frames: int) -> list[float]:
    """μ per frame (entry 0 unused: the first frame has no history), each checked to lie in [0, 1]."""
    values = per_frame(mu, frames, "mu")
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"mu must lie in [0, 1], got {bad[0]}")
    return values


def loop_mu_list(mu: Values, frames: int) -> list[float]:
    """μ per frame for loop mode, where entry 0 is the wrap transition (frame m − 1 → frame 0):
    ``mu[0]`` for a list of length ``frames``, else the mean of the other transitions."""
    values = mu_list(mu, frames)
    if isinstance(mu, Sequence) and len(mu) == frames:
        values[0] = float(mu[0])
        if not 0.0 <= values[0] <= 1.0:
            raise ValueError(f"mu must lie in [0, 1], got {values[0]}")
    elif frames > 1:
        values[0] = sum(values[1:]) / (frames - 1)
    return values


# --------------------------------------------------------------------------------- prompt schedules


def prompt_keys(prompt: str, keys: Sequence[dict] | None) -> PromptKeys:
    """A job's prompt keys, sorted: ``keys`` ({"frame", "prompt"} dicts) with ``prompt`` at frame 0
    unless a key is already there. Without keys it is the single prompt — the simple case."""
    table = {int(k["frame"]): str(k["prompt"]) for k in keys or ()}
    table.setdefault(0, prompt)
    return sorted(table.items())


def normalize_schedule(prompt: str | Sequence[tuple[int, str]], frames: int) -> PromptKeys:
    """``"text"`` or ``[(frame, text), …]`` (0-based frames, any order) → sorted unique keys."""
    if isinstance(prompt, str):
        return [(0, prompt)]
    table: dict[int, str] = {}
    for frame, text in prompt:
        frame = int(frame)
        if not 0 <= frame < frames:
            raise ValueError(f"prompt key at frame {frame} is outside the clip (frames 0..{frames - 1})")
        if frame in table:
            raise ValueError(f"two prompts are keyed at frame {frame}")
        table[frame] = str(text)
    if not table:
        raise ValueError("the prompt schedule is empty")
    return sorted(table.items())


def prompt_blend(key_frames: Sequence[int], frames: int, loop: bool = False) -> list[tuple[int, int, float]]:
    """For each frame, ``(a, b, t)``: its prompt is key ``a`` blended towards key ``b`` by ``t`` ∈ [0, 1).

    ``key_frames`` are the keys' frames, sorted and unique. A frame on a key or between two keys
    blends them linearly by its position. Outside the keys, a clip holds the nearest key (``a == b``);
    a loop (``loop=True``) instead wraps: the frames after the last key travel towards the first key,
    which comes back ``frames`` later (at frame ``frames`` = frame 0 of the next cycle when the first
    key is at 0), so the prompt is as continuous across the wrap as between the keys. (Keys on the
    last frame and on frame 0 are one frame apart around the loop: that wrap is a cut, as asked for.)
    """
    if not key_frames:
        raise ValueError("the prompt schedule is empty")
    first, end, last = key_frames[0], key_frames[-1], len(key_frames) - 1
    out = []
    for i in range(frames):
        if first < i < end:
            a = bisect.bisect_right(key_frames, i) - 1
            fa, fb = key_frames[a], key_frames[a + 1]
            out.append((a, a + 1, (i - fa) / (fb - fa)))
        elif i in (first, end) or not loop or first == end:
            hold = 0 if i <= first else last
            out.append((hold, hold, 0.0))
        else:  # the wrap segment: from the last key to the first key of the next cycle
            unwrapped = i if i > end else i + frames
            out.append((last, 0, (unwrapped - end) / (first + frames - end)))
    return out


def prompt_weights(key_frames: Sequence[int], frames: int, loop: bool = False) -> list[list[float]]:
    """Per frame, the weight of each key in its prompt (rows sum to 1): ``prompt_blend`` as a matrix."""
    rows = []
    for a, b, t in prompt_blend(key_frames, frames, loop):
        row = [0.0] * len(key_frames)
        row[a] += 1.0 - t
        row[b] += t
        rows.append(row)
    return rows
