"""Loading Stable Diffusion 1.x, 2.x and SDXL pipelines (and depth ControlNets) from folders, files or hub ids.

One entry point, ``load_pipeline``, serves every kind of model source so that tests (tiny models
saved with ``save_pretrained``) and users (real checkpoints) go through the same code. The model's
family (``model_check``: from its JSON configs or its file header, before loading) picks the pipeline
class — ``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline`` and their ControlNet variants —
and diffusers' own ``from_pretrained`` / ``from_single_file`` of that class load it. Failures are
raised as ``ModelError`` subclasses whose message says what went wrong and whose ``hint`` says what
to do, so the worker and the CLI can show them as they are.

``build_tiny_pipeline`` builds a tiny SD (and ControlNet) with random weights and a locally written
byte-level tokenizer: no downloads, a few MB, fast on a CPU. It is for tests and the offline demo;
its frames are coloured noise, not pictures.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)
# transformers logs "... requires torchvision" for image processors that SD pipelines never use; every
# `zss generate` printed it twice. Only that message is dropped.
logging.getLogger("transformers.utils.import_utils").addFilter(lambda r: "requires torchvision" not in r.getMessage())

TINY = "tiny"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class ModelError(RuntimeError):
    """A model could not be loaded; ``code`` is a protocol error code, ``hint`` says what to do."""

    code = "model_load_failed"

    def __init__(self, message: str, hint: str = "", field: str = "model"):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.field = field  # the job field to fix: "model" or "controlnet_model"


class ModelNotFound(ModelError):
    code = "model_not_found"


class ModelIncompatible(ModelError):
    """Not a model this mode runs (inpainting, InstructPix2Pix, a LoRA, a ControlNet of another family)."""

    code = "model_incompatible"


# ---------------------------------------------------------------------------------------------
# Device and precision


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA if present, else Apple MPS, else CPU."""
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(
            f"Device '{device}' was asked for but CUDA is not available.",
            "Choose 'auto' or 'cpu', or install a CUDA build of torch in the generator environment.",
        )
    return resolved


def resolve_dtype(dtype: str = "auto", device: torch.device | None = None) -> torch.dtype:
    """``auto``: fp16 on CUDA and MPS (halves memory, same quality for SD1.x), fp32 on CPU."""
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype in names:
        return names[dtype]
    if dtype not in (None, "", "auto"):
        raise ValueError(f"dtype must be auto, float32, float16 or bfloat16, got {dtype!r}")
    device = device or resolve_device()
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


# ---------------------------------------------------------------------------------------------
# Schedulers


def _scheduler_classes():
    import diffusers

    return {
        "ddim": diffusers.DDIMScheduler,
        "euler": diffusers.EulerDiscreteScheduler,
        "euler_a": diffusers.EulerAncestralDiscreteScheduler,
        "dpmpp": diffusers.DPMSolverMultistepScheduler,
        "pndm": diffusers.PNDMScheduler,
        "lms": diffusers.LMSDiscreteScheduler,
        "unipc": diffusers.UniPCMultistepScheduler,
        # Few-step schedulers (drafts, zss_core/presets.py): LCM for LCM-LoRAs and LCM models, TCD for
        # TCD/Hyper-SD LoRAs, and DDIM/Euler with trailing timesteps (distilled and Turbo models, whose
        # first step must start at the last training timestep).
        "lcm": diffusers.LCMScheduler,
        "tcd": diffusers.TCDScheduler,
        "ddim-trailing": diffusers.DDIMScheduler,
        "euler-trailing": diffusers.EulerDiscreteScheduler,
    }


# Config changes a scheduler name makes on top of the model's own scheduler config.
_SCHEDULER_OVERRIDES: dict[str, dict[str, Any]] = {
    "pndm": {"skip_prk_steps": True},
    "ddim-trailing": {"timestep_spacing": "trailing"},
    "euler-trailing": {"timestep_spacing": "trailing"},
}
# A hidden scheduler-config entry (diffusers carries entries an owner class does not take across
# from_config): the model's own timestep spacing, kept while a "-trailing" name replaces it, so a plain
# name afterwards gets the model's spacing back — a warm worker's next job must not inherit it. None: the
# model's config did not set it (each class then uses its own default, as on a cold load).
_MODEL_SPACING = "_zss_model_timestep_spacing"


