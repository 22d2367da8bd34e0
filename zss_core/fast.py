"""GPU fast paths (``--fast``): channels-last, compiled UNet parts, fused projections, large-frame VAE.

Each path is used only where the device supports it, and none is on by default on a CPU:

* **channels-last** memory format for the UNet, ControlNet and VAE (NHWC convolutions: tensor cores).
* **torch.compile** (Inductor, mode ``max-autotune-no-cudagraphs``) of the parts that hold the
  arithmetic and no per-job state: every resnet, up/down sampler and transformer feed-forward. The
  self-attention layers stay eager on purpose: TMA swaps their processors per clip and keeps its
  momentum carry in Python, which would make a compiled graph recompile every step (or ignore the
  carry). Mode: CUDA graphs (``reduce-overhead``) replay into fixed output buffers, and both the TMA
  carry and the step cache keep tensors across calls, which a later replay would overwrite, so the
  autotuned mode without CUDA graphs is the safe one; its longer compile is paid once per worker.
  The compiled modules replace the originals inside the pipeline, so the worker's pipeline cache keeps
  them: later jobs of the same shape reuse the compiled code (a new shape compiles once more).
  Hooks (the worker's cancel points) sit on the wrappers and run eagerly, outside the graphs.
* **fused projections** (diffusers' ``fuse_qkv_projections``): one matmul for Q, K and V. TMA computes
  K and V from momentum-mixed hidden states and Q from the frame's own, so TMA's self-attention keeps
  the separate projections (the fused ones are not used there); cross-attention (K/V of the prompt)
  and the VAE use the fused ones, and without TMA everything does. Skipped when another attention
  processor (e.g. attention slicing) is installed.
* **tiled and sliced VAE decoding** for large frames (``LARGE_FRAME_PIXELS`` and up): one frame at a
  time, in overlapping tiles; blended seams make it differ slightly from the plain decode.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import torch

COMPILE_MODE = "max-autotune-no-cudagraphs"
LARGE_FRAME_PIXELS = 1024 * 1024  # from here on the VAE decodes one frame at a time, in tiles


@dataclass(frozen=True)
class FastPaths:
    """Which fast paths are on (``plan`` picks them for a device)."""

    channels_last: bool = False
    compile: bool = False
    fused_qkv: bool = False
    large_frame_vae: bool = False

    def names(self) -> list[str]:
        return [name for name, on in vars(self).items() if on]


def plan(device: torch.device | str, enabled: bool) -> FastPaths:
    """The fast paths ``--fast`` turns on for ``device``: all on CUDA (compile when Triton is there), none elsewhere."""
    device = torch.device(device)
    if not enabled or device.type != "cuda":
        return FastPaths()
    return FastPaths(
        channels_last=True,
        compile=importlib.util.find_spec("triton") is not None,
        fused_qkv=True,
        large_frame_vae=True,
    )


def apply(pipe, paths: FastPaths, *, compile_mode: str = COMPILE_MODE, compile_backend: str = "inductor") -> None:
    """Turn ``paths`` on for ``pipe`` in place (once per loaded pipeline; ``large_frame_vae`` is per clip)."""
    models = [pipe.unet, getattr(pipe, "controlnet", None), pipe.vae]
    models = [model for model in models if model is not None]
    if paths.channels_last:
        for model in models:
            model.to(memory_format=torch.channels_last)
    if paths.fused_qkv:
        for model in models:
            if hasattr(model, "fuse_qkv_projections") and _default_attention(model):
                model.fuse_qkv_projections()
    if paths.compile:
        for model in models[:-1]:  # the UNet and ControlNet; the VAE runs once per frame
            compile_parts(model, mode=compile_mode, backend=compile_backend)


def _default_attention(model) -> bool:
    from diffusers.models.attention_processor import AttnProcessor2_0

    return all(type(proc) is AttnProcessor2_0 for proc in model.attn_processors.values())


def compile_parts(model: torch.nn.Module, *, mode: str | None = COMPILE_MODE, backend: str = "inductor") -> int:
    """Replace every resnet, up/down sampler and feed-forward of ``model`` by its compiled module.

    Returns how many were compiled. Attention modules stay as they are (see the module docstring).
    """
    from diffusers.models.attention import FeedForward
    from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D

    kinds = (ResnetBlock2D, Downsample2D, Upsample2D, FeedForward)
    inductor_mode = mode if backend == "inductor" else None  # the other backends take no mode
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, kinds) and not isinstance(parent, kinds)
    ]
    for parent, name, child in targets:
        compiled = cast(torch.nn.Module, torch.compile(child, backend=backend, dynamic=False, mode=inductor_mode))
        if isinstance(parent, torch.nn.ModuleList):
            parent[int(name)] = compiled
        else:
            setattr(parent, name, compiled)
    return len(targets)


@contextlib.contextmanager
def large_frame_decoding(
    vae, width: int, height: int, enabled: bool, threshold: int = LARGE_FRAME_PIXELS
) -> Iterator[bool]:
    """Tiled and sliced VAE decoding while decoding frames of ``width``×``height``, when ``enabled``
    and the frames have ``threshold`` pixels or more; the VAE's own settings are restored after.
    Yields whether it is on."""
    on = enabled and width * height >= threshold
    if not on:
        yield False
        return
    tiling, slicing = vae.use_tiling, vae.use_slicing
    vae.enable_tiling()
    vae.enable_slicing()
    try:
        yield True
    finally:
        vae.use_tiling, vae.use_slicing = tiling, slicing
