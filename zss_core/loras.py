"""A job's LoRAs on the worker's cached pipeline: loaded once each, switched per job, never fused.

Each LoRA file is loaded with diffusers' ``load_lora_weights`` (PEFT backend: the file's diffusers,
PEFT or Kohya keys are converted by diffusers itself) as a named adapter. The name comes from the
file's resolved path, size and modification time, so a file is loaded once per pipeline and a file
that changed on disk is loaded again under a new name. Each job then activates exactly its adapters
with their weights (``set_adapters``); a job without LoRAs disables them (``disable_lora``), which makes
every PEFT layer call its untouched base layer: frames are bit-identical to a worker that never saw a
LoRA (tests/test_loras.py). LoRAs are never fused into the base weights: unfusing subtracts what was
added in floating point, which is not exact, and the warm worker's base model must stay as loaded.
Switching LoRAs does not reload the base model; at most ``MAX_KEPT`` adapters stay loaded.

A LoRA made for another model family is refused before anything loads, from its ``.safetensors``
header alone (``lora_family``), naming both families. ``loras[i].path`` is a file, a folder holding
one LoRA ``.safetensors`` (diffusers' ``pytorch_lora_weights.safetensors`` is preferred), or a Hugging
Face hub id (from the local cache when downloads are off). A ``zss serve`` server maps names from the
``[loras.NAME]`` tables of its models file to its own files before the job reaches the worker
(``server/config.py``); clients cannot name the server's paths.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from .model_check import KNOWN_WIDTHS, LABELS, read_safetensors_header

log = logging.getLogger(__name__)

MAX_KEPT = 8  # adapters kept loaded on one pipeline (the protocol's MAX_LORAS: one job's worth always fits)
FOLDER_WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # what diffusers' save_lora_weights writes
FAMILY_WIDTHS = {768: "sd1", 1024: "sd2", 2048: "sdxl"}  # the UNet's cross-attention width
SDXL_MARKERS = ("text_encoder_2.", "lora_te2_", "lora_te2.")  # SDXL's second text encoder


@dataclass(frozen=True)
class LoadedLora:
    """One LoRA of a job as applied (what job.json records under ``loras``)."""

    path: str  # the file loaded
    weight: float
    adapter: str
    family: str | None  # from the header; None when it does not tell
    load_seconds: float  # 0.0 when the adapter was already loaded

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "weight": self.weight,
            "adapter": self.adapter,
            "family": self.family,
            "load_seconds": round(self.load_seconds, 4),
        }


def _error(code: str, message: str, hint: str, field: str):
    from .runner import JobError

    # A JobError (not a ModelError): the worker keeps its base model when a LoRA is refused.
    return JobError(code, message, hint, field)


# ---------------------------------------------------------------------------------------------
# Families


def family_name(family: str | None) -> str:
    return LABELS.get(family or "", family or "an unknown model family")


def base_family(unet_config) -> str:
    """The family of a loaded UNet: SDXL by its size/crop conditioning or width 2048, SD 2.x by width
    1024, else SD 1.x-class (the tiny test model too). When the model check names families itself
    (issue 15, families branch), this is the one place to take its answer from."""
    width = unet_config.cross_attention_dim
    if getattr(unet_config, "addition_embed_type", None) == "text_time" or width == 2048:
        return "sdxl"
    return "sd2" if width == 1024 else "sd1"


def _is_down_weight(name: str) -> bool:
    """The first (input-side) matrix of a LoRA pair, in every key style diffusers reads."""
    return any(part in name for part in ("lora_down.", "lora_A.", "lora.down.", "down.weight"))


def cross_attention_width(shapes: dict[str, list[int]]) -> int | None:
    """The text width a LoRA's UNet cross-attention K/V take in (its down matrix's input size), or None."""
    for name, shape in shapes.items():
        flat = name.replace("_", ".")
        if "attn2" in flat and (".to.k" in flat or ".to.v" in flat) and _is_down_weight(name) and len(shape) >= 2:
            return int(shape[1])
    return None


def lora_family(shapes: dict[str, list[int]]) -> tuple[str | None, int | None]:
    """(family, cross-attention width) a LoRA was made for, from its tensor names and shapes.

    SDXL: keys of the second text encoder, or width 2048; SD 2.x: width 1024 (or a 1024-wide text
    encoder when the file holds no cross-attention); SD 1.x: width 768. (None, None) when the file
    does not tell (e.g. only self-attention layers): diffusers' loader then has the last word.
    """
    names = list(shapes)
    width = cross_attention_width(shapes)
    if any(marker in n for n in names for marker in SDXL_MARKERS):
        return "sdxl", width
    if width is not None:
        return FAMILY_WIDTHS.get(width), width
    for name, shape in shapes.items():  # the text encoder alone: CLIP-L (SD1) is 768 wide, OpenCLIP-H (SD2) 1024
        if ("lora_te" in name or "text_encoder" in name) and _is_down_weight(name) and len(shape) >= 2:
            return {768: "sd1", 1024: "sd2"}.get(int(shape[1])), None
    return None, None


def check_family(path: Path, unet_config, field: str, base: str | None = None) -> str | None:
    """Refuse a LoRA made for another family (or another cross-attention width) than the model's.

    ``base``: the model's family as the model check named it ("sd1", "sd2", "sdxl"); by default it is
    read from the UNet's config (``base_family``)."""
    try:
        header = read_safetensors_header(path)
    except (ValueError, OSError) as exc:
        raise _error(
            "model_load_failed",
            f"{field}: '{path}' is not a valid .safetensors file: {exc}.",
            "The file may be incomplete or corrupt: download it again.",
            field,
        ) from exc
    shapes = {name: info.get("shape", []) for name, info in header.items()}
    family, width = lora_family(shapes)
    base = base or base_family(unet_config)
    base_width = unet_config.cross_attention_dim
    if family is not None and family != base:
        raise _error(
            "model_incompatible",
            f"{field}: '{path.name}' is a LoRA for {family_name(family)}; the model is {family_name(base)}.",
            f"Choose a LoRA made for {family_name(base)}, or a {family_name(family)} model for this LoRA.",
            field,
        )
    if width is not None and width != base_width:
        made_for = family_name(KNOWN_WIDTHS[width]) if width in KNOWN_WIDTHS else f"a model with width {width}"
        raise _error(
            "model_incompatible",
            f"{field}: '{path.name}' is a LoRA for {made_for} (cross-attention width {width}); the model is "
            f"{family_name(base)} with width {base_width}.",
            f"Choose a LoRA made for this model's family ({family_name(base)}).",
            field,
        )
    return family