def _scheduler_config(config, overrides: dict[str, Any]) -> dict[str, Any]:
    """The config to build the next scheduler from: the current one with the model's own timestep
    spacing put back unless ``overrides`` sets one (then the model's value is recorded first)."""
    config = dict(config)
    used_defaults = list(config.get("_use_default_values", []))
    if "timestep_spacing" in overrides:
        if _MODEL_SPACING not in config:
            own = "timestep_spacing" in config and "timestep_spacing" not in used_defaults
            config[_MODEL_SPACING] = config["timestep_spacing"] if own else None
    elif _MODEL_SPACING in config:
        spacing = config.pop(_MODEL_SPACING)
        if spacing is None:
            config.pop("timestep_spacing", None)
            config["_use_default_values"] = [*used_defaults, "timestep_spacing"]
        else:
            config["timestep_spacing"] = spacing
    return config


def set_scheduler(pipe, name: str = "ddim") -> None:
    """Swap the pipeline's scheduler by name, keeping the model's noise schedule (its config).

    pndm runs as PLMS, the way Stable Diffusion ships it: its Runge-Kutta warm-up fails below 4 steps
    (a shape error) and takes 13 model calls for 4 steps (issue 12). The ``-trailing`` names set
    ``timestep_spacing="trailing"``; the other names keep (or get back) the model's own spacing.
    """
    classes = _scheduler_classes()
    if name not in classes:
        raise ValueError(f"scheduler must be one of {tuple(classes)}, got {name!r}")
    overrides = _SCHEDULER_OVERRIDES.get(name, {})
    config = _scheduler_config(pipe.scheduler.config, overrides)
    wanted = {**config, **overrides}
    current = pipe.scheduler.config
    if type(pipe.scheduler) is not classes[name] or any(current.get(k) != v for k, v in wanted.items()):
        pipe.scheduler = classes[name].from_config(config, **overrides)


# Schedulers that need a package the generator environment does not install (diffusers imports it lazily).
SCHEDULER_PACKAGES = {"lms": "scipy"}


def scheduler_unavailable(name: str) -> str | None:
    """Why scheduler `name` cannot run in this generator environment (a package it needs is missing), or None."""
    import importlib.util

    package = SCHEDULER_PACKAGES.get(name)
    if package is None or importlib.util.find_spec(package) is not None:
        return None
    return f"scheduler {name} needs the {package} package, which this generator environment does not have"


# ---------------------------------------------------------------------------------------------
# Tiny models for tests and the offline demo


def byte_level_vocab() -> dict[str, int]:
    """CLIP's byte-to-unicode alphabet, each symbol alone and word-final: a BPE with no merges."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            codes.append(256 + extra)
            extra += 1
    symbols = [chr(c) for c in codes]
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def sd_pipeline_parts(unet, vae, text_encoder) -> dict[str, Any]:
    """The keyword arguments of an SD1.x pipeline around models built from config: the byte-level
    tokenizer, SD's DDIM scheduler, no safety checker (the tiny test model and bench/gpu_check.py)."""
    from diffusers import DDIMScheduler
    from transformers import CLIPTokenizer

    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return dict(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer(vocab=byte_level_vocab(), merges=[], model_max_length=77),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


# The tiny test model's UNet: SD 1.x's layout at the smallest size (the tests' SD 2.x / SDXL variants
# start from it too).
TINY_UNET: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": (32, 64),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 16,
}


def sdxl_pipeline(unet, vae, text_encoder, text_encoder_2):
    """An SDXL pipeline around models built from config: ``sd_pipeline_parts``' tokenizer (for both
    encoders) and scheduler, no watermarker (the tests' tiny SDXL and bench/families_gpu.py)."""
    from diffusers import StableDiffusionXLPipeline

    parts = sd_pipeline_parts(unet, vae, text_encoder)
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=parts["tokenizer"],
        tokenizer_2=parts["tokenizer"],
        unet=unet,
        scheduler=parts["scheduler"],
        add_watermarker=False,
    )


