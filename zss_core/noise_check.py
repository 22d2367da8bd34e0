"""Is a clip's initial noise N(0, I) in every frame, with the asked divergence between frames?

One definition of the statistics, in standard-error units, shared by tests/test_noise.py and
bench/noise.py so that both judge every noise model the same way (docs/algorithm.md, "Unbiased
dependency noise"). Under N(0, I) with n values per frame: a frame's mean has SE 1/√n, its std
1/√(2n), a channel's mean √(C/n). The trend is the least-squares slope of the frame mean against the
frame index, the level is the mean of all frame means (a drift shows as an offset); their SEs come from
the model's own correlation between frames (an AR(1) chain for the dependency and progressive models),
not from an independence assumption that would make them ~10× too small at λ = 0.01.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .noise import noise_divergence


@dataclass
class NoiseCheck:
    """Worst cases over all clips and frames; every ``*_se`` field is in standard errors."""

    frame_mean_se: float  # max |frame mean| / (1/√n)
    frame_std_se: float  # max |frame std − 1| / (1/√(2n))
    channel_mean_se: float  # max |channel mean| / √(C/n)
    level_se: float  # mean of all frame means / its SE under the model (a constant offset, e.g. a drift)
    trend_se: float  # slope of the frame mean over frames (averaged over clips) / its SE under the model
    trend_slope: float  # that slope, per frame
    std_min: float
    std_max: float
    divergence_error: float  # max |D(εⁱ, εⁱ⁻¹) − λ| over transitions
    lag1: float  # mean correlation between consecutive frames
    lag1_closed_form: float  # what the model predicts
    lag1_error: float  # max |correlation − closed form| over transitions


def chain_correlation(frames: int, rho: float) -> list[float]:
    """Correlation of two frames d apart in an AR(1) chain with lag-1 correlation ρ: ρᵈ, d = 0..frames−1."""
    return [rho**d for d in range(frames)]


def _frame_mean_covariance(correlation: Sequence[float], values_per_frame: int) -> torch.Tensor:
    """Cov(mᵢ, mⱼ) = correlation[|i − j|]/n of the frame means m under the model."""
    corr = torch.tensor(correlation, dtype=torch.float64)
    t = torch.arange(len(correlation))
    return corr[(t[:, None] - t[None, :]).abs()] / values_per_frame


def _linear_standard_error(
    weights: torch.Tensor, correlation: Sequence[float], values_per_frame: int, clips: int
) -> float:
    """SE of wᵀm (m: one clip's frame means) averaged over ``clips`` independent clips: √(wᵀΣw / clips)."""
    return math.sqrt(float(weights @ _frame_mean_covariance(correlation, values_per_frame) @ weights) / clips)


def trend_weights(frames: int) -> torch.Tensor:
    """c with cᵀm = the least-squares slope of m against the frame index: c = (t − t̄)/Σ(t − t̄)²."""
    t = torch.arange(frames, dtype=torch.float64)
    return (t - t.mean()) / (t - t.mean()).pow(2).sum()


def trend_standard_error(correlation: Sequence[float], values_per_frame: int, clips: int) -> float:
    """SE of the least-squares slope of the frame mean against the frame index, averaged over clips.

    ``correlation[d]``: the model's correlation between frames d apart, so Cov(mᵢ, mⱼ) =
    correlation[|i − j|]/n for the frame means m; the slope is cᵀm, hence Var = cᵀΣc per clip.
    """
    return _linear_standard_error(trend_weights(len(correlation)), correlation, values_per_frame, clips)


def lag1_correlations(clip: torch.Tensor) -> torch.Tensor:
    """Pearson correlation between each frame and the next over all their values, shape (frames − 1,)."""
    flat = clip.flatten(1).double()
    flat = flat - flat.mean(1, keepdim=True)
    flat = flat / flat.norm(dim=1, keepdim=True)
    return (flat[1:] * flat[:-1]).sum(1)


def check_noise(clips: torch.Tensor, lam: float | None, correlation: Sequence[float]) -> NoiseCheck:
    """Statistics of ``clips`` (clips, frames, C, H, W) against N(0, I) per frame.

    ``lam``: the target divergence of consecutive frames (None: not checked, e.g. independent noise);
    ``correlation``: the model's correlation between frames d apart, length ``frames`` (entry 1 is the
    closed-form lag-1 correlation).
    """
    count, frames, channels = clips.shape[:3]
    n = clips[0, 0].numel()
    values = clips.double()
    means = values.flatten(2).mean(2)  # (clips, frames)
    stds = values.flatten(2).std(2)
    channel_means = values.flatten(3).mean(3)  # (clips, frames, C)
    slope = float((means @ trend_weights(frames)).mean())
    level_weights = torch.full((frames,), 1.0 / frames, dtype=torch.float64)
    level = float(means.mean())
    lag1 = torch.cat([lag1_correlations(clip) for clip in clips])
    if lam is None or frames < 2:
        divergence_error = float("nan")
    else:
        divergence = noise_divergence(values[:, 1:], values[:, :-1])
        divergence_error = float((divergence - lam).abs().max())
    return NoiseCheck(
        frame_mean_se=float(means.abs().max()) * math.sqrt(n),
        frame_std_se=float((stds - 1).abs().max()) * math.sqrt(2 * n),
        channel_mean_se=float(channel_means.abs().max()) * math.sqrt(n / channels),
        level_se=level / _linear_standard_error(level_weights, correlation, n, count),
        trend_se=slope / trend_standard_error(correlation, n, count),
        trend_slope=slope,
        std_min=float(stds.min()),
        std_max=float(stds.max()),
        divergence_error=divergence_error,
        lag1=float(lag1.mean()),
        lag1_closed_form=float(correlation[1]),
        lag1_error=float((lag1 - correlation[1]).abs().max()),
    )
