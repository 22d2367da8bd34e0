"""Seamless tiling: circular padding in the convolutions of the UNet, ControlNet and VAE.

A frame tiles left↔right (``x``) and/or top↔bottom (``y``) when every convolution sees the opposite
edge instead of zeros across the image border. Each padded ``Conv2d`` gets a forward pre-hook that
pads its input circularly on the tiled axes (one ``F.pad``), while its own padding is set to 0 on
those axes and kept on the others (the convolution zero-pads them itself, at no extra copy); leaving
the context removes the hooks and puts the padding back, so the model is unchanged for the next job. Attention is global over the image already, so nothing else needs to change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F


def _pad_hook(pad_h: int, pad_w: int):
    """Circular padding of the tiled axes, in one ``F.pad`` (the conv zero-pads the other axis itself)."""

    def hook(module, args):
        (x, *rest) = args
        return (F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="circular"), *rest)

    return hook


@contextlib.contextmanager
def seamless_tiling(
    models: Iterable[torch.nn.Module | None], tile_x: bool = False, tile_y: bool = False
) -> Iterator[int]:
    """Make every padded 2-D convolution of ``models`` wrap around on the chosen axes.

    Yields the number of convolutions changed; restores them on exit (also on errors). A no-op
    when neither axis is tiled.
    """
    changed: list[tuple[torch.nn.Conv2d, Any, Any]] = []  # (conv, its padding, its hook handle)
    try:
        if tile_x or tile_y:
            for model in models:
                if model is None:
                    continue
                for conv in model.modules():
                    if not isinstance(conv, torch.nn.Conv2d) or conv.padding_mode != "zeros":
                        continue
                    if isinstance(conv.padding, str) or conv.padding == (0, 0):
                        continue
                    pad_h, pad_w = conv.padding
                    handle = conv.register_forward_pre_hook(_pad_hook(pad_h if tile_y else 0, pad_w if tile_x else 0))
                    changed.append((conv, conv.padding, handle))
                    conv.padding = (0 if tile_y else pad_h, 0 if tile_x else pad_w)
        yield len(changed)
    finally:
        for conv, padding, handle in changed:
            handle.remove()
            conv.padding = padding
