"""Seamless loops, tileable frames and prompt travel (issue 6), on noise, processors and the tiny model."""

import itertools
import math

import numpy as np
import pytest
import torch

from zss_core.attention import cyclic_momentum_weights
from zss_core.noise import (
    SQRT_E,
    dependency_noise,
    loop_noise,
    make_noise,
    noise_divergence,
)
from zss_core.prompts import interpolate_keys, slerp
from zss_core.sampler import sample_video
from zss_core.schedule import loop_mu_list, normalize_schedule, prompt_weights
from zss_core.tiling import seamless_tiling

SHAPE = (4, 64, 64)
SIZE = dict(width=64, height=64, steps=4)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def wrap_ratio(frames):
    """|last → first| over the mean neighbouring difference: 1 means the loop is seamless."""
    frames = [np.asarray(f, dtype=np.float32) for f in frames]
    neighbours = np.mean([np.abs(frames[i + 1] - frames[i]).mean() for i in range(len(frames) - 1)])
    return float(np.abs(frames[0] - frames[-1]).mean() / neighbours)


def seam_ratio(image, axis):
    """Difference across the wrap boundary over the mean difference between neighbouring columns/rows."""
    image = np.asarray(image, dtype=np.float32)
    inner = np.abs(np.diff(image, axis=axis)).mean()
    first, last = np.take(image, 0, axis=axis), np.take(image, -1, axis=axis)
    return float(np.abs(first - last).mean() / inner)


# --- loop noise -----------------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [0.01, 0.1])
def test_loop_noise_marginals_and_neighbour_divergence_including_the_wrap(lam):
    frames = 12
    noise, stats = loop_noise(frames, SHAPE, lam, generator=gen(1), return_stats=True)
    flat = noise.flatten(1)
    assert flat.mean(1).abs().max() < 0.05 and (flat.std(1) - 1).abs().max() < 0.05
    pairs = torch.stack([noise_divergence(noise[(i + 1) % frames], noise[i]) for i in range(frames)])
    # No per-pair search on a closed path: each pair's D is λ plus sampling noise. D is a mean of
    # N = 16384 terms e^y·(y − x) whose spread is dominated by e^y·√(1−ρ²)·z, so its standard error
    # is ≈ e·√(1−ρ²)/√N; allow 4 of them per pair, and 4/√m for the mean over the m pairs.
    rho = 1 - lam / SQRT_E
    sigma = math.e * math.sqrt(1 - rho**2) / math.sqrt(noise[0].numel())
    assert (pairs - lam).abs().max() < 4 * sigma, (pairs, sigma)
    assert abs(float(pairs.mean()) - lam) < 4 * sigma / math.sqrt(frames)
    assert stats.wrap_divergence == pytest.approx(float(pairs[-1]), rel=1e-5)


def test_loop_noise_is_seeded():
    assert torch.equal(loop_noise(6, SHAPE, 0.1, generator=gen(3)), loop_noise(6, SHAPE, 0.1, generator=gen(3)))
    assert not torch.equal(loop_noise(6, SHAPE, 0.1, generator=gen(3)), loop_noise(6, SHAPE, 0.1, generator=gen(4)))


def test_loop_noise_closes_the_wrap_gap_that_the_chain_leaves_open():
    frames = 16
    looped = make_noise("dependency", frames, SHAPE, 0.05, generator=gen(2), loop=True)
    chain = dependency_noise(frames, SHAPE, 0.05, generator=gen(2))
    assert wrap_ratio(looped) < 1.2
    assert wrap_ratio(chain) > 2.0


# --- cyclic momentum -----------------------------------------------------------------------------


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.98, 1.0])
def test_cyclic_weights_rows_sum_to_one_and_are_circulant(mu):
    w = cyclic_momentum_weights(6, mu)
    assert torch.allclose(w.sum(1), torch.ones(6, dtype=w.dtype))
    assert torch.allclose(w, torch.stack([w[0].roll(i) for i in range(6)]))
    assert (w >= -1e-12).all()


def test_cyclic_weights_identity_at_zero_and_recurrence_around_the_ring():
    assert torch.allclose(cyclic_momentum_weights(5, 0.0), torch.eye(5, dtype=torch.float64))
    mus = [0.3, 0.9, 0.5, 0.8]
    w = cyclic_momentum_weights(4, mus)
    x = torch.randn(4, 3, dtype=torch.float64)
    mixed = w @ x
    values = loop_mu_list(mus, 4)
    for i in range(4):  # x̄ᵢ = μᵢ·x̄ᵢ₋₁ + (1 − μᵢ)·xᵢ, with frame 0 following frame 3
        assert torch.allclose(mixed[i], values[i] * mixed[i - 1] + (1 - values[i]) * x[i])


# --- loops on the model --------------------------------------------------------------------------


