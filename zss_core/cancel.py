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


SLICE_ELEMENTS = 2**26  # queries × keys per attention slice: ~0.1 s on a CPU core


class SlicedAttention:
    """An attention processor that computes the attention in query slices, checking for a cancel between
    them: the VAE's mid-block attention spans every latent pixel (16384 tokens at 1024², 65536 at 2048²)
    and as one call it cannot be interrupted (seconds at 1024², minutes at 2048² on a CPU). Slicing over
    queries is exact: each query's softmax runs over all keys either way. Only the plain self-attention
    the VAE uses is sliced; any other call goes to the processor it replaced."""

    def __init__(self, inner, should_cancel: Callable[[], bool], slice_elements: int = SLICE_ELEMENTS):
        self.inner, self.should_cancel, self.slice_elements = inner, should_cancel, slice_elements

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kw):
        if encoder_hidden_states is not None or attention_mask is not None or attn.spatial_norm is not None:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kw)
        if attn.norm_q is not None or attn.norm_k is not None:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kw)
        residual, shape = hidden_states, hidden_states.shape
        if hidden_states.ndim == 4:  # (batch, channels, h, w) → (batch, tokens, channels)
            hidden_states = hidden_states.flatten(2).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        batch = hidden_states.shape[0]
        q, k, v = (
            proj(hidden_states).view(batch, -1, attn.heads, proj.out_features // attn.heads).transpose(1, 2)
            for proj in (attn.to_q, attn.to_k, attn.to_v)
        )
        out = torch.empty_like(q)
        step = max(1, self.slice_elements // k.shape[2])
        for start in range(0, q.shape[2], step):
            if self.should_cancel():
                raise SamplingCancelled("cancelled inside the VAE's attention")
            out[:, :, start : start + step] = torch.nn.functional.scaled_dot_product_attention(
                q[:, :, start : start + step], k, v, scale=attn.scale
            )
        hidden_states = attn.to_out[1](attn.to_out[0](out.transpose(1, 2).reshape(batch, -1, attn.inner_dim)))
        if len(shape) == 4:
            hidden_states = hidden_states.transpose(1, 2).reshape(shape)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def vae_attentions(pipe) -> list:
    """The VAE decoder's attention modules (its mid block's)."""
    from diffusers.models.attention_processor import Attention

    decoder = getattr(pipe.vae, "decoder", None)
    return [m for m in (decoder.modules() if decoder is not None else []) if isinstance(m, Attention)]


@contextmanager
def cancel_points(pipe, should_cancel: Callable[[], bool]) -> Iterator[int]:
    """Check ``should_cancel()`` before every block of the pipeline's models and between slices of the
    VAE's attention; yields how many hooks. Hooks and processors are restored on exit."""

    def check(module, args):
        if should_cancel():
            raise SamplingCancelled(f"cancelled inside {type(module).__name__}")

    handles = [module.register_forward_pre_hook(check) for module in cancel_modules(pipe)]
    replaced = [(attn, attn.processor) for attn in vae_attentions(pipe)]
    for attn, processor in replaced:
        attn.set_processor(SlicedAttention(processor, should_cancel))
    try:
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()
        for attn, processor in replaced:
            attn.set_processor(processor)
