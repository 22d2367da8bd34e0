"""Which Stable Diffusion family is this model (and does its ControlNet match)? Checked before loading.

ZS² runs on three families, each with 4 latent channels and a diffusers ``UNet2DConditionModel``:

* ``sd1`` — Stable Diffusion 1.x: one OpenAI CLIP text encoder, cross-attention width 768, 512².
* ``sd2`` — Stable Diffusion 2.x: one OpenCLIP-H text encoder, width 1024, linear projections in its
  transformers; the 512 base predicts noise (ε), the 768 model velocity (v). Which one is the
  scheduler config's ``prediction_type``; the loaded scheduler keeps it.
* ``sdxl`` — SDXL (base, fine-tunes, Turbo): two text encoders (CLIP-L and OpenCLIP-bigG, width
  768 + 1280 = 2048), pooled text and size/crop conditioning (``addition_embed_type="text_time"``), 1024².

Refused with a message naming what was found: inpainting models (9 input channels), InstructPix2Pix
(8: it edits an image by instruction, which is not this mode), the SDXL refiner (img2img only), LoRAs,
files without a UNet. Families are told apart by structure, not only by the real models' widths, so
that tiny random-weight test models of each family are recognised like the real ones.

``inspect_checkpoint`` reads only the header of a ``.safetensors`` file (stdlib: JSON after an
8-byte length), ``read_folder_family`` only a diffusers folder's JSON configs, so the family is known
before anything loads and the right pipeline class is chosen. A single file does not always say
whether an SD 2.x model predicts ε or v: diffusers configures every SD 2.x single file from
stabilityai/stable-diffusion-2-1 (768, v-prediction), and so does ZS² (``prediction_type`` None in the
file's family: "as the loader decides"); the 512 ε base is best given as a diffusers folder or hub id.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

UNET_PREFIX = "model.diffusion_model."  # every tensor of the UNet in an original (single-file) checkpoint
KNOWN_WIDTHS = {768: "sd1", 1024: "sd2", 2048: "sdxl"}  # cross-attention width of the real models
LABELS = {
    "sd1": "Stable Diffusion 1.x",
    "sd2": "Stable Diffusion 2.x",
    "sdxl": "SDXL",
    "inpaint": "an inpainting model",
    "ip2p": "an InstructPix2Pix (instruction editing) model",
    "sdxl-refiner": "the SDXL refiner",
}
SUPPORTED = ("sd1", "sd2", "sdxl")  # what text-to-video and depth ControlNet run on
SUPPORTED_TEXT = "Stable Diffusion 1.x, 2.x or SDXL"
DEFAULT_SIZES = {"sd1": 512, "sd2": 512, "sdxl": 1024}  # sd2 with v-prediction: 768 (ModelFamily)


@dataclass(frozen=True)
class ModelFamily:
    """What the model check found: the family's name and, where known, what the UNet predicts."""

    name: str
    prediction_type: str | None = None  # "epsilon", "v_prediction"; None: not in the file, the loader decides

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)

    @property
    def supported(self) -> bool:
        return self.name in SUPPORTED

    @property
    def default_size(self) -> int:
        """The square frame size the family was trained at: 512² (SD1, SD2 base), 768² (SD2 v), 1024² (SDXL)."""
        if self.name == "sd2" and self.prediction_type in (None, "v_prediction"):
            return 768  # single files get the 768-v config (see the module doc)
        return DEFAULT_SIZES.get(self.name, 512)

    def describe(self) -> str:
        if self.name == "sd2" and self.prediction_type is not None:
            kind = "v-prediction, 768" if self.prediction_type == "v_prediction" else "ε-prediction, 512"
            return f"{self.label} ({kind})"
        return self.label


class ModelMismatch(ValueError):
    """The model is not what ZS² needs; ``hint`` says what to use instead."""

    def __init__(self, message: str, hint: str, field: str = "model"):
        super().__init__(message)
        self.message, self.hint, self.field = message, hint, field


