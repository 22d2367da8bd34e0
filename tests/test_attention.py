"""Temporal momentum attention: the weight matrix, equivalences with diffusers' processors, restore."""

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import (
    CrossFrameAttnProcessor2_0,
)

from zss_core.attention import (
    TemporalMomentumAttnProcessor,
    TemporalState,
    momentum_weights,
    temporal_momentum_attention,
)


@pytest.mark.parametrize("mu", [0.0, 0.3, 0.98, 1.0, [0.2, 0.9, 0.5, 1.0, 0.0]])
def test_weights_lower_triangular_rows_sum_to_one(mu):
    w = momentum_weights(6, mu)
    assert torch.allclose(w.sum(1), torch.ones(6, dtype=w.dtype))
    assert torch.equal(w, torch.tril(w))
    assert (w >= 0).all()


def test_weights_closed_form_constant_mu():
    mu, m = 0.7, 5
    w = momentum_weights(m, mu)
    for i in range(m):
        assert w[i, 0] == pytest.approx(mu**i)
        for j in range(1, i + 1):
            assert w[i, j] == pytest.approx((1 - mu) * mu ** (i - j))


def test_weights_follow_the_recurrence_per_frame_mu():
    mus = [0.0, 0.5, 0.9, 0.1]
    keys = torch.randn(4, 3, dtype=torch.float64)
    expected = [keys[0]]
    for i in range(1, 4):
        expected.append(mus[i] * expected[-1] + (1 - mus[i]) * keys[i])
    assert torch.allclose(momentum_weights(4, mus) @ keys, torch.stack(expected))


def test_weights_extremes():
    assert torch.equal(momentum_weights(4, 0.0), torch.eye(4, dtype=torch.float64))
    first = torch.zeros(4, 4, dtype=torch.float64)
    first[:, 0] = 1
    assert torch.equal(momentum_weights(4, 1.0), first)


def make_attention(seed=0):
    torch.manual_seed(seed)
    return Attention(query_dim=32, heads=4, dim_head=8).eval()


def run(attn, proc, hidden):
    attn.set_processor(proc)
    with torch.no_grad():
        return attn(hidden)


@pytest.mark.parametrize("groups", [1, 2])
def test_mu_zero_is_plain_self_attention(groups):
    attn = make_attention()
    frames = 5
    hidden = torch.randn(groups * frames, 16, 32)
    state = TemporalState(mu=[0.0] * frames, start=0, count=frames)
    plain = run(attn, AttnProcessor2_0(), hidden)
    tma = run(attn, TemporalMomentumAttnProcessor(state), hidden)
    assert torch.allclose(plain, tma, atol=1e-6)


def test_mu_one_is_text2video_zero_cross_frame_attention():
    attn = make_attention()
    frames = 4
    hidden = torch.randn(2 * frames, 16, 32)  # [uncond frames, cond frames]
    state = TemporalState(mu=[1.0] * frames, start=0, count=frames)
    t2vz = run(attn, CrossFrameAttnProcessor2_0(batch_size=2), hidden)
    tma = run(attn, TemporalMomentumAttnProcessor(state), hidden)
    assert torch.allclose(t2vz, tma, atol=1e-6)


def test_guidance_halves_do_not_mix():
    attn = make_attention()
    frames = 3
    hidden = torch.randn(2 * frames, 16, 32)
    state = TemporalState(mu=[0.9] * frames, start=0, count=frames)
    both = run(attn, TemporalMomentumAttnProcessor(state), hidden)
    cond_only = run(attn, TemporalMomentumAttnProcessor(state), hidden[frames:])
    assert torch.allclose(both[frames:], cond_only, atol=1e-6)


def test_four_dimensional_input_with_group_norm():
    torch.manual_seed(0)
    attn = Attention(query_dim=32, heads=2, dim_head=16, norm_num_groups=8, residual_connection=True).eval()
    hidden = torch.randn(3, 32, 4, 4)
    state = TemporalState(mu=[0.0] * 3, start=0, count=3)
    assert torch.allclose(
        run(attn, AttnProcessor2_0(), hidden), run(attn, TemporalMomentumAttnProcessor(state), hidden), atol=1e-6
    )


def test_chunks_carry_momentum_exactly():
    attn = make_attention()
    frames, mus = 7, [0.0, 0.9, 0.5, 0.99, 0.7, 0.2, 0.95]
    hidden = torch.randn(2 * frames, 16, 32)
    whole_state = TemporalState(mu=mus, start=0, count=frames)
    whole = run(attn, TemporalMomentumAttnProcessor(whole_state), hidden)
    state = TemporalState(mu=mus)
    proc = TemporalMomentumAttnProcessor(state)
    parts = []
    for start, end in [(0, 3), (3, 6), (6, 7)]:
        state.start, state.count = start, end - start
        batch = torch.cat([hidden[start:end], hidden[frames + start : frames + end]])
        parts.append(run(attn, proc, batch))
    uncond = torch.cat([p[: p.shape[0] // 2] for p in parts])
    cond = torch.cat([p[p.shape[0] // 2 :] for p in parts])
    assert torch.allclose(torch.cat([uncond, cond]), whole, atol=1e-5)


def test_chunks_out_of_order_are_refused():
    attn = make_attention()
    state = TemporalState(mu=[0.5] * 6, start=3, count=3, step=0)
    with pytest.raises(RuntimeError, match="frame order"):
        run(attn, TemporalMomentumAttnProcessor(state), torch.randn(3, 16, 32))


def test_install_only_self_attention_and_restore(tiny_control_pipe):
    unet, cnet = tiny_control_pipe.unet, tiny_control_pipe.controlnet
    before_unet, before_cnet = dict(unet.attn_processors), dict(cnet.attn_processors)
    state = TemporalState(mu=[0.5] * 2)
    with temporal_momentum_attention([unet, cnet], state) as installed:
        for model, before in ((unet, before_unet), (cnet, before_cnet)):
            for name, proc in model.attn_processors.items():
                if name.endswith("attn1.processor"):
                    assert isinstance(proc, TemporalMomentumAttnProcessor)
                else:
                    assert proc is before[name]
        assert len(installed) == sum(n.endswith("attn1.processor") for n in list(before_unet) + list(before_cnet))
    assert all(unet.attn_processors[n] is p for n, p in before_unet.items())
    assert all(cnet.attn_processors[n] is p for n, p in before_cnet.items())


def test_processors_restored_after_an_exception(tiny_pipe):
    unet = tiny_pipe.unet
    before = dict(unet.attn_processors)
    with pytest.raises(KeyError), temporal_momentum_attention([unet], TemporalState(mu=[0.5])):
        raise KeyError("boom")
    assert all(unet.attn_processors[n] is p for n, p in before.items())