def tiny_vae():
    """The tiny model's VAE (factor 8, 4 latent channels) with random weights from torch's RNG."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        sample_size=64,
        block_out_channels=(16, 16, 16, 16),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    )


def tiny_text_config(**overrides):
    """The tiny model's CLIP text encoder config (the byte-level tokenizer's 514 ids)."""
    from transformers import CLIPTextConfig

    config = dict(
        vocab_size=514,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
        projection_dim=32,
    )
    return CLIPTextConfig(**{**config, **overrides})


def tiny_controlnet(unet):
    """A tiny ControlNet for ``unet`` (its structure), with small random output weights: ``from_unet``
    zero-initialises them, which would leave the ControlNet without effect in tests."""
    from diffusers import ControlNetModel

    cnet = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=(16, 16, 16, 16), load_weights_from_unet=False
    )
    for block in [*list(cnet.controlnet_down_blocks), cnet.controlnet_mid_block]:
        torch.nn.init.normal_(block.weight, std=0.02)
    return cnet


def build_tiny_pipeline(controlnet: bool = False, seed: int = 0):
    """A tiny SD1.x-shaped pipeline (and ControlNet) with random weights; deterministic per seed.

    Same architecture family as SD1.x (4 latent channels, VAE factor 8, self- and cross-attention),
    but attention only at the lowest resolution so 8 frames of 64×64 sample in about a second on CPU.
    """
    from diffusers import StableDiffusionControlNetPipeline, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**TINY_UNET)
        parts = sd_pipeline_parts(unet, tiny_vae(), CLIPTextModel(tiny_text_config()))
        if not controlnet:
            return StableDiffusionPipeline(**parts)
        return StableDiffusionControlNetPipeline(controlnet=tiny_controlnet(unet), **parts)


def save_tiny_model(directory: str | os.PathLike, controlnet: bool = True) -> Path:
    """Write the tiny pipeline with ``save_pretrained`` (and its ControlNet into ``controlnet/``)."""
    directory = Path(directory)
    pipe = build_tiny_pipeline(controlnet=controlnet)
    if controlnet:
        from diffusers import StableDiffusionPipeline

        pipe.controlnet.save_pretrained(directory / "controlnet", safe_serialization=True)
        pipe = StableDiffusionPipeline(
            **{k: v for k, v in pipe.components.items() if k != "controlnet"}, requires_safety_checker=False
        )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory


# ---------------------------------------------------------------------------------------------
# Loading real models


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def _looks_like_path(spec: str) -> bool:
    return (
        (os.sep in spec and spec.count("/") != 1)
        or spec.startswith((".", "~", "/"))
        or spec.lower().endswith((".safetensors", *PICKLE_SUFFIXES))
        or (os.altsep is not None and os.altsep in spec)
    )


def _check_file(path: Path, what: str, field: str, allow_pickle: bool) -> str | None:
    """Refuse pickle checkpoints unless allowed; the family of a .safetensors file from its header
    (files of an unsupported family refused). None for an allowed pickle (``detect_family`` reads it)."""
    from .model_check import ModelMismatch, inspect_checkpoint

    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if allow_pickle:
            return None
        raise ModelError(
            f"{what} '{path}' is a pickle-based checkpoint ({suffix}), which can run arbitrary code when loaded.",
            "Use the .safetensors version of the model, or enable 'Allow legacy pickle checkpoints' in the "
            "preferences if you trust its source (it is then loaded with weights-only unpickling).",
        )
    if suffix != ".safetensors":
        raise ModelError(
            f"{what} '{path}' is not a .safetensors checkpoint.",
            "Give a diffusers model folder, a .safetensors file or a Hugging Face hub id.",
        )
    try:
        return inspect_checkpoint(path, field, unet=field == "model")
    except ModelMismatch as exc:
        raise ModelIncompatible(exc.message, exc.hint) from exc
    except (ValueError, OSError) as exc:
        raise ModelError(
            f"{what} '{path}' is not a valid .safetensors file: {exc}.",
            "The file may be incomplete or corrupt: download it again.",
        ) from exc


def pickle_only_folders(folder: Path) -> list[Path]:
    """Sub-folders of a model folder (and the folder itself) whose weights are only pickle files."""
    found = []
    for part in [folder, *sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())]:
        names = [p.name.lower() for p in part.iterdir() if p.is_file()]
        has_pickle = any(n.endswith(PICKLE_SUFFIXES) for n in names)
        if has_pickle and not any(n.endswith(".safetensors") for n in names):
            found.append(part)
    return found


def _check_folder(path: Path, what: str, allow_pickle: bool) -> None:
    """Enforce ``allow_pickle`` in a model folder here, before any library decides what to load."""
    if allow_pickle:
        return
    pickled = pickle_only_folders(path)
    if pickled:
        names = ", ".join(str(p.relative_to(path)) if p != path else "." for p in pickled)
        raise ModelIncompatible(
            f"{what} folder '{path}' has only pickle weights (.bin/.ckpt/.pt/.pth) in {names}, which can run "
            "arbitrary code when loaded, and allow_pickle is off.",
            "Convert the model to .safetensors, or set allow_pickle (the preference 'Allow legacy pickle "
            "checkpoints') if you trust its source.",
        )


def _load(cls, spec: str, what: str, field: str, allow_pickle: bool = False, **kwargs):
    """Load ``cls`` from a folder, a checkpoint file or a hub id with one set of clear errors."""
    path = Path(spec).expanduser()
    try:
        if path.is_dir():
            _check_folder(path, what, allow_pickle)
            return cls.from_pretrained(str(path), local_files_only=True, **kwargs)
        if path.is_file():
            if _check_file(path, what, field, allow_pickle) is None:
                log.warning("loading pickle checkpoint %s with weights-only unpickling", path)
            return cls.from_single_file(str(path), local_files_only=_offline(), **kwargs)
        if _looks_like_path(spec):
            raise ModelNotFound(
                f"{what} '{spec}' does not exist.",
                "Check the path, or give a Hugging Face hub id such as 'stable-diffusion-v1-5/stable-diffusion-v1-5'.",
            )
        return cls.from_pretrained(spec, local_files_only=_offline(), **kwargs)
    except ModelError as exc:
        exc.field = field
        raise
    except Exception as exc:  # diffusers, hub, safetensors and torch errors come in many types
        raise _load_error(spec, path, what, field, exc) from exc


def _load_error(spec: str, path: Path, what: str, field: str, exc: Exception) -> ModelError:
    """What a failed load means for the user: what was found, and what to do about it."""
    from .model_check import ModelMismatch, inspect_pickle_checkpoint

    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        try:  # the loader's own error says "download the configs": the file itself is the problem
            inspect_pickle_checkpoint(path, field, unet=field == "model")
        except ModelMismatch as mismatch:
            return ModelIncompatible(mismatch.message, mismatch.hint, field)
    if _offline() and _missing_from_cache(exc):
        if path.is_file():
            return ModelNotFound(
                f"{what} '{spec}' is a single-file checkpoint: loading it needs its model's configuration from "
                "the Hugging Face hub once, and that is not in the local cache while downloads are off "
                "(HF_HUB_OFFLINE=1).",
                "Allow online access for its first load (the configuration is cached for later), or give a "
                "diffusers model folder.",
                field,
            )
        return ModelNotFound(
            f"{what} '{spec}' is not in the local Hugging Face cache, and downloads are off (HF_HUB_OFFLINE=1).",
            f"Download it once with online access: the Download button next to Model in the ZS² add-on's "
            f"preferences, or `hf download {spec}` (`huggingface-cli download {spec}` with older versions); "
            "or give a local diffusers folder or .safetensors file.",
            field,
        )
    if isinstance(exc, OSError):
        if not path.exists():
            return ModelNotFound(
                f"{what} '{spec}' was not found on the Hugging Face hub: {_first_line(exc)}",
                "Check the hub id's spelling and your network connection, or give a local folder.",
                field,
            )
        return ModelError(
            f"{what} '{spec}' could not be read: {_first_line(exc)}",
            "The files may be incomplete or corrupt: download or convert the model again.",
            field,
        )
    return ModelError(
        f"{what} '{spec}' could not be loaded: {type(exc).__name__}: {_first_line(exc)}",
        "Make sure it is a Stable Diffusion 1.x, 2.x or SDXL model (diffusers folder or .safetensors).",
        field,
    )


def _missing_from_cache(exc: BaseException) -> bool:
    """Did loading fail because a file was not in the local hub cache while downloads are off?"""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _resolve_builtin(spec: str, field: str) -> str:
    """``builtin:NAME`` → the folder shipped inside the package (loaded like any diffusers folder)."""
    from .builtin import builtin_path, is_builtin

    if not is_builtin(spec):
        return spec
    try:
        return str(builtin_path(spec))
    except (KeyError, FileNotFoundError) as exc:
        raise ModelNotFound(
            str(exc).strip("'\""),
            "Use 'builtin:textures' (and 'builtin:textures-depth' for depth), "
            "'tiny', a folder, a .safetensors file or a hub id.",
            field,
        ) from exc


@dataclass(frozen=True)
class MemoryOptions:
    """Ways to trade speed for GPU memory (diffusers/accelerate features), part of the pipeline key."""

    attention_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False


def detect_family(spec: str, what: str = "Model", field: str = "model", allow_pickle: bool = False, edit: bool = False):
    """The ``model_check.ModelFamily`` of a model, read before loading it; ModelError if unusable.

    A folder: its JSON configs. A ``.safetensors`` file: its header. An allowed pickle checkpoint:
    its tensor table (weights-only unpickling, memory-mapped). A hub id: its ``model_index.json`` and
    UNet and scheduler configs (small JSON files, from the cache when downloads are off).
    Families this mode does not run (inpainting, InstructPix2Pix, the SDXL refiner) are refused by name.
    """
    from .model_check import ModelFamily, ModelMismatch, check_family, inspect_pickle_checkpoint, read_folder_family

    if spec == TINY:
        return ModelFamily("sd1", "epsilon")
    path = Path(spec).expanduser()
    try:
        if path.is_dir():
            _check_folder(path, what, allow_pickle)
            family = read_folder_family(path)
        elif path.is_file():
            name = _check_file(path, what, field, allow_pickle)
            family = ModelFamily(name or inspect_pickle_checkpoint(path, field, unet=field == "model"))
        elif _looks_like_path(spec):
            raise ModelNotFound(
                f"{what} '{spec}' does not exist.",
                "Check the path, or give a Hugging Face hub id such as 'stable-diffusion-v1-5/stable-diffusion-v1-5'.",
            )
        else:
            family = _hub_family(spec)
        check_family(family, field, spec, edit)
        return family
    except ModelMismatch as exc:
        raise ModelIncompatible(exc.message, exc.hint, field) from exc
    except ModelError as exc:
        exc.field = field
        raise
    except Exception as exc:  # hub, JSON and torch errors come in many types
        raise _load_error(spec, path, what, field, exc) from exc


def _hub_family(spec: str):
    """A hub model's family from its JSON configs alone (model_index, UNet, scheduler; no weights)."""
    import json

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    from .model_check import family_from_configs

    def config(name: str, subfolder: str | None = None) -> dict | None:
        try:
            path = hf_hub_download(spec, name, subfolder=subfolder, local_files_only=_offline())
        except EntryNotFoundError as exc:
            if isinstance(exc, LocalEntryNotFoundError):  # not cached while downloads are off: said as such
                raise
            return None  # the repository has no such file
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)

    index = config("model_index.json")
    unet = config("config.json", "unet")
    if index is None or unet is None:
        raise ModelIncompatible(
            f"Hub model '{spec}' has no {'model_index.json' if index is None else 'unet/config.json'}: "
            "it is not a diffusers Stable Diffusion model.",
            "Give the hub id of a diffusers Stable Diffusion 1.x, 2.x or SDXL model.",
        )
    return family_from_configs(unet, config("scheduler_config.json", "scheduler"), index)