_HINT = (
    "Choose a Stable Diffusion 1.x, 2.x or SDXL text-to-image model (e.g. stable-diffusion-v1-5/"
    "stable-diffusion-v1-5, stabilityai/stable-diffusion-2-1, stabilityai/stable-diffusion-xl-base-1.0)."
)
_CONTROLNET_HINTS = {
    "sd1": "lllyasviel/control_v11f1p_sd15_depth",
    "sd2": "thibaud/controlnet-sd21-depth-diffusers",
    "sdxl": "diffusers/controlnet-depth-sdxl-1.0",
}
_WHY_REFUSED = {
    "inpaint": "it fills masked areas of an image (9 UNet input channels), which text-to-video does not do",
    "ip2p": "it edits an image by instruction (8 UNet input channels); text-to-video and depth do not "
    "support it, only instruction editing of source frames (--edit) does",
    "sdxl-refiner": "it only refines SDXL images (img2img), it cannot start from noise",
}


EDIT_CHANNELS = 8  # an InstructPix2Pix UNet's input: the latents' 4 channels and the edited frame's 4
_EDIT_HINT = (
    "Use it to edit a clip: zss generate --edit 'INSTRUCTION' --init FRAMES (a job with init and "
    "image_guidance), or choose a text-to-image model."
)


def check_family(family: ModelFamily, field: str = "model", name: str = "", edit: bool = False) -> None:
    """Raise ModelMismatch naming the family unless text-to-video (and depth) supports it; with ``edit``
    (instruction editing, issue 17) unless it is InstructPix2Pix, the one family that mode runs."""
    what = f"'{name}'" if name else "This model"
    if edit:
        if family.name != "ip2p":
            raise ModelMismatch(
                f"Instruction editing (--edit, image_guidance) needs an InstructPix2Pix-class model "
                f"({EDIT_CHANNELS} UNet input channels); {what.lower() if not name else what} is {family.label}.",
                "Choose an InstructPix2Pix model (e.g. timbrooks/instruct-pix2pix), or restyle with --init and "
                "--strength (no --edit) with this model.",
                field,
            )
        return
    if family.supported:
        return
    why = _WHY_REFUSED.get(family.name, "it is not a model ZS² can run")
    hint = _EDIT_HINT if family.name == "ip2p" else _HINT
    raise ModelMismatch(f"{what} is {family.label}: {why}. Supported: {SUPPORTED_TEXT}.", hint, field)


def family_from_configs(
    unet_config: Mapping, scheduler_config: Mapping | None = None, model_index: Mapping | None = None
) -> ModelFamily:
    """The family of a diffusers model from its UNet config (and scheduler config, model_index.json).

    Structure decides, as in the real models: 9 input channels inpainting, 8 InstructPix2Pix,
    ``text_time`` additional embeddings SDXL (without the first text encoder: the refiner), linear
    transformer projections or width 1024 SD 2.x, otherwise SD 1.x.
    """
    prediction = (scheduler_config or {}).get("prediction_type", "epsilon")
    in_channels = unet_config.get("in_channels", 4)
    if in_channels == 9:
        return ModelFamily("inpaint", prediction)
    if in_channels == 8:
        return ModelFamily("ip2p", prediction)
    if unet_config.get("addition_embed_type") == "text_time":
        if model_index is not None and _component_missing(model_index, "text_encoder"):
            return ModelFamily("sdxl-refiner", prediction)
        return ModelFamily("sdxl", prediction)
    if unet_config.get("cross_attention_dim") == 1024 or unet_config.get("use_linear_projection"):
        return ModelFamily("sd2", prediction)
    return ModelFamily("sd1", prediction)


def _component_missing(model_index: Mapping, name: str) -> bool:
    entry = model_index.get(name)
    return not entry or entry[0] is None


def controlnet_family(controlnet_config: Mapping) -> str:
    """The family a ControlNet was made for, from its config (the same structure as its UNet's)."""
    return family_from_configs({**controlnet_config, "in_channels": 4}).name


