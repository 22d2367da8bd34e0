"""Cancel inside the model's work, not only between denoising steps.

One UNet call on a large frame (or one VAE decode) can take minutes on a CPU, and the sampler checks
``should_cancel`` only between chunks. ``cancel_points`` puts forward pre-hooks on the blocks of the
UNet, the ControlNet and the VAE decoder (their resnets and attention modules, and their layers) for as long as
its ``with`` block runs: each hook raises the sampler's ``SamplingCancelled`` once ``should_cancel()``
is true, so a cancel lands within one block's time. Hooks are removed on exit; ``forward`` is never
replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from .sampler import SamplingCancelled

BLOCK_LISTS = ("down_blocks", "up_blocks", "controlnet_down_blocks")
BLOCKS = ("mid_block", "conv_in", "conv_out")
PARTS = ("resnets", "attentions", "downsamplers", "upsamplers")  # inside each block


def _blocks(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model's blocks, their parts and the parts' layers: the places worth a cancel check (hundreds)."""
    blocks: list[torch.nn.Module] = []
    for name in BLOCK_LISTS:
        blocks.extend(getattr(model, name, None) or [])
    blocks.extend(m for m in (getattr(model, name, None) for name in BLOCKS) if isinstance(m, torch.nn.Module))
    for block in blocks:
        yield block
        for part in PARTS:
            for module in getattr(block, part, None) or []:
                yield module
                yield from module.children()  # a resnet's norms and convolutions: ~1 s each at 2048² on a CPU


def cancel_modules(pipe) -> list[torch.nn.Module]:
    """Where ``cancel_points`` checks: the UNet, the ControlNet (if any) and the VAE decoder."""
    models = [pipe.unet, getattr(pipe, "controlnet", None), getattr(pipe.vae, "decoder", None)]
    return [block for model in models if model is not None for block in _blocks(model)]


@contextmanager
def cancel_points(pipe, should_cancel: Callable[[], bool]) -> Iterator[int]:
    """Check ``should_cancel()`` before every block of the pipeline's models; yields how many checks."""

    def check(module, args):
        if should_cancel():
            raise SamplingCancelled(f"cancelled inside {type(module).__name__}")

    handles = [module.register_forward_pre_hook(check) for module in cancel_modules(pipe)]
    try:
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()