def pipeline_classes(family: str) -> tuple[type, type, dict[str, Any]]:
    """(text-to-image class, its ControlNet variant, keyword arguments for both) for a family name."""
    import diffusers

    if family == "sdxl":  # no invisible watermark on ZS² frames (the stock pipeline adds one when installed)
        return (
            diffusers.StableDiffusionXLPipeline,
            diffusers.StableDiffusionXLControlNetPipeline,
            {"add_watermarker": False},
        )
    return (
        diffusers.StableDiffusionPipeline,
        diffusers.StableDiffusionControlNetPipeline,
        {"requires_safety_checker": False},
    )


def check_model(pipe, controlnet=None, edit: bool = False):
    """The loaded pipeline's ``ModelFamily``; ModelIncompatible unless this mode runs it and
    ``controlnet`` (when given, else the pipeline's own, if any) was made for the same family.
    ``edit``: instruction editing, which runs InstructPix2Pix models and only them."""
    from .model_check import ModelMismatch, check_controlnet_config, check_pipeline_config

    controlnet = controlnet if controlnet is not None else getattr(pipe, "controlnet", None)
    encoders = [getattr(pipe, name, None) for name in ("text_encoder", "text_encoder_2")]
    width = sum(encoder.config.hidden_size for encoder in encoders if encoder is not None)
    try:
        family = check_pipeline_config(pipe.unet.config, width, pipe.vae.config.latent_channels, edit)
        if controlnet is not None:
            check_controlnet_config(controlnet.config, pipe.unet.config)
    except ModelMismatch as exc:
        raise ModelIncompatible(exc.message, exc.hint, exc.field) from exc
    return family