def test_loop_mode_closes_the_clip_on_decoded_frames(tiny_pipe):
    plain = sample_video(tiny_pipe, "waves", frames=8, lam=0.1, seed=0, output_type="np", **SIZE)
    looped = sample_video(tiny_pipe, "waves", frames=8, lam=0.1, seed=0, loop=True, output_type="np", **SIZE)
    assert wrap_ratio(looped.frames) < 1.3
    assert wrap_ratio(plain.frames) > 1.5 * wrap_ratio(looped.frames)


def test_loop_mode_in_chunks_stays_close_to_the_whole_loop(tiny_pipe):
    whole = sample_video(tiny_pipe, "waves", frames=8, lam=0.1, loop=True, output_type="np", **SIZE)
    chunked = sample_video(tiny_pipe, "waves", frames=8, lam=0.1, loop=True, chunk=3, output_type="np", **SIZE)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(whole.frames, chunked.frames))
    assert diff < 0.05  # the wrap term lags one denoising step when chunked (documented)
    assert wrap_ratio(chunked.frames) < 1.3


# --- tiling --------------------------------------------------------------------------------------


def test_tiled_unet_commutes_with_circular_shifts(tiny_pipe):
    unet = tiny_pipe.unet
    x = torch.randn(1, 4, 8, 8, generator=gen(5))
    text = torch.randn(1, 77, unet.config.cross_attention_dim, generator=gen(6))
    shift = 2  # a multiple of the UNet's total downsampling (2)

    def run(latent):
        with torch.no_grad():
            return unet(latent, 10, encoder_hidden_states=text).sample

    with seamless_tiling([unet], tile_x=True, tile_y=True) as changed:
        assert changed > 0
        tiled_gap = (run(x.roll(shift, -1)) - run(x).roll(shift, -1)).abs().max()
    plain_gap = (run(x.roll(shift, -1)) - run(x).roll(shift, -1)).abs().max()
    assert tiled_gap < 1e-4 < plain_gap


