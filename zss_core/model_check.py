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
KNOWN_WIDTHS = {768: "Stable Diffusion 1.x", 1024: "Stable Diffusion 2.x", 2048: "SDXL"}


class ModelMismatch(ValueError):
    """The model is not what ZS² needs; ``hint`` says what to use instead."""

    def __init__(self, message: str, hint: str, field: str = "model"):
        super().__init__(message)
        self.message, self.hint, self.field = message, hint, field


_SD1_HINT = "Choose a Stable Diffusion 1.x model (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5, Dreamlike Photoreal, Openjourney)."


def check_pipeline_config(unet_config, text_hidden_size: int, vae_latent_channels: int) -> None:
    """Raise ModelMismatch unless the loaded parts form an SD1.x-class text-to-image model."""
    width = unet_config.cross_attention_dim
    in_channels = unet_config.in_channels
    if getattr(unet_config, "addition_embed_type", None) == "text_time" or width == 2048:
        raise ModelMismatch(f"This is an SDXL model (cross-attention width {width}); ZS² here needs Stable Diffusion 1.x.",
                            _SD1_HINT)
    if in_channels == 9:
        raise ModelMismatch("This is an inpainting model (9 input channels); ZS² needs a text-to-image model "
                            "with 4 latent channels.", _SD1_HINT)
    if in_channels != 4 or vae_latent_channels != 4:
        raise ModelMismatch(f"The model has {in_channels} UNet input and {vae_latent_channels} VAE latent channels; "
                            "Stable Diffusion 1.x has 4.", _SD1_HINT)
    if width == 1024:
        raise ModelMismatch("This is a Stable Diffusion 2.x model (cross-attention width 1024); ZS² here needs "
                            "Stable Diffusion 1.x (width 768).", _SD1_HINT)
    if width != text_hidden_size:
        raise ModelMismatch(f"The UNet's cross-attention width ({width}) does not match the text encoder "
                            f"({text_hidden_size}): the model's parts do not belong together.", _SD1_HINT)


def check_controlnet_config(controlnet_config, unet_config) -> None:
    """Raise ModelMismatch unless the ControlNet was made for this kind of UNet."""
    found = KNOWN_WIDTHS.get(controlnet_config.cross_attention_dim, f"width {controlnet_config.cross_attention_dim}")
    if (controlnet_config.cross_attention_dim != unet_config.cross_attention_dim
            or tuple(controlnet_config.block_out_channels) != tuple(unet_config.block_out_channels)
            or controlnet_config.in_channels != unet_config.in_channels):
        raise ModelMismatch(f"The ControlNet does not match the model: it was made for {found}, "
                            f"the model is {KNOWN_WIDTHS.get(unet_config.cross_attention_dim, 'another kind')}.",
                            "Choose a depth ControlNet for SD1.x, e.g. lllyasviel/control_v11f1p_sd15_depth.",
                            "controlnet_model")


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


def inspect_checkpoint(path: str | Path, field: str = "model") -> str:
    """Classify a single-file checkpoint by its tensor names/shapes; raise ModelMismatch if unusable.

    Returns ``"sd1"``. Recognises LoRA files, SDXL, SD2 and inpainting checkpoints.
    """
    header = read_safetensors_header(path)
    names = list(header)
    if any("lora" in n.lower() for n in names[:2000]):
        raise ModelMismatch(f"'{Path(path).name}' is a LoRA (an add-on to a model), not a model.",
                            "Give the base Stable Diffusion 1.x model here; LoRAs are not supported yet.", field)
    if any(n.startswith("conditioner.embedders.") for n in names):
        raise ModelMismatch(f"'{Path(path).name}' is an SDXL checkpoint; ZS² here needs Stable Diffusion 1.x.",
                            _SD1_HINT, field)
    first = header.get("model.diffusion_model.input_blocks.0.0.weight")
    if first is not None and first["shape"][1] == 9:
        raise ModelMismatch(f"'{Path(path).name}' is an inpainting checkpoint (9 input channels).", _SD1_HINT, field)
    key = next((n for n in names if n.endswith("attn2.to_k.weight")), None)
    if key is not None:
        width = header[key]["shape"][-1]
        if width != SD1_WIDTH:
            kind = KNOWN_WIDTHS.get(width, f"a model with cross-attention width {width}")
            raise ModelMismatch(f"'{Path(path).name}' is {kind}; ZS² here needs Stable Diffusion 1.x (width 768).",
                                _SD1_HINT, field)
    return "sd1"
