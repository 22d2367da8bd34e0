"""Initial noise for video sampling: ZS²'s dependency noise model and the PYoCo baselines.

All four generators share one calling convention::

    noise_fn(frames, shape, lam, *, generator=None, device=None, dtype=torch.float32,
             return_stats=False, **options) -> Tensor (frames, *shape)  [, NoiseStats]

``lam`` is the target *divergence* between consecutive frames (see ``noise_divergence``), a float or
a per-frame sequence. The baselines convert it to their own mixing coefficient α so that every model
reaches the same *expected* divergence for the same λ, which makes equal-λ comparisons fair.

The divergence and the paper's two-stage search follow docs/algorithm.md (Dependency noise model), which
fixes the paper's loose description and the bugs in its pseudocode; the default construction
(``search="exact"``) is the unbiased one of "Unbiased dependency noise" there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .defaults import NOISE_MODELS as NOISE_MODEL_NAMES
from .defaults import SEARCHES
from .schedule import per_frame

SQRT_E = math.sqrt(math.e)  # E[exp(y)·y] for y ~ N(0, 1): the divergence of independent noise


@dataclass
class NoiseStats:
    """Per-frame record of how each frame's noise was made (for benchmarks and job.json)."""

    target: list[float] = field(default_factory=list)  # λᵢ asked for (frame 0: 0.0, it has no predecessor)
    alpha: list[float] = field(default_factory=list)  # α of √α·εⁱ⁻¹ + √(1−α)·ε̃ per frame (frame 0: 0.0)
    divergence: list[float] = field(default_factory=list)  # achieved D(εⁱ, εⁱ⁻¹) (frame 0: 0.0)
    wrap_divergence: float | None = None  # D(ε⁰, εᵐ⁻¹) in loop mode

    @property
    def max_error(self) -> float:
        """Largest |D − λ| over frames 1..m−1."""
        errors = [abs(d - t) for d, t in zip(self.divergence[1:], self.target[1:])]
        return max(errors, default=0.0)

    def to_dict(self) -> dict:
        out: dict[str, object] = {"target": self.target, "alpha": self.alpha, "divergence": self.divergence}
        if self.wrap_divergence is not None:
            out["wrap_divergence"] = self.wrap_divergence
        return out


