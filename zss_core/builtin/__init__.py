"""Built-in models shipped inside the package (issue 7): a small texture diffusion model of the SD 1.x
architecture, trained on procedural animated-texture families by ``make train-textures`` (see train/).

* ``textures/``: a diffusers ``StableDiffusionPipeline`` folder (AutoencoderKL with a VAE factor of 4 —
  64×64 images ↔ 16×16×4 latents —, UNet2DConditionModel with self- and cross-attention, a 2-layer CLIP
  text encoder with a word-level tokenizer over the caption vocabulary, DDIM scaled_linear schedule).
* ``textures-depth/``: a matching depth ControlNet (control image: a height map, white = high).
* ``classifier/``: a small CNN with family and colour heads, the offline stand-in for a CLIP score
  (``zss_core.builtin.classifier``).

``builtin_path("builtin:textures")`` gives the folder to pass to ``from_pretrained``; names are listed in
``BUILTIN_MODELS``. Prompts the model knows: "<colour> <family>", e.g. "blue marble veins"; colours and
families are in ``FAMILIES``/``COLOURS`` below.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
PREFIX = "builtin:"

# name → (folder, what it is: "pipeline" or "controlnet")
BUILTIN_MODELS = {
    "textures": (HERE / "textures", "pipeline"),
    "textures-depth": (HERE / "textures-depth", "controlnet"),
}

FAMILIES = ("clouds", "cells", "marble", "wood", "ripples", "stripes", "bricks", "spots")
FAMILY_WORDS = (
    "fbm clouds",
    "voronoi cells",
    "marble veins",
    "wood rings",
    "water ripples",
    "turbulent stripes",
    "brick wall",
    "reaction diffusion spots",
)
COLOURS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "grey")


def is_builtin(spec: str | None) -> bool:
    return bool(spec) and spec.startswith(PREFIX)


def builtin_path(spec: str) -> Path:
    """The folder of a built-in model: ``"builtin:textures"`` (or ``"textures"``) → its diffusers folder.

    Raises KeyError for an unknown name and FileNotFoundError when the weights are not installed.
    """
    name = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
    if name not in BUILTIN_MODELS:
        raise KeyError(f"unknown built-in model {spec!r}; known: {', '.join(PREFIX + n for n in BUILTIN_MODELS)}")
    folder, _ = BUILTIN_MODELS[name]
    if not any(folder.glob("**/*.safetensors")):
        raise FileNotFoundError(
            f"the weights of {PREFIX}{name} are not installed in {folder} (run `make train-textures`)"
        )
    return folder


def available() -> list[str]:
    """Names ("builtin:…") whose weights are present."""
    return [PREFIX + n for n, (folder, _) in BUILTIN_MODELS.items() if any(folder.glob("**/*.safetensors"))]
