"""Is this a Stable Diffusion 1.x model (and a matching ControlNet)? Checked before generating.

ZS² here targets SD1.x: 4 latent channels, one CLIP text encoder whose width the UNet's
cross-attention matches (768 for real SD1.x). Other models load with confusing errors deep inside
diffusers, or generate garbage; these checks name what was found and what is expected instead.

``inspect_checkpoint`` reads only the header of a ``.safetensors`` file (stdlib: JSON after an
8-byte length), so a LoRA, an SDXL or an inpainting checkpoint is recognised before anything loads.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

SD1_WIDTH = 768
UNET_PREFIX = "model.diffusion_model."  # every tensor of the UNet in an original (single-file) checkpoint
KNOWN_WIDTHS = {768: "Stable Diffusion 1.x", 1024: "Stable Diffusion 2.x", 2048: "SDXL"}


class ModelMismatch(ValueError):
    """The model is not what ZS² needs; ``hint`` says what to use instead."""

    def __init__(self, message: str, hint: str, field: str = "model"):
        super().__init__(message)
        self.message, self.hint, self.field = message, hint, field


_SD1_HINT = "Choose a Stable Diffusion 1.x model (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5, Dreamlike Photoreal, Openjourney)."


EDIT_CHANNELS = 8  # an InstructPix2Pix-class UNet: the latents' 4 channels + the edited frame's 4


def check_pipeline_config(unet_config, text_hidden_size: int, vae_latent_channels: int, edit: bool = False) -> None:
    """Raise ModelMismatch unless the loaded parts form an SD1.x-class text-to-image model, or with
    ``edit`` an SD1.x-class InstructPix2Pix (instruction editing) model; each only in its own mode."""
    width = unet_config.cross_attention_dim
    in_channels = unet_config.in_channels
    if in_channels == EDIT_CHANNELS and not edit:
        raise ModelMismatch(
            f"This is an instruction-editing model (InstructPix2Pix, {EDIT_CHANNELS} UNet input channels): it "
            "edits source frames and cannot make a clip from a prompt alone.",
            "Use it to edit a clip: zss generate --edit 'INSTRUCTION' --init FRAMES (a job with init and "
            "image_guidance), or choose a text-to-image Stable Diffusion 1.x model.",
        )
    if edit and in_channels != EDIT_CHANNELS:
        raise ModelMismatch(
            f"Instruction editing (--edit, image_guidance) needs an InstructPix2Pix-class model with "
            f"{EDIT_CHANNELS} UNet input channels; this one has {in_channels}.",
            "Choose an InstructPix2Pix model (e.g. timbrooks/instruct-pix2pix), or restyle with --init and "
            "--strength (no --edit) with this model.",
        )
    if edit:
        in_channels = vae_latent_channels  # the rest of the checks see the latents' channels
    if getattr(unet_config, "addition_embed_type", None) == "text_time" or width == 2048:
        raise ModelMismatch(
            f"This is an SDXL model (cross-attention width {width}); ZS² here needs Stable Diffusion 1.x.", _SD1_HINT
        )
    if in_channels == 9:
        raise ModelMismatch(
            "This is an inpainting model (9 input channels); ZS² needs a text-to-image model with 4 latent channels.",
            _SD1_HINT,
        )
    if in_channels != 4 or vae_latent_channels != 4:
        raise ModelMismatch(
            f"The model has {in_channels} UNet input and {vae_latent_channels} VAE latent channels; "
            "Stable Diffusion 1.x has 4.",
            _SD1_HINT,
        )
    if width == 1024:
        raise ModelMismatch(
            "This is a Stable Diffusion 2.x model (cross-attention width 1024); ZS² here needs "
            "Stable Diffusion 1.x (width 768).",
            _SD1_HINT,
        )
    if width != text_hidden_size:
        raise ModelMismatch(
            f"The UNet's cross-attention width ({width}) does not match the text encoder "
            f"({text_hidden_size}): the model's parts do not belong together.",
            _SD1_HINT,
        )


def check_controlnet_config(controlnet_config, unet_config) -> None:
    """Raise ModelMismatch unless the ControlNet was made for this kind of UNet."""
    found = KNOWN_WIDTHS.get(controlnet_config.cross_attention_dim, f"width {controlnet_config.cross_attention_dim}")
    if (
        controlnet_config.cross_attention_dim != unet_config.cross_attention_dim
        or tuple(controlnet_config.block_out_channels) != tuple(unet_config.block_out_channels)
        or controlnet_config.in_channels != unet_config.in_channels
    ):
        raise ModelMismatch(
            f"The ControlNet does not match the model: it was made for {found}, "
            f"the model is {KNOWN_WIDTHS.get(unet_config.cross_attention_dim, 'another kind')}.",
            "Choose a depth ControlNet for SD1.x, e.g. lllyasviel/control_v11f1p_sd15_depth.",
            "controlnet_model",
        )


def read_safetensors_header(path: str | Path) -> dict:
    """The tensor table of a .safetensors file (name → {dtype, shape, …}) without reading the weights."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) != 8:
            raise ValueError("file is too short to be a .safetensors file")
        (size,) = struct.unpack("<Q", head)
        if size > 100 * 1024 * 1024:
            raise ValueError("header length is implausible: not a .safetensors file")
        header = json.loads(handle.read(size))
    header.pop("__metadata__", None)
    return header


