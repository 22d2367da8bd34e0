"""Presets: one name for a set of job fields that only work together (few-step drafts, Turbo models).

A few-step model gives a rough clip in 4–8 (LCM) or 1–4 (Turbo) steps instead of 30, but only with
its scheduler and a low guidance scale; a regular checkpoint becomes such a model with an LCM-LoRA.
Getting all of that right by hand is error-prone, so a preset sets it in one go. The CLI
(``--preset``) and the Blender add-on (Scene.zss.preset) both expand the preset into ordinary job
fields with ``expand`` when the job is built: the worker and the protocol never see a preset.
Standard library only: Blender's Python imports it.

``PRESETS`` is the one table. Each entry gives:

* ``fields``: the job fields it sets (steps, guidance, scheduler);
* ``steps`` / ``guidance``: the ranges it allows. A value the user gave explicitly (CLI flags) is
  kept when it lies in the range and refused when not; otherwise ``fields`` decides;
* ``schedulers``: the schedulers it allows (the first is its own; e.g. a TCD or Hyper-SD LoRA wants
  ``tcd`` or ``ddim-trailing`` instead of LCM);
* ``lora``: whether it takes the draft LoRA (``--draft-lora`` / the ``draft_lora`` preference), which
  ``expand`` appends to the job's ``loras`` at weight 1;
* ``needs``: what it needs, in words (README ▸ Drafts, the panel, error messages).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    label: str
    fields: dict[str, Any]
    steps: tuple[int, int]  # inclusive range
    guidance: tuple[float, float]  # inclusive range
    schedulers: tuple[str, ...]
    lora: bool
    needs: str

    def summary(self) -> str:
        """One line for the panel and the CLI: what the preset runs."""
        f = self.fields
        return f"{f['steps']} steps, {f['scheduler']}, guidance {f['guidance']:g}" + (
            " + draft LoRA" if self.lora else ""
        )


PRESETS: dict[str, Preset] = {
    "draft": Preset(
        name="draft",
        label="Draft",
        fields={"steps": 6, "guidance": 1.0, "scheduler": "lcm"},
        steps=(4, 8),
        guidance=(1.0, 1.5),
        schedulers=("lcm", "tcd", "ddim-trailing", "euler-trailing"),
        lora=True,
        needs="an LCM-LoRA for the model's family (a .safetensors file or a hub id such as "
        "latent-consistency/lcm-lora-sdv1-5), or a model that is already LCM-distilled",
    ),
    "turbo": Preset(
        name="turbo",
        label="Turbo",
        fields={"steps": 1, "guidance": 0.0, "scheduler": "euler-trailing"},
        steps=(1, 4),
        guidance=(0.0, 0.0),
        schedulers=("euler-trailing", "ddim-trailing"),
        lora=False,
        needs="a Turbo model (adversarially distilled: SD-Turbo, SDXL-Turbo); guidance stays off",
    ),
}
NAMES = ("none", *PRESETS)  # what --preset and the panel offer; "none" leaves the job as it is


class PresetError(ValueError):
    """A preset that cannot be applied as asked; ``field`` names the job field (or option) at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def expand(job: dict, name: str, explicit: Iterable[str] = (), draft_lora: str = "") -> dict:
    """``job`` with preset ``name`` applied: a new dict (``job`` is not changed).

    ``explicit``: the fields the user set on purpose (kept when the preset allows their value, a
    PresetError otherwise). ``draft_lora``: a LoRA file or hub id for a preset that takes one ("" for
    none); a preset that takes none refuses it.
    """
    if name == "none":
        if draft_lora:
            raise PresetError("draft_lora", "a draft LoRA is only used with the draft preset")
        return dict(job)
    if name not in PRESETS:
        raise PresetError("preset", f"preset must be one of {', '.join(NAMES)}, got {name!r}")
    preset = PRESETS[name]
    explicit = set(explicit)
    out = dict(job)
    for field, value in preset.fields.items():
        if field not in explicit or field not in job:
            out[field] = value
    problem = _outside(preset, out)
    if problem is not None:
        raise PresetError(*problem)
    if draft_lora:
        if not preset.lora:
            raise PresetError("draft_lora", f"the {name} preset takes no draft LoRA (it needs {preset.needs})")
        out["loras"] = [*(job.get("loras") or []), {"path": draft_lora, "weight": 1.0}]
    return out


def matching(job: dict) -> str:
    """The preset whose own fields a job has exactly (a clip made with it, shown again in the panel), or "none"."""
    for name, preset in PRESETS.items():
        if all(job.get(field) == value for field, value in preset.fields.items()):
            return name
    return "none"


def _outside(preset: Preset, job: dict) -> tuple[str, str] | None:
    """(field, message) for the first field outside the preset's ranges, or None."""
    low, high = preset.steps
    if not low <= job["steps"] <= high:
        return "steps", f"the {preset.name} preset runs {low} to {high} steps, got {job['steps']}"
    low_g, high_g = preset.guidance
    if not low_g <= job["guidance"] <= high_g:
        allowed = f"{low_g:g}" if low_g == high_g else f"{low_g:g} to {high_g:g}"
        return "guidance", f"the {preset.name} preset runs at guidance {allowed}, got {job['guidance']:g}"
    if job["scheduler"] not in preset.schedulers:
        return (
            "scheduler",
            f"the {preset.name} preset runs with {', '.join(preset.schedulers)}, got {job['scheduler']}",
        )
    return None