def noise_divergence(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The paper's "KL(x, y)": mean over (C, H, W) of exp(y)·(y − x), one value per leading index.

    This is ``F.kl_div(x, y, log_target=True, reduction="none")`` averaged over the last three axes.
    It is a signed proxy, not a true KL between distributions: independent N(0, I) noise gives
    ≈ √e ≈ 1.65 and identical noise gives 0.
    """
    y = y.to(x.dtype)
    return (torch.exp(y) * (y - x)).flatten(-3).mean(-1)


def alpha_for_divergence(lam: float, model: str = "dependency") -> float:
    """The mixing α whose *expected* divergence equals λ (the oracle of docs/algorithm.md).

    For εⁱ = √α·εⁱ⁻¹ + √(1−α)·z (dependency, progressive): E[D] = √e·(1 − √α).
    For the mixed model (shared + individual noise), consecutive frames share α: E[D] = √e·(1 − α).
    """
    ratio = min(max(lam / SQRT_E, 0.0), 1.0)
    if model == "mixed":
        return 1.0 - ratio
    return (1.0 - ratio) ** 2


def _randn(shape, generator, device, count: int | None = None) -> torch.Tensor:
    full = (count, *shape) if count is not None else tuple(shape)
    return torch.randn(full, generator=generator, device=device, dtype=torch.float32)


def _channel_centred(x: torch.Tensor) -> torch.Tensor:
    """``x`` minus each channel's mean (x: (C, H, W)): orthogonal to every per-channel constant."""
    return x - x.mean(dim=tuple(range(1, x.dim())), keepdim=True)


def _pinned_frame(prev: torch.Tensor, lam: float, generator, device, candidates: int) -> tuple[torch.Tensor, float]:
    """``search="exact"``: a Gaussian AR(1) step, pinned to D = λ along a direction no statistic reads.

    Proposal εᴳ = ρ·y + √(1 − ρ²)·z (y = εⁱ⁻¹, one fresh z ~ N(0, I)) with ρ = 1 − λ/A, A = mean(e^y·y)
    ≈ √e, so that E[D(εᴳ, y) | y] = λ exactly. D is linear in εⁱ with gradient −e^y/n, so
    εⁱ = εᴳ + t·d meets D = λ exactly with t = n·(D(εᴳ, y) − λ)/|d|² (zero mean given y), where d is
    e^y with its per-channel constants and its y component removed. As d ⊥ every channel's constant
    and d ⊥ y, each frame's mean, each channel's mean and the inner product with the previous frame are
    those of the Gaussian AR(1) step: no drift, no trend, lag-1 correlation 1 − λ/√e
    (docs/algorithm.md, "Unbiased dependency noise"). No random search: keeping a candidate for its D
    selects on its component along e^y, which is what made the paper's search drift, so one tensor is
    drawn and ``candidates`` is not used. λ past independence (λ > A) is pinned at A.
    """
    weight = torch.exp(prev)
    a_stat = float((weight * prev).mean())  # A = mean(e^y·y) ≈ √e: D(ρ·y + …, y) = A·(1 − ρ) − …
    target = min(lam, a_stat)
    rho = 1.0 - target / a_stat
    proposal = rho * prev + math.sqrt(1.0 - rho * rho) * _randn(prev.shape, generator, device)
    centred_weight = _channel_centred(weight)
    centred_prev = _channel_centred(prev)
    direction = (
        centred_weight - (centred_weight * centred_prev).sum() / (centred_prev * centred_prev).sum() * centred_prev
    )
    achieved = float((weight * (prev - proposal)).mean())  # D(proposal, prev), reusing e^y
    shift = prev.numel() * (achieved - target) / float((direction * direction).sum())
    return proposal + shift * direction, rho * rho


def _solve_angle(prev: torch.Tensor, cand: torch.Tensor, lam: float) -> float:
    """α ∈ [0, 1] that makes D(√α·prev + √(1−α)·cand, prev) = λ, solved in closed form.

    With s = √α = cos θ the divergence is D(θ) = A(1 − cos θ) − B sin θ, where A = mean(e^y·y) and
    B = mean(e^y·z) are two statistics of the pair. So A cos θ + B sin θ = A − λ, i.e.
    R cos(θ − φ) = A − λ with R = √(A² + B²), φ = atan2(B, A). The roots in [0, π/2], plus the
    interval ends, are evaluated and the best one is kept (the one with the largest α on ties, so the
    search never adds more change than asked for).
    """
    weight = torch.exp(prev)
    a = float((weight * prev).mean())
    b = float((weight * cand).mean())

    def divergence(theta: float) -> float:
        return a * (1.0 - math.cos(theta)) - b * math.sin(theta)

    thetas = [0.0, math.pi / 2]
    r = math.hypot(a, b)
    if r > 0:
        phi = math.atan2(b, a)
        c = (a - lam) / r
        if -1.0 <= c <= 1.0:
            delta = math.acos(c)
            thetas += [t for t in (phi - delta, phi + delta) if 0.0 <= t <= math.pi / 2]
    best = min(thetas, key=lambda t: (abs(divergence(t) - lam), t))
    return min(max(math.cos(best) ** 2, 0.0), 1.0)


def _solve_paper(prev: torch.Tensor, cand: torch.Tensor, lam: float, iterations: int = 15) -> float:
    """The paper's line search (Algorithm 1, lines 11-18), α clamped to [0, 1], best α kept.

    Start at α = 0 with step δ = 0.1; step forward while the loss (D − λ)² decreases, else halve δ.
    Taken literally it only moves α upwards, so it can overshoot and stick (docs/algorithm.md).
    """

    def loss(alpha: float) -> float:
        mixed = math.sqrt(alpha) * prev + math.sqrt(1.0 - alpha) * cand
        return (float(noise_divergence(mixed, prev)) - lam) ** 2

    alpha, delta = 0.0, 0.1
    best_alpha, best_loss = alpha, loss(alpha)
    current = best_loss
    for _ in range(iterations):
        trial = min(alpha + delta, 1.0)
        trial_loss = loss(trial)
        if trial_loss < current:
            alpha, current = trial, trial_loss
            if trial_loss < best_loss:
                best_alpha, best_loss = trial, trial_loss
        else:
            delta /= 2.0
    return best_alpha


def _searched(solve):
    """The paper's two stages: keep the candidate whose D to εⁱ⁻¹ is closest to λ, then mix with α.

    Biased: D(z, y) = A − B(z), so the kept candidate is the one with the largest component along
    e^y (B closest to A − λ); e^y is mostly the all-ones direction, so each frame inherits a positive
    mean that the mix carries on (docs/algorithm.md, "Unbiased dependency noise").
    """

    def frame(prev: torch.Tensor, lam: float, generator, device, candidates: int) -> tuple[torch.Tensor, float]:
        pool = _randn(prev.shape, generator, device, count=candidates)
        cand = pool[int((noise_divergence(pool, prev) - lam).abs().argmin())]
        alpha = solve(prev, cand, lam)
        return math.sqrt(alpha) * prev + math.sqrt(1.0 - alpha) * cand, alpha

    return frame


# search name → how frame i is made from frame i−1: (prev, λᵢ, generator, device, candidates) -> (εⁱ, α).
# "exact": unbiased, D = λ exactly (the default); "paper": the paper's random search + line search;
# "closest": the paper's random search + the closed-form α (this project's default before issue 16).
FRAME_MAKERS = {"exact": _pinned_frame, "paper": _searched(_solve_paper), "closest": _searched(_solve_angle)}


def dependency_noise(
    frames: int,
    shape: Sequence[int],
    lam: float | Sequence[float],
    *,
    generator: torch.Generator | None = None,
    candidates: int = 10,
    search: str = "exact",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    return_stats: bool = False,
):
    """ZS²'s dependency noise model: each frame's noise diverges from the previous one by λᵢ.

    ``search="exact"`` (default): a Gaussian AR(1) step εⁱ⁻¹ → ρ·εⁱ⁻¹ + √(1−ρ²)·z, ρ = 1 − λᵢ/√e,
    then pinned to D(εⁱ, εⁱ⁻¹) = λᵢ exactly along a direction orthogonal to εⁱ⁻¹ and to every
    per-channel constant: every frame stays N(0, I) with lag-1 correlation ρ, frame and channel means
    follow the AR(1) chain exactly (docs/algorithm.md, "Unbiased dependency noise"). ``"paper"``: the paper's two stages,
    random search over ``candidates`` draws (keep the D closest to λᵢ) then its line search for α in
    εⁱ = √α·εⁱ⁻¹ + √(1−α)·ε̃. ``"closest"``: the same random search with α in closed form (D exact,
    but the selection makes the frame mean drift; kept to reproduce earlier clips).

    ``lam``: a float, or a list of length ``frames`` (entry 0 ignored) or ``frames − 1`` (transitions).
    Work happens in float32 on ``device``; the result is cast to ``dtype``.
    """
    if search not in FRAME_MAKERS:
        raise ValueError(f"search must be one of {SEARCHES}, got {search!r}")
    if candidates < 1:
        raise ValueError(f"candidates must be ≥ 1, got {candidates}")
    targets = per_frame(lam, frames, "lam")
    make_frame = FRAME_MAKERS[search]
    stats = NoiseStats()
    out: list[torch.Tensor] = []
    for i in range(frames):
        if not out:
            current = _randn(shape, generator, device)
            stats.target.append(0.0)
            stats.alpha.append(0.0)
            stats.divergence.append(0.0)
        else:
            current, alpha = make_frame(out[-1], targets[i], generator, device, candidates)
            stats.target.append(targets[i])
            stats.alpha.append(alpha)
            stats.divergence.append(float(noise_divergence(current, out[-1])))
        out.append(current)
    noise = torch.stack(out).to(dtype) if out else torch.empty((0, *shape), device=device, dtype=dtype)
    return (noise, stats) if return_stats else noise


def _build(frames, shape, lam, generator, device, dtype, return_stats, make_frame):
    """Shared loop of the baselines: ``make_frame(i, previous, λᵢ) -> (noise, α)`` per frame."""
    targets = per_frame(lam, frames, "lam")
    stats = NoiseStats()
    out = []
    for i in range(frames):
        prev = out[-1] if out else None
        current, alpha = make_frame(i, prev, targets[i])
        stats.target.append(targets[i])
        stats.alpha.append(alpha)
        stats.divergence.append(float(noise_divergence(current, prev)) if prev is not None else 0.0)
        out.append(current)
    noise = torch.stack(out).to(dtype) if out else torch.empty((0, *shape), device=device, dtype=dtype)
    return (noise, stats) if return_stats else noise


def progressive_noise(frames, shape, lam, *, generator=None, device=None, dtype=torch.float32, return_stats=False):
    """PYoCo's progressive model: εⁱ = √α·εⁱ⁻¹ + √(1−α)·ε_indⁱ, α from λ (same expected D as ZS²)."""

    def make_frame(i, prev, target):
        fresh = _randn(shape, generator, device)
        if prev is None:
            return fresh, 0.0
        alpha = alpha_for_divergence(target, "progressive")
        return math.sqrt(alpha) * prev + math.sqrt(1.0 - alpha) * fresh, alpha

    return _build(frames, shape, lam, generator, device, dtype, return_stats, make_frame)


def mixed_noise(frames, shape, lam, *, generator=None, device=None, dtype=torch.float32, return_stats=False):
    """PYoCo's mixed model: εⁱ = √α·ε_shared + √(1−α)·ε_indⁱ, α from λ (same expected D as ZS²).

    Every frame, the first included, is a shared + individual mix; frame 0 uses frame 1's α.
    """
    shared = _randn(shape, generator, device)
    targets = per_frame(lam, frames, "lam")
    first_target = targets[1] if frames > 1 else 0.0

    def make_frame(i, prev, target):
        alpha = alpha_for_divergence(target if i > 0 else first_target, "mixed")
        fresh = _randn(shape, generator, device)
        return math.sqrt(alpha) * shared + math.sqrt(1.0 - alpha) * fresh, alpha

    return _build(frames, shape, lam, generator, device, dtype, return_stats, make_frame)


def independent_noise(frames, shape, lam=None, *, generator=None, device=None, dtype=torch.float32, return_stats=False):
    """Independent N(0, I) noise per frame: plain per-frame sampling (``lam`` is ignored)."""

    def make_frame(i, prev, target):
        return _randn(shape, generator, device), 0.0

    return _build(frames, shape, 0.0, generator, device, dtype, return_stats, make_frame)


def _periodic_correlation(frames: int, r: float) -> torch.Tensor:
    """Correlation by frame distance of an AR(1) process wrapped onto a ring of ``frames`` frames.

    c(d) = (rᵈ + rᵐ⁻ᵈ) / (1 + rᵐ): the sum of the AR(1) correlations over every winding, so the
    circulant matrix it defines is positive semi-definite and c(0) = 1.
    """
    d = torch.arange(frames, dtype=torch.float64)
    return (r**d + r ** (frames - d)) / (1.0 + r**frames)


def _ring_parameter(frames: int, rho: float) -> float:
    """The r whose wrapped correlation at distance 1 equals ``rho`` (bisection; c(1) rises with r)."""
    if frames < 2 or rho <= 0.0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if float(_periodic_correlation(frames, mid)[1]) < rho:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def loop_noise(frames, shape, lam, *, generator=None, device=None, dtype=torch.float32, return_stats=False):
    """A closed noise path for seamless loops: frame m−1 flows into frame 0 like any neighbours.

    Construction: the frames are a stationary Gaussian process on a ring. Their correlation matrix is
    circulant, c(d) = (rᵈ + rᵐ⁻ᵈ)/(1 + rᵐ) (an AR(1) wrapped onto the ring, positive semi-definite),
    with r chosen so that neighbours (including m−1 → 0) correlate with ρ = 1 − λ/√e, the correlation
    at which dependency noise has expected divergence λ. Frames are drawn as L·Z with C = L·Lᵀ (eigen-
    decomposition) and Z standard normal, so every frame is exactly N(0, I) marginally and every
    neighbouring pair has expected divergence λ; a single pair deviates by sampling noise only (there
    is no per-pair search as in ``dependency_noise``: a closed path cannot also pin each pair exactly).
    A per-frame λ list is averaged: a seamless loop needs one stationary rate of change.
    """
    targets = per_frame(lam, frames, "lam")
    mean_lam = sum(targets[1:]) / (frames - 1) if frames > 1 else 0.0
    rho = min(max(1.0 - mean_lam / SQRT_E, 0.0), 1.0)
    r = _ring_parameter(frames, rho)
    corr = _periodic_correlation(frames, r)
    circulant = torch.stack([corr.roll(i) for i in range(frames)])
    eigenvalues, vectors = torch.linalg.eigh(circulant)
    mix = (vectors * eigenvalues.clamp(min=0).sqrt()).to(torch.float32)
    numel = math.prod(shape)
    z = _randn((numel,), generator, device, count=frames)
    noise = (mix.to(z.device) @ z).view(frames, *shape)
    stats = NoiseStats(target=[0.0] + [mean_lam] * (frames - 1), alpha=[0.0] + [rho**2] * (frames - 1))
    stats.divergence = [0.0] + [float(d) for d in noise_divergence(noise[1:], noise[:-1])]
    stats.wrap_divergence = float(noise_divergence(noise[0], noise[-1])) if frames > 1 else 0.0
    noise = noise.to(dtype)
    return (noise, stats) if return_stats else noise


# Name → generator for every name of defaults.NOISE_MODELS: each name ``x`` is served by ``x_noise``
# (a name without its generator fails here, at import).
NOISE_MODELS = {name: globals()[f"{name}_noise"] for name in NOISE_MODEL_NAMES}


def make_noise(model: str, frames: int, shape, lam, *, loop: bool = False, **kwargs):
    """Dispatch by name; options a model does not take (candidates, search) are dropped for it.

    ``loop``: the chain models (dependency, progressive) become ``loop_noise``, a closed path; the
    mixed and independent models already treat the wrap pair like any other pair.
    """
    if model not in NOISE_MODELS:
        raise ValueError(f"noise model must be one of {tuple(NOISE_MODELS)}, got {model!r}")
    if loop and model in ("dependency", "progressive"):
        kwargs.pop("candidates", None)
        kwargs.pop("search", None)
        return loop_noise(frames, shape, lam, **kwargs)
    if model != "dependency":
        kwargs.pop("candidates", None)
        kwargs.pop("search", None)
    return NOISE_MODELS[model](frames, shape, lam, **kwargs)