# ---------------------------------------------------------------------------------------------
# Paths


def _offline() -> bool:
    from .models import _offline as offline

    return offline()


def _from_folder(folder: Path, field: str) -> Path:
    preferred = folder / FOLDER_WEIGHT_NAME
    if preferred.is_file():
        return preferred
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".safetensors" and p.is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise _error(
            "model_not_found",
            f"{field}: the folder '{folder}' holds no LoRA .safetensors file.",
            "Give the LoRA's .safetensors file itself, or a folder that holds it.",
            field,
        )
    names = ", ".join(p.name for p in found[:5]) + (" …" if len(found) > 5 else "")
    raise _error(
        "model_not_found",
        f"{field}: the folder '{folder}' holds several .safetensors files ({names}); which one is the LoRA is unclear.",
        "Give the LoRA's .safetensors file itself.",
        field,
    )


def resolve_path(spec: str, field: str) -> Path:
    """The LoRA file a job's ``loras[i].path`` names: a file, a folder holding one, or a hub id."""
    from .models import PICKLE_SUFFIXES, _looks_like_path

    path = Path(spec).expanduser()
    if path.is_dir():
        return _from_folder(path, field)
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            what = (
                "a pickle file, which can run arbitrary code when loaded"
                if path.suffix.lower() in PICKLE_SUFFIXES
                else "not one"
            )
            raise _error(
                "model_load_failed",
                f"{field}: '{path}' is not a .safetensors file ({what}); LoRAs are loaded from .safetensors only.",
                "Use the .safetensors version of the LoRA.",
                field,
            )
        return path.resolve()
    if path.exists():  # a FIFO, a socket, a device: nothing to read a LoRA from
        raise _error(
            "model_not_found",
            f"{field}: '{spec}' is neither a file nor a folder.",
            "Give the LoRA's .safetensors file, or a folder holding it.",
            field,
        )
    if _looks_like_path(spec):
        raise _error(
            "model_not_found",
            f"{field}: the LoRA file '{spec}' does not exist.",
            "Check the path (a .safetensors file, or a folder holding one).",
            field,
        )
    return _from_folder(_hub_folder(spec, field), field)