def test_tiled_frames_are_seamless_across_the_wrap(tiny_pipe):
    before = {name: m.padding for name, m in tiny_pipe.unet.named_modules() if isinstance(m, torch.nn.Conv2d)}
    result = sample_video(tiny_pipe, "bricks", frames=2, tile_x=True, tile_y=True, output_type="np", **SIZE)
    for frame in result.frames:
        half = np.roll(np.roll(frame, 32, axis=1), 32, axis=0)  # the old edges are now in the middle
        for axis in (0, 1):
            inner = np.abs(np.diff(half, axis=axis))
            old_edge = np.take(inner, 31, axis=axis).mean()
            assert old_edge / inner.mean() < 1.2
            assert seam_ratio(frame, axis) < 1.2
    after = {name: m.padding for name, m in tiny_pipe.unet.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert before == after and not any(
        m._forward_pre_hooks for m in tiny_pipe.unet.modules() if isinstance(m, torch.nn.Conv2d)
    )


def test_tiling_only_x_leaves_y_alone(tiny_pipe):
    vae = tiny_pipe.vae
    z = torch.randn(1, 4, 8, 8, generator=gen(7))
    with torch.no_grad(), seamless_tiling([vae], tile_x=True):
        decoded = vae.decode(z).sample
        shifted_x = vae.decode(z.roll(2, -1)).sample
        shifted_y = vae.decode(z.roll(2, -2)).sample
    assert (shifted_x - decoded.roll(16, -1)).abs().max() < 1e-4
    assert (shifted_y - decoded.roll(16, -2)).abs().max() > 1e-3


# --- prompt travel -------------------------------------------------------------------------------


def test_schedule_normalization():
    assert normalize_schedule("a", 4) == [(0, "a")]
    assert normalize_schedule([(3, "b"), (0, "a")], 4) == [(0, "a"), (3, "b")]
    with pytest.raises(ValueError, match="outside"):
        normalize_schedule([(4, "b")], 4)
    with pytest.raises(ValueError, match="two prompts"):
        normalize_schedule([(1, "a"), (1, "b")], 4)


def test_interpolation_hits_keys_and_blends_between():
    a, b = torch.randn(77, 32, generator=gen(1)), torch.randn(77, 32, generator=gen(2))
    out = interpolate_keys([(1, a), (5, b)], 7, "linear")
    assert torch.equal(out[0], a) and torch.equal(out[1], a) and torch.equal(out[5], b) and torch.equal(out[6], b)
    assert torch.allclose(out[3], (a + b) / 2)
    spherical = interpolate_keys([(1, a), (5, b)], 7, "slerp")
    assert torch.allclose(spherical[1], a) and torch.allclose(spherical[5], b, atol=1e-6)
    mid_norm = spherical[3].norm(dim=-1)
    assert torch.all(mid_norm >= torch.minimum(a.norm(dim=-1), b.norm(dim=-1)) * 0.999)
    assert torch.allclose(slerp(a, a, 0.3), a, atol=1e-5)


def test_prompt_travel_embeddings_at_keys_equal_the_key_prompts(tiny_pipe):
    from zss_core.prompts import encode_schedule

    embeds, _ = encode_schedule(tiny_pipe, [(0, "red bricks"), (4, "blue water")], 5, "cpu")
    red, _ = tiny_pipe.encode_prompt("red bricks", "cpu", 1, True, "")
    blue, _ = tiny_pipe.encode_prompt("blue water", "cpu", 1, True, "")
    assert torch.equal(embeds[0], red[0]) and torch.equal(embeds[4], blue[0])
    assert torch.allclose(embeds[2], (red[0] + blue[0]) / 2)


def test_prompt_travel_changes_the_clip_and_single_prompt_is_unchanged(tiny_pipe):
    single = sample_video(tiny_pipe, "red bricks", frames=4, output_type="np", **SIZE).frames
    as_schedule = sample_video(tiny_pipe, [(0, "red bricks")], frames=4, output_type="np", **SIZE).frames
    assert all(np.array_equal(a, b) for a, b in zip(single, as_schedule))  # bit-identical
    same_twice = sample_video(
        tiny_pipe, [(0, "red bricks"), (3, "red bricks")], frames=4, output_type="np", **SIZE
    ).frames
    assert max(float(np.abs(a - b).max()) for a, b in zip(single, same_twice)) < 1e-5
    travel = sample_video(tiny_pipe, [(0, "red bricks"), (3, "blue water")], frames=4, output_type="np", **SIZE).frames
    # TMA is causal: frame 0 sees only itself and its key prompt, so it is the single-prompt frame 0.
    assert float(np.abs(travel[0] - single[0]).max()) < 1e-5
    assert float(np.abs(travel[3] - single[3]).max()) > 1e-3


def test_mu_lists_for_clips_and_loops():
    assert loop_mu_list(0.5, 4) == [0.5, 0.5, 0.5, 0.5]  # the wrap transition gets the same μ
    assert loop_mu_list([0.2, 0.4, 0.6], 4) == pytest.approx([0.4, 0.2, 0.4, 0.6])  # mean of the others
    assert loop_mu_list([0.1, 0.4, 0.6, 0.8], 4) == [0.1, 0.4, 0.6, 0.8]  # entry 0 is the wrap
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        loop_mu_list([1.5, 0.4, 0.6, 0.8], 4)


# --- prompt travel around a loop (bug 5: the schedule wraps with the loop) -------------------------


def _weight_steps(weights):
    """Largest change of any key's weight between neighbouring frames, and across the wrap."""
    steps = [max(abs(x - y) for x, y in zip(a, b)) for a, b in itertools.pairwise(weights)]
    return max(steps), max(abs(x - y) for x, y in zip(weights[-1], weights[0]))


@pytest.mark.parametrize("keys, frames", [([0, 4], 8), ([0, 3, 5], 8), ([2, 6], 9), ([1, 6], 8), ([3], 6)])
def test_looping_prompt_weights_are_continuous_across_the_wrap(keys, frames):
    weights = prompt_weights(keys, frames, loop=True)
    assert all(sum(row) == pytest.approx(1.0) for row in weights)
    for k, frame in enumerate(keys):  # every key frame is that key's prompt, unblended
        assert weights[frame][k] == 1.0
    neighbours, wrap = _weight_steps(weights)
    assert wrap <= neighbours + 1e-12


def test_without_loop_the_schedule_holds_its_last_key():
    weights = prompt_weights([0, 4], 8)
    assert weights == [[1.0, 0.0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75]] + [[0.0, 1.0]] * 4
    assert _weight_steps(weights)[1] == 1.0  # a clip (not a loop) may end elsewhere than it starts
    looped = prompt_weights([0, 4], 8, loop=True)
    assert looped[:5] == weights[:5]  # up to the last key nothing changes
    assert looped[5:] == [[0.25, 0.75], [0.5, 0.5], [0.75, 0.25]]  # then back towards key 0 at frame 8


def test_looping_prompt_embeddings_travel_back_to_the_first_key(tiny_pipe):
    from zss_core.prompts import encode_schedule

    schedule = [(0, "red bricks"), (4, "blue water")]
    with torch.no_grad():
        clip, _ = encode_schedule(tiny_pipe, schedule, 8, "cpu")
        loop, _ = encode_schedule(tiny_pipe, schedule, 8, "cpu", loop=True)
    assert torch.equal(clip[:5], loop[:5])  # bit-identical up to the last key
    assert torch.equal(clip[7], clip[4])  # a clip holds the last key …
    assert torch.allclose(loop[6], (clip[0] + clip[4]) / 2)  # … a loop goes back to the first
    step = max(float((loop[i + 1] - loop[i]).abs().max()) for i in range(7))
    assert float((loop[0] - loop[7]).abs().max()) <= step + 1e-6
    assert float((clip[0] - clip[7]).abs().max()) > 2 * step
