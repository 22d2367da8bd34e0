"""Temporal momentum attention (TMA) as a diffusers attention processor.

In every self-attention layer, frame i attends with its own query to momentum keys and values:
K̈¹ = K¹, K̈ⁱ = μᵢ·K̈ⁱ⁻¹ + (1 − μᵢ)·Kⁱ (same for V). In closed form K̈ = W·K over the frame axis, W
lower-triangular with rows summing to 1 (``momentum_weights``). Because the rows sum to 1 and the
K/V projections are affine, mixing the (normed) hidden states before ``to_k``/``to_v`` is exactly the
same as mixing K and V after them, and costs one einsum instead of two.

TMA is causal over frames, so a clip can be processed in chunks within a denoising step: each
processor carries its layer's last momentum state from one chunk to the next (``TemporalState``
says which frames the current batch holds). See docs/algorithm.md ▸ Temporal momentum attention.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .schedule import loop_mu_list, mu_list


def recurrence_weights(mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed form of the momentum recurrence over n frames with a carried-in state.

    For x̄ᵢ = μᵢ·x̄ᵢ₋₁ + (1 − μᵢ)·xᵢ (i = 0..n−1, x̄₋₁ the carry) returns (W, c) with
    x̄ = W·x + c·carry: W[i, j] = (1 − μⱼ)·Π_{l=j+1..i} μₗ and c[i] = Π_{l=0..i} μₗ.
    With μ₀ = 0 (no carry: the clip's first frame) W is the matrix of docs/algorithm.md and c = 0.
    """
    n = mu.shape[0]
    w = torch.zeros(n, n, dtype=mu.dtype, device=mu.device)
    c = torch.zeros(n, dtype=mu.dtype, device=mu.device)
    prev_row = torch.zeros(n, dtype=mu.dtype, device=mu.device)
    prev_c = torch.ones((), dtype=mu.dtype, device=mu.device)
    for i in range(n):  # O(n²) on an n×n matrix, once per chunk: negligible next to attention
        row = mu[i] * prev_row
        row[i] = 1.0 - mu[i]
        w[i] = row
        c[i] = mu[i] * prev_c
        prev_row, prev_c = row, c[i]
    return w, c


def momentum_weights(frames: int, mu: float | Sequence[float]) -> torch.Tensor:
    """The (frames × frames) lower-triangular matrix W of TMA, rows summing to 1 (float64)."""
    values = torch.tensor(mu_list(mu, frames), dtype=torch.float64)
    if frames:
        values[0] = 0.0
    w, _ = recurrence_weights(values)
    return w


def cyclic_momentum_weights(frames: int, mu: float | Sequence[float]) -> torch.Tensor:
    """W for loop mode: the momentum recurrence run around a ring until it is periodic.

    x̄ᵢ = μᵢ·x̄ᵢ₋₁ + (1 − μᵢ)·xᵢ with x̄₋₁ = x̄ₘ₋₁, i.e. W = (I − diag(μ)·S)⁻¹·diag(1 − μ), S the cyclic
    shift. Rows sum to 1 (a constant sequence is a fixed point); with one μ for every frame, W is
    circulant, W[i, j] = (1 − μ)·μ^((i − j) mod m) / (1 − μᵐ), so frame 0 carries momentum from the end
    of the clip exactly as frame 1 carries it from frame 0. μ = 0 is the identity; μ = 1 everywhere
    (no unique periodic state) is taken as its limit, the uniform average. ``mu`` entry 0 is the wrap
    transition (m − 1 → 0); a list of length m − 1 reuses their mean for it.
    """
    values = torch.tensor(loop_mu_list(mu, frames), dtype=torch.float64)
    if torch.all(values >= 1.0):
        return torch.full((frames, frames), 1.0 / frames, dtype=torch.float64)
    shift = torch.roll(torch.eye(frames, dtype=torch.float64), 1, dims=0)  # (S·x)ᵢ = xᵢ₋₁
    system = torch.eye(frames, dtype=torch.float64) - values[:, None] * shift
    return torch.linalg.solve(system, torch.diag(1.0 - values))


