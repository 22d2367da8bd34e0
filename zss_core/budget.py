"""A job's memory budget, estimated before the model loads: refuse what cannot fit, naming what to lower.

Without a budget a 2048² clip of 1024 frames unchunked runs until the machine is out of memory
(minutes, gigabytes, then an error or the OOM killer). ``estimate`` adds up what one job holds at its
peak from the model's shape (its configs: no weights are loaded) and the job's size:

* the weights (the safetensors files, or SD 1.5's size when the model is not a local folder);
* the UNet (and ControlNet) activations of one chunk: the skip connections of every level plus the
  working set of the widest level, for ``chunk × 2`` samples under classifier-free guidance;
* the self-attention matrices at the highest-resolution attention level and in the VAE's mid block,
  only where attention is computed naively (``materialized_attention``; CPU and CUDA torch use fused
  kernels that never hold the matrix);
* the VAE decoder's working set at full resolution for one chunk of frames;
* the decoded frames the clip holds until the MP4 is written, and the latents.

``available_bytes`` is what the device has: free GPU memory on CUDA, ``MemAvailable`` from
/proc/meminfo (or physical pages from ``os.sysconf``) on the CPU. The estimate is conservative by
design (factors measured on the tiny model, see tests/test_budget.py), but only a job beyond the
machine by ``HEADROOM`` is refused: the out-of-memory retry in ``runner`` handles the margin.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

HEADROOM = 1.0  # refuse when the estimate exceeds the available memory (the estimate already pads)
UNET_WORKING = 10  # tensors of the widest level alive at once (resnets, norms, attention, GEGLU ×8 → ~10)
VAE_WORKING = 8  # tensors of the VAE decoder's full-resolution level alive at once (measured: ~6)


@dataclass(frozen=True)
class ModelProfile:
    """The shapes that decide memory: from the model's config files, or known defaults."""

    unet_channels: tuple[int, ...]
    attention_levels: tuple[bool, ...]  # per UNet level: has self-attention
    heads: int
    layers_per_block: int
    vae_channels: tuple[int, ...]
    vae_factor: int
    weight_bytes: int
    latent_channels: int = 4


SD15 = ModelProfile((320, 640, 1280, 1280), (True, True, True, False), 8, 2, (128, 256, 512, 512), 8, 2_200_000_000)
# SDXL base (stabilityai/stable-diffusion-xl-base-1.0's configs, fp16 weights): for single files.
SDXL = ModelProfile((320, 640, 1280), (False, True, True), 20, 2, (128, 256, 512, 512), 8, 6_900_000_000)
TINY = ModelProfile((32, 64), (False, True), 8, 1, (16, 16, 16, 16), 8, 10_000_000)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def profile_from_configs(unet: dict, vae: dict | None, weight_bytes: int) -> ModelProfile:
    """A profile from diffusers' ``unet/config.json`` and ``vae/config.json`` contents."""
    channels = tuple(int(c) for c in unet.get("block_out_channels", SD15.unet_channels))
    down = unet.get("down_block_types") or ["CrossAttnDownBlock2D"] * len(channels)
    heads = unet.get("attention_head_dim", 8)
    vae_channels = tuple(int(c) for c in (vae or {}).get("block_out_channels", SD15.vae_channels))
    return ModelProfile(
        unet_channels=channels,
        attention_levels=tuple("Attn" in str(kind) for kind in down),
        heads=max(heads) if isinstance(heads, list) else int(heads),
        layers_per_block=int(unet.get("layers_per_block", 2)),
        vae_channels=vae_channels,
        vae_factor=2 ** (len(vae_channels) - 1),
        weight_bytes=weight_bytes or SD15.weight_bytes,
        latent_channels=int(unet.get("in_channels", 4)),
    )


def model_profile(model: str) -> ModelProfile:
    """The profile of a job's ``model`` without loading it: ``tiny``, a local folder's configs, else SD 1.5."""
    from .builtin import builtin_path, is_builtin

    if model == "tiny":
        return TINY
    try:
        folder = builtin_path(model) if is_builtin(model) else Path(model).expanduser()
    except (KeyError, FileNotFoundError):
        return SD15
    if folder.is_file() and folder.suffix.lower() == ".safetensors":
        return _single_file_profile(folder)
    unet = _read_json(folder / "unet" / "config.json") if folder.is_dir() else None
    if unet is None:
        return SD15
    weights = sum(p.stat().st_size for p in folder.glob("*/*.safetensors"))
    return profile_from_configs(unet, _read_json(folder / "vae" / "config.json"), weights)


def _single_file_profile(path: Path) -> ModelProfile:
    """A single file's family's shapes (its header, ``model_check``) with the file's size as weights."""
    from dataclasses import replace

    from .model_check import ModelMismatch, read_safetensors_header, tensor_family

    try:
        header = read_safetensors_header(path)
        family = tensor_family(path.name, {name: info["shape"] for name, info in header.items()}).name
    except (ModelMismatch, OSError, ValueError):  # not a readable model: loading it says why
        return SD15
    return replace(SDXL if family == "sdxl" else SD15, weight_bytes=path.stat().st_size)