def read_folder_family(folder: str | Path) -> ModelFamily:
    """The family of a diffusers model folder from its JSON configs alone (nothing is loaded)."""
    folder = Path(folder)
    unet = _read_json(folder / "unet" / "config.json")
    if unet is None:
        raise ModelMismatch(
            f"'{folder}' has no unet/config.json: it is not a diffusers Stable Diffusion folder.",
            "Give a diffusers model folder (with model_index.json, unet/, vae/, text_encoder/), "
            "a .safetensors checkpoint or a hub id.",
        )
    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
    return family_from_configs(unet, scheduler, _read_json(folder / "model_index.json"))


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def check_pipeline_config(
    unet_config, text_hidden_size: int, vae_latent_channels: int, edit: bool = False
) -> ModelFamily:
    """The family of the loaded parts; raise ModelMismatch unless text-to-video supports it (with
    ``edit``: unless it is an InstructPix2Pix model, whose UNet takes 8 channels).

    ``text_hidden_size``: the width of the text encoder(s) (SDXL: both together), which the UNet's
    cross-attention must match.
    """
    family = family_from_configs(dict(unet_config))
    check_family(family, edit=edit)
    if edit and getattr(unet_config, "addition_embed_type", None) == "text_time":
        raise ModelMismatch(
            "This is an SDXL InstructPix2Pix model; instruction editing runs Stable Diffusion 1.x-class "
            "InstructPix2Pix models (e.g. timbrooks/instruct-pix2pix).",
            "Choose an SD 1.x InstructPix2Pix model, or restyle with --init and --strength (no --edit).",
        )
    width = unet_config.cross_attention_dim
    if unet_config.in_channels != (EDIT_CHANNELS if edit else 4) or vae_latent_channels != 4:
        raise ModelMismatch(
            f"The model has {unet_config.in_channels} UNet input and {vae_latent_channels} VAE latent channels; "
            f"{SUPPORTED_TEXT} has 4.",
            _HINT,
        )
    if width != text_hidden_size:
        raise ModelMismatch(
            f"The UNet's cross-attention width ({width}) does not match the text encoder "
            f"({text_hidden_size}): the model's parts do not belong together.",
            _HINT,
        )
    return family