def inspect_checkpoint(path: str | Path, field: str = "model", unet: bool = False) -> str:
    """Classify a .safetensors checkpoint by its tensor names/shapes; raise ModelMismatch if unusable.

    Returns ``"sd1"``. Recognises LoRA files, SDXL, SD2 and inpainting checkpoints, and (``unet``: the
    file should be a whole model) files that hold no Stable Diffusion UNet at all.
    """
    header = read_safetensors_header(path)
    return classify_tensors(Path(path).name, {name: info["shape"] for name, info in header.items()}, field, unet)


def inspect_pickle_checkpoint(path: str | Path, field: str = "model", unet: bool = False) -> str:
    """``inspect_checkpoint`` for a .ckpt/.pt/.pth/.bin file, loaded with weights-only unpickling.

    Used to explain a pickle checkpoint that failed to load: a file torch cannot open, or one whose
    tensors are not a Stable Diffusion model, is named as such (not as a missing download).
    """
    import torch

    name = Path(path).name
    try:
        content = torch.load(path, map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except Exception as exc:  # unpickling errors come in many types; all mean "not a checkpoint we can read"
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise ModelMismatch(
            f"'{name}' is not a model file ZS² can read: torch cannot open it ({type(exc).__name__}: {detail}).",
            _NOT_A_MODEL_HINT,
            field,
        ) from exc
    state = content.get("state_dict", content) if isinstance(content, dict) else None
    if not isinstance(state, dict):
        raise ModelMismatch(
            f"'{name}' is not a model checkpoint: it holds a {type(content).__name__}, not a table of weights.",
            _NOT_A_MODEL_HINT,
            field,
        )
    shapes = {str(key): list(value.shape) for key, value in state.items() if hasattr(value, "shape")}
    return classify_tensors(name, shapes, field, unet)


def _is_zip(path: str | Path) -> bool:
    """torch's zip format can be memory-mapped (no full read); the legacy format cannot."""
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


_NOT_A_MODEL_HINT = (
    "Give a Stable Diffusion 1.x checkpoint (a .safetensors file, or a .ckpt with 'Allow legacy "
    "pickle checkpoints'), a diffusers model folder or a Hugging Face hub id."
)


def classify_tensors(name: str, shapes: dict[str, list[int]], field: str = "model", unet: bool = False) -> str:
    """What a single-file checkpoint is, from its tensor names and shapes: ``"sd1"`` or ModelMismatch.

    ``unet``: the file must hold a whole model (a UNet's tensors); a ControlNet file holds none.
    """
    names = list(shapes)
    if any("lora" in n.lower() for n in names[:2000]):
        raise ModelMismatch(
            f"'{name}' is a LoRA (an add-on to a model), not a model.",
            "Give the base Stable Diffusion 1.x model here; LoRAs are not supported yet.",
            field,
        )
    if any(n.startswith("conditioner.embedders.") for n in names):
        raise ModelMismatch(f"'{name}' is an SDXL checkpoint; ZS² here needs Stable Diffusion 1.x.", _SD1_HINT, field)
    if unet and not any(n.startswith(UNET_PREFIX) for n in names):
        found = f"{len(names)} tensors, none of them a UNet's ('{UNET_PREFIX}…')" if names else "no tensors"
        raise ModelMismatch(
            f"'{name}' is not a Stable Diffusion checkpoint ({found}): it is not a model ZS² can read.",
            _NOT_A_MODEL_HINT,
            field,
        )
    first = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if first is not None and first[1] == 9:
        raise ModelMismatch(f"'{name}' is an inpainting checkpoint (9 input channels).", _SD1_HINT, field)
    key = next((n for n in names if n.endswith("attn2.to_k.weight")), None)
    if key is not None:
        width = shapes[key][-1]
        if width != SD1_WIDTH:
            kind = KNOWN_WIDTHS.get(width, f"a model with cross-attention width {width}")
            raise ModelMismatch(
                f"'{name}' is {kind}; ZS² here needs Stable Diffusion 1.x (width 768).", _SD1_HINT, field
            )
    return "sd1"