def load_pipeline(
    model: str,
    controlnet: str | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    scheduler: str = "ddim",
    allow_pickle: bool = False,
    memory: MemoryOptions | None = None,
    fast: bool = False,
    edit: bool = False,
):
    """A ready pipeline on its device: SD/SDXL (text → clip), or with a ControlNet when ``controlnet`` is given.

    ``model``/``controlnet``: ``"tiny"``, a diffusers folder, a ``.safetensors`` checkpoint or a hub id.
    Pickle checkpoints (.ckpt/.pt/.bin) are refused unless ``allow_pickle``. The model's family
    (``detect_family``, before loading) picks the pipeline class; the loaded parts are checked
    (``check_model``) before they are returned. The scheduler swap keeps the model's config
    (SD 2.x's v-prediction included). ``edit``: instruction editing — the model must be an
    InstructPix2Pix model (loaded as an SD pipeline), and such a model is refused without it.
    """
    from diffusers import ControlNetModel

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    model = _resolve_builtin(model, "model")
    controlnet = _resolve_builtin(controlnet, "controlnet_model") if controlnet else controlnet
    if model == TINY:
        if controlnet not in (None, TINY):
            raise ModelError(
                "The tiny test model only works with the tiny ControlNet.",
                "Set the ControlNet model to 'tiny' or choose a real Stable Diffusion model.",
                "controlnet_model",
            )
        pipe = build_tiny_pipeline(controlnet=controlnet == TINY)
        check_model(pipe, edit=edit)
        if torch_dtype != torch.float32:
            pipe.to(dtype=torch_dtype)
    else:
        if controlnet == TINY:
            raise ModelError(
                "The tiny ControlNet only works with the tiny test model.",
                "Choose a depth ControlNet made for the model's family, e.g. 'lllyasviel/control_v11f1p_sd15_depth'.",
                "controlnet_model",
            )
        family = detect_family(model, "Model", "model", allow_pickle, edit)
        text_class, control_class, extra = pipeline_classes(family.name)
        # `dtype` (diffusers ≥ 0.42; `torch_dtype` now warns on every load)
        common: dict[str, Any] = dict(dtype=torch_dtype, allow_pickle=allow_pickle)
        safety: dict[str, Any] = {"safety_checker": None} if family.name != "sdxl" else {}
        pipe = _load(text_class, model, "Model", "model", **safety, **extra, **common)
        cnet = None
        if controlnet:
            cnet = _load(ControlNetModel, controlnet, "ControlNet model", "controlnet_model", **common)
        check_model(pipe, cnet, edit)  # before they are joined: another model's parts may not even fit together
        if cnet is not None:
            if family.name == "sdxl":
                extra = {**extra, "force_zeros_for_empty_prompt": pipe.config.force_zeros_for_empty_prompt}
            pipe = control_class(**pipe.components, controlnet=cnet, **extra)
    set_scheduler(pipe, scheduler)
    pipe.set_progress_bar_config(disable=True)
    memory = memory or MemoryOptions()
    if memory.attention_slicing:
        pipe.enable_attention_slicing()  # cross-attention only: TMA replaces attn1 while sampling
    if memory.vae_tiling:
        pipe.vae.enable_tiling()
    if fast:  # the GPU fast paths the device has (none on a CPU); kept with the pipeline
        from . import fast as fast_paths

        fast_paths.apply(pipe, fast_paths.plan(torch_device, enabled=True))
    if memory.cpu_offload and torch_device.type == "cuda":
        pipe.enable_model_cpu_offload(device=torch_device)  # accelerate moves each model in when used
        return pipe
    return pipe.to(torch_device)