def check_controlnet_config(controlnet_config, unet_config) -> None:
    """Raise ModelMismatch unless the ControlNet was made for this kind of UNet (naming both families)."""
    made_for = LABELS[controlnet_family(dict(controlnet_config))]
    base_family = family_from_configs(dict(unet_config)).name
    base = LABELS[base_family]
    if made_for != base:
        raise ModelMismatch(
            f"The ControlNet does not match the model: it was made for {made_for}, the model is {base}.",
            f"Choose a depth ControlNet for {base}, e.g. {_CONTROLNET_HINTS.get(base_family, '')}.",
            "controlnet_model",
        )
    if (
        controlnet_config.cross_attention_dim != unet_config.cross_attention_dim
        or tuple(controlnet_config.block_out_channels) != tuple(unet_config.block_out_channels)
        or controlnet_config.in_channels != unet_config.in_channels
    ):
        raise ModelMismatch(
            f"The ControlNet does not match the model: both are {base}, but of different sizes (cross-attention "
            f"width {controlnet_config.cross_attention_dim} vs {unet_config.cross_attention_dim}, blocks "
            f"{tuple(controlnet_config.block_out_channels)} vs {tuple(unet_config.block_out_channels)}).",
            f"Choose a depth ControlNet made for this model's family, e.g. {_CONTROLNET_HINTS.get(base_family, '')}.",
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
    """The family name of a .safetensors checkpoint from its tensor names/shapes (``tensor_family``).

    Raises ModelMismatch for what text-to-video cannot run: LoRA files, inpainting, InstructPix2Pix and
    SDXL refiner checkpoints, and (``unet``: the file should be a whole model) files with no UNet.
    """
    header = read_safetensors_header(path)
    return classify_tensors(Path(path).name, {name: info["shape"] for name, info in header.items()}, field, unet)


def inspect_pickle_checkpoint(path: str | Path, field: str = "model", unet: bool = False) -> str:
    """``inspect_checkpoint`` for a .ckpt/.pt/.pth/.bin file, loaded with weights-only unpickling.

    Used to pick the pipeline class for an allowed pickle checkpoint (a zip-format file is memory-mapped,
    not read) and to explain one that failed to load: a file torch cannot open, or one whose tensors
    are not a Stable Diffusion model, is named as such (not as a missing download).
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
    f"Give a {SUPPORTED_TEXT} checkpoint (a .safetensors file, or a .ckpt with 'Allow legacy "
    "pickle checkpoints'), a diffusers model folder or a Hugging Face hub id."
)


def classify_tensors(name: str, shapes: dict[str, list[int]], field: str = "model", unet: bool = False) -> str:
    """The family name (``"sd1"``, ``"sd2"``, ``"sdxl"``) of a single-file checkpoint, or ModelMismatch.

    ``unet``: the file must hold a whole model (a UNet's tensors); a ControlNet file holds none.
    """
    family = tensor_family(name, shapes, field, unet)
    check_family(family, field, name)
    return family.name


def tensor_family(name: str, shapes: Mapping[str, list[int]], field: str = "model", unet: bool = False) -> ModelFamily:
    """The family of a checkpoint from its tensor names and shapes, the keys diffusers' single-file
    loader itself reads (``infer_diffusers_model_type``): the first UNet convolution's input channels,
    SDXL's second text encoder (``conditioner.embedders.1``) or added embeddings, the cross-attention
    width (768 SD 1.x, 1024 SD 2.x, 2048 SDXL). Raises ModelMismatch for LoRAs and UNet-less files.
    """
    names = list(shapes)
    if any("lora" in n.lower() for n in names[:2000]):
        raise ModelMismatch(
            f"'{name}' is a LoRA (an add-on to a model), not a model.",
            f"Give the base {SUPPORTED_TEXT} model here, and the LoRA as a LoRA (job field loras, "
            "`zss generate --lora FILE`, the panel's LoRAs list).",
            field,
        )
    if unet and not any(n.startswith(UNET_PREFIX) for n in names):
        found = f"{len(names)} tensors, none of them a UNet's ('{UNET_PREFIX}…')" if names else "no tensors"
        raise ModelMismatch(
            f"'{name}' is not a Stable Diffusion checkpoint ({found}): it is not a model ZS² can read.",
            _NOT_A_MODEL_HINT,
            field,
        )
    first = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if first is not None and first[1] in (8, 9):
        return ModelFamily("inpaint" if first[1] == 9 else "ip2p")
    if any(n.startswith("conditioner.embedders.0.model.") for n in names) and not any(
        n.startswith("conditioner.embedders.1.") for n in names
    ):
        return ModelFamily("sdxl-refiner")
    sdxl_keys = ("conditioner.embedders.", UNET_PREFIX + "label_emb.", "add_embedding.")
    if any(n.startswith(sdxl_keys) for n in names):
        return ModelFamily("sdxl")
    key = next((n for n in names if n.endswith("attn2.to_k.weight")), None)
    if key is None:
        return ModelFamily("sd1")
    width = shapes[key][-1]
    if width not in KNOWN_WIDTHS:
        raise ModelMismatch(
            f"'{name}' has cross-attention width {width}, which is none of {SUPPORTED_TEXT} (768, 1024, 2048).",
            _HINT,
            field,
        )
    return ModelFamily(KNOWN_WIDTHS[width])


def local_family(model: str) -> ModelFamily | None:
    """The family of a local model (a diffusers folder or a ``.safetensors`` file) from its configs or
    header; None where that cannot be known here (hub ids, pickle files, built-in names) or the model is
    unusable (loading it then says why). Stdlib only: the add-on calls it too (zss_blender/family.py)."""
    path = Path(model).expanduser()
    try:
        if path.is_dir():
            return read_folder_family(path)
        if path.is_file() and path.suffix.lower() == ".safetensors":
            header = read_safetensors_header(path)
            return tensor_family(path.name, {name: info["shape"] for name, info in header.items()})
    except (ModelMismatch, OSError, ValueError):  # not a readable model: the load reports it with its hint
        return None
    return None


def local_default_size(model: str) -> int | None:
    """The square frame size of a local model's family (``local_family``); None where it is not known
    or the family is not supported."""
    family = local_family(model)
    return family.default_size if family is not None and family.supported else None