def profile_from_pipe(pipe) -> ModelProfile:
    """The profile of a loaded pipeline (its weights counted from its parameters)."""
    weights = sum(
        p.numel() * p.element_size()
        for name in ("unet", "vae", "text_encoder", "text_encoder_2", "controlnet")  # SDXL has two text encoders
        if getattr(pipe, name, None) is not None
        for p in getattr(pipe, name).parameters()
    )
    return profile_from_configs(dict(pipe.unet.config), dict(pipe.vae.config), weights)


@dataclass(frozen=True)
class Estimate:
    """Peak bytes of a job, by part (``parts``) and in total."""

    parts: dict[str, int]
    chunk: int

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def estimate(
    profile: ModelProfile,
    *,
    width: int,
    height: int,
    frames: int,
    chunk: int | None,
    guidance: float = 7.5,
    dtype_bytes: int = 4,
    control: bool = False,
    materialized_attention: bool = False,
) -> Estimate:
    """Peak memory of sampling ``frames`` at ``width``×``height`` with ``chunk`` frames per UNet call."""
    size = frames if not chunk or chunk >= frames else chunk
    batch = size * (2 if guidance > 1.0 else 1)
    latent_h, latent_w = height // profile.vae_factor, width // profile.vae_factor
    levels = [
        (channels, (latent_h >> level) * (latent_w >> level), attention)
        for level, (channels, attention) in enumerate(zip(profile.unet_channels, profile.attention_levels))
    ]
    skips = sum((profile.layers_per_block + 1) * channels * tokens for channels, tokens, _ in levels)
    working = max(UNET_WORKING * channels * tokens for channels, tokens, _ in levels)
    unet = batch * (skips + working) * dtype_bytes * (2 if control else 1)
    attention = 0
    if materialized_attention:
        tokens = max((t for _, t, has in levels if has), default=0)
        attention = batch * profile.heads * tokens * tokens * dtype_bytes
        attention = max(attention, size * (latent_h * latent_w) ** 2 * dtype_bytes)  # the VAE's mid block
    vae = size * VAE_WORKING * min(profile.vae_channels) * width * height * dtype_bytes
    parts = {
        "model": profile.weight_bytes * (2 if control else 1),
        "unet": unet,
        "attention": attention,
        "vae": vae,
        "frames": frames * width * height * 3 * 2,  # the decoded PIL frames and their arrays for the MP4
        "latents": 4 * frames * profile.latent_channels * latent_h * latent_w * 4,
    }
    return Estimate(parts, size)


def meminfo_available() -> int | None:
    """Bytes of RAM available to a new allocation: MemAvailable (Linux), else physical pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass  # not Linux: fall through to sysconf
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def available_bytes(device) -> int | None:
    """Free memory of ``device`` (a torch.device): CUDA's free bytes, else the RAM available (None: unknown)."""
    if device.type == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        return meminfo_available()
    return None  # MPS shares RAM with no reliable free figure: no refusal


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def refusal(job, found: Estimate, available: int | None, device: str) -> tuple[str, str, str] | None:
    """(message, hint, field) when ``found`` does not fit ``available``; None when it fits or is unknown."""
    if available is None or found.total <= available * HEADROOM:
        return None
    parts = ", ".join(f"{name} {_gib(size)}" for name, size in found.parts.items() if size >= 2**26)
    per_chunk = found.parts["unet"] + found.parts["attention"] + found.parts["vae"]
    lower = []
    if found.chunk > 1 and per_chunk >= found.parts["frames"]:
        lower.append("chunk")
    lower.append("width/height")
    if found.parts["frames"] > per_chunk or found.chunk == 1:
        lower.append("frames")
    message = (
        f"This job needs about {_gib(found.total)} of memory ({parts}) at {job.width}×{job.height} with "
        f"{job.frames} frames and {found.chunk} frames per chunk, but the {device} has {_gib(available)} free."
    )
    hint = f"Lower {', '.join(lower)} (fields {', '.join(lower).replace('width/height', 'width, height')})."
    return message, hint, lower[0].split("/")[0]


def job_estimate(job, profile: ModelProfile, device, dtype_bytes: int, chunk: int | str | None = "job") -> Estimate:
    """``estimate`` for a ``protocol.Job`` on ``device`` with ``chunk`` (by default the job's own; "auto"
    counts as one frame per chunk: the smallest it can pick)."""
    asked = job.chunk if chunk == "job" else chunk
    size = 1 if asked == "auto" else asked
    assert size is None or isinstance(size, int)
    return estimate(
        profile,
        width=job.width,
        height=job.height,
        frames=job.frames,
        chunk=size,
        guidance=job.guidance,
        dtype_bytes=dtype_bytes,
        control=job.control is not None,
        materialized_attention=device.type not in ("cpu", "cuda"),
    )


def largest_chunk(job, profile: ModelProfile, device, dtype_bytes: int, available: int | None) -> int | None:
    """The largest chunk whose estimate fits ``available`` (``chunk: "auto"`` where nothing is measured, as
    on the CPU): None (the whole clip) when it all fits or nothing is known, else at least 1."""
    if available is None or job_estimate(job, profile, device, dtype_bytes, None).total <= available * HEADROOM:
        return None
    low, high = 1, job.frames  # estimates grow with the chunk: the largest that fits, by bisection
    while low < high:
        middle = (low + high + 1) // 2
        if job_estimate(job, profile, device, dtype_bytes, middle).total <= available * HEADROOM:
            low = middle
        else:
            high = middle - 1
    return low