@dataclass
class TemporalState:
    """What the current UNet call holds: set by the sampler before each chunk, read by processors.

    ``mu`` lists μ for every frame of the clip; ``start``/``count`` say which frames the batch holds
    (the batch is ``groups`` copies of them, e.g. [uncond, cond] under classifier-free guidance);
    ``step`` changes every denoising step so processors drop carries from the previous step.
    """

    mu: list[float] = field(default_factory=list)
    start: int = 0
    count: int = 0
    step: int = 0
    loop: bool = False
    _weights: dict = field(default_factory=dict, repr=False)  # built once per chunk shape, shared by all layers

    @property
    def frames(self) -> int:
        return len(self.mu)

    def chunk_weights(self, device, dtype, carried: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, c) of ``recurrence_weights`` for the current chunk, on ``device``.

        Every self-attention layer of every step asks for the same few matrices: they are built once
        (on the CPU, in float64) and kept, so the hot path makes no small kernels or host→device copies.
        """
        key = ("chunk", self.start, self.count, carried, device, dtype)
        if key not in self._weights:
            values = torch.tensor(self.mu[self.start : self.start + self.count], dtype=torch.float64)
            if self.start == 0 and not carried:
                values[0] = 0.0  # the clip's first frame starts the recurrence
            w, c = recurrence_weights(values)
            self._weights[key] = (w.to(device=device, dtype=dtype), c.to(device=device, dtype=dtype))
        return self._weights[key]

    def cyclic_weights(self, device, dtype) -> torch.Tensor:
        key = ("cyclic", device, dtype)
        if key not in self._weights:
            self._weights[key] = cyclic_momentum_weights(self.frames, self.mu).to(device=device, dtype=dtype)
        return self._weights[key]


class TemporalMomentumAttnProcessor:
    """Self-attention where frame i attends to the momentum average of frames 1..i's keys/values.

    Mirrors diffusers' ``AttnProcessor2_0`` (spatial norm, 4-D inputs, group norm, residual, output
    rescale) and changes only what keys and values are computed from. The batch is split into groups
    of ``state.count`` frames (one group per classifier-free-guidance half), and the momentum runs
    within each group, never across. One instance per layer: it owns that layer's chunk carry.
    """

    def __init__(self, state: TemporalState):
        self.state = state
        self._carry: torch.Tensor | None = None
        self._carry_key: tuple[int, int] | None = None

    def _mix(self, hidden: torch.Tensor) -> torch.Tensor:
        state = self.state
        frames = state.count
        batch = hidden.shape[0]
        if frames <= 0 or batch % frames:
            raise RuntimeError(f"TMA: batch of {batch} does not hold whole groups of {frames} frames")
        groups = hidden.view(batch // frames, frames, *hidden.shape[1:])
        if state.loop and frames == state.frames:  # the whole loop at once: exact cyclic momentum
            w = state.cyclic_weights(hidden.device, hidden.dtype)
            return _mix(w, groups).reshape(hidden.shape)
        carry = self._incoming_carry()
        w, c = state.chunk_weights(hidden.device, hidden.dtype, carried=carry is not None)
        mixed = _mix(w, groups)
        if carry is not None:
            mixed = mixed + c.view(1, frames, *[1] * (hidden.dim() - 1)) * carry.unsqueeze(1)
        self._carry = mixed[:, -1].detach()
        self._carry_key = (state.step, state.start + frames)
        return mixed.reshape(hidden.shape)

    def _incoming_carry(self) -> torch.Tensor | None:
        """The momentum state entering this chunk: the previous chunk's last frame.

        Loop mode in chunks: the first chunk takes the wrap state (the clip's last frame) from the
        previous denoising step, since this step's is not computed yet: exact except for that one-step
        lag on the wrap term, and memory stays bounded by the chunk (none at the very first step).
        """
        state = self.state
        if state.start > 0:
            if self._carry is None or self._carry_key != (state.step, state.start):
                raise RuntimeError("TMA: chunks must be processed in frame order within a denoising step")
            return self._carry
        if state.loop and self._carry is not None and self._carry_key == (state.step - 1, state.frames):
            return self._carry
        return None

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise ValueError("TemporalMomentumAttnProcessor is for self-attention (attn1) layers only")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)

        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)

        batch_size, sequence_length, _ = hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        context = self._mix(hidden_states)
        key = attn.to_k(context)
        value = attn.to_v(context)

        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        hidden_states = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)

        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def is_self_attention(name: str) -> bool:
    """diffusers names each processor '<path>.attn1.processor' (self) or '.attn2.processor' (cross)."""
    return name.endswith("attn1.processor")


@contextlib.contextmanager
def temporal_momentum_attention(models, state: TemporalState) -> Iterator[list[TemporalMomentumAttnProcessor]]:
    """Install TMA on every ``attn1`` of the given UNet/ControlNet models; restore on exit.

    Processors are swapped through ``set_attn_processor`` with a full dict (cross-attention keeps
    its processor object), and the originals are put back even if sampling raises or is cancelled.
    """
    models = [m for m in models if m is not None]
    originals = [dict(m.attn_processors) for m in models]
    installed: list[TemporalMomentumAttnProcessor] = []
    try:
        for model, procs in zip(models, originals):
            swapped = {}
            for name, proc in procs.items():
                if is_self_attention(name):
                    swapped[name] = TemporalMomentumAttnProcessor(state)
                    installed.append(swapped[name])
                else:
                    swapped[name] = proc
            model.set_attn_processor(swapped)
        yield installed
    finally:
        for model, procs in zip(models, originals):
            model.set_attn_processor(procs)


def _mix(w: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """W · groups over the frame axis (g, frames, …): one batched matmul on the flattened features, which
    is what ``einsum("ij,gj...->gi...")`` computes, without its permute copies (1.4× faster on CPU)."""
    return torch.matmul(w, groups.flatten(2)).view(groups.shape)