def _hub_folder(repo_id: str, field: str) -> Path:
    """A hub id's .safetensors files in the local cache (fetched first when downloads are allowed)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.safetensors", "*.json"], local_files_only=_offline()))
    except Exception as exc:  # hub errors come in many types; each means "this name gives no LoRA here"
        where = " (downloads are off: HF_HUB_OFFLINE=1)" if _offline() else ""
        raise _error(
            "model_not_found",
            f"{field}: '{repo_id}' is not a LoRA file, folder or hub id available here{where}: "
            f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}",
            "Give a LoRA .safetensors file or a folder holding one; a hub id must be downloaded once with "
            "online access.",
            field,
        ) from exc


def adapter_name(path: Path) -> str:
    """A PEFT adapter name for this file as it is now: path, size and modification time hashed."""
    stat = path.stat()
    digest = hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    return "zss_" + digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Applying


def peft_backend() -> bool:
    """Does diffusers have its PEFT backend here (``peft`` installed, new enough)? Without it no adapter
    can have been loaded, and a job with LoRAs is refused naming the package."""
    from diffusers.utils import USE_PEFT_BACKEND

    return bool(USE_PEFT_BACKEND)


def loaded_adapters(pipe) -> set[str]:
    """Every adapter loaded into any of the pipeline's models (UNet, text encoders)."""
    if not hasattr(pipe, "get_list_adapters") or not peft_backend():
        return set()
    return {name for names in pipe.get_list_adapters().values() for name in names}


def _check_fast(pipe, field: str) -> None:
    """Fused QKV and compiled blocks (``fast`` on a GPU) bypass or rename the layers a LoRA adapts."""
    from diffusers.models.attention_processor import Attention

    if any(
        type(m).__name__ == "OptimizedModule" or (isinstance(m, Attention) and getattr(m, "fused_projections", False))
        for m in pipe.unet.modules()
    ):  # one walk over the modules: this runs for every job with LoRAs
        raise _error(
            "bad_request",
            f"{field}: LoRAs cannot be applied with the GPU fast paths (fused QKV projections, compiled UNet "
            "blocks): they bypass the layers a LoRA adapts.",
            "Turn 'fast' off for jobs with LoRAs.",
            "fast",
        )


def apply_loras(pipe, loras: list[dict] | None, family: str | None = None) -> list[LoadedLora]:
    """Make ``pipe`` run with exactly ``loras`` (``[{"path", "weight"}]``; None or [] → none).

    ``family``: the model's family when the caller knows it from the model check (else from the UNet).

    Every LoRA is resolved and checked before any is loaded, so a refused job changes nothing.
    Raises ``runner.JobError`` naming ``loras[i].path`` (the base model stays loaded).
    """
    loras = loras or []
    present = loaded_adapters(pipe)
    if not loras:
        if present:
            pipe.disable_lora()  # every PEFT layer calls its base layer alone: bit-identical frames
        return []
    if not peft_backend():
        raise _error(
            "bad_request",
            "loras: LoRAs need the peft package (diffusers' PEFT backend), which this generator environment "
            "does not have.",
            "Install it into the generator environment (`pip install 'peft>=0.13'`, or repair it with "
            "`zss setup-env DIR`), or remove the LoRAs from the job.",
            "loras",
        )
    _check_fast(pipe, "loras")
    files = []
    for index, lora in enumerate(loras):
        field = f"loras[{index}].path"
        path = resolve_path(lora["path"], field)
        found = check_family(path, pipe.unet.config, field, family)
        files.append((path, float(lora.get("weight", 1.0)), found, field))
    names = [adapter_name(path) for path, _, _, _ in files]
    if len(set(names)) != len(names):
        raise _error(
            "bad_request",
            "loras: the same LoRA file is listed twice.",
            "List each LoRA once and set its weight.",
            "loras",
        )
    stale = sorted(present - set(names))
    if len(present | set(names)) > MAX_KEPT and stale:
        pipe.delete_adapters(stale)  # keeps memory bounded; these load again if a later job asks for them
        present -= set(stale)
    applied = []
    for (path, weight, family, field), name in zip(files, names):
        seconds = 0.0
        if name not in present:
            started = time.perf_counter()
            _load(pipe, path, name, field)
            seconds = time.perf_counter() - started
            log.info("loaded LoRA %s as adapter %s in %.3f s", path, name, seconds)
        applied.append(LoadedLora(str(path), weight, name, family, seconds))
    pipe.enable_lora()
    pipe.set_adapters(names, [item.weight for item in applied])
    return applied


def _load(pipe, path: Path, name: str, field: str) -> None:
    """``load_lora_weights`` with clear errors; an adapter half-loaded by a failure is removed."""
    try:
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
    except Exception as exc:  # diffusers/PEFT raise many types for files they cannot map onto the model
        if name in loaded_adapters(pipe):
            pipe.delete_adapters([name])
        raise _error(
            "model_incompatible",
            f"{field}: '{path.name}' could not be loaded as a LoRA for this model: {type(exc).__name__}: "
            f"{(str(exc).strip().splitlines() or [''])[0][:400]}",
            "Make sure it is a LoRA (diffusers or Kohya format) made for this model's family.",
            field,
        ) from exc
    if name not in loaded_adapters(pipe):
        raise _error(
            "model_incompatible",
            f"{field}: '{path.name}' holds no LoRA weights that fit this model's layers.",
            "Make sure it is a LoRA (diffusers or Kohya format) for this model's family.",
            field,
        )
