"""The ZS² sampler against the stock diffusers pipelines: equivalences, exact chunking, callbacks."""

import numpy as np
import pytest
import torch
from frames import control_images, max_diff

from zss_core.attention import TemporalMomentumAttnProcessor
from zss_core.sampler import ChunkedDenoiser, SamplingCancelled, SamplingOptions, prepare, sample_video

SIZE = dict(width=64, height=64, steps=4)
PROMPT = "a red brick wall"


def test_one_frame_reproduces_the_plain_pipeline(tiny_pipe):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    ours = sample_video(tiny_pipe, PROMPT, frames=1, latents=latents, output_type="np", **SIZE).frames
    stock = tiny_pipe(
        PROMPT, width=64, height=64, num_inference_steps=4, latents=latents.clone(), output_type="np"
    ).images
    assert max_diff(ours, stock) < 1e-6


def test_mu_zero_reproduces_a_plain_batch(tiny_pipe):
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    ours = sample_video(tiny_pipe, PROMPT, frames=3, latents=latents, mu=0.0, output_type="np", **SIZE).frames
    stock = tiny_pipe(
        [PROMPT] * 3, width=64, height=64, num_inference_steps=4, latents=latents.clone(), output_type="np"
    ).images
    assert max_diff(ours, stock) < 1e-6


def test_momentum_changes_frames_after_the_first(tiny_pipe):
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    plain = sample_video(tiny_pipe, PROMPT, frames=3, latents=latents, mu=0.0, output_type="np", **SIZE).frames
    tma = sample_video(tiny_pipe, PROMPT, frames=3, latents=latents, mu=0.98, output_type="np", **SIZE).frames
    assert max_diff(plain[:1], tma[:1]) < 1e-6  # frame 1 only attends to itself
    assert max_diff(plain[1:], tma[1:]) > 1e-3


@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_equals_unchunked(tiny_pipe, chunk):
    whole = sample_video(tiny_pipe, PROMPT, frames=7, seed=3, output_type="np", **SIZE).frames
    parts = sample_video(tiny_pipe, PROMPT, frames=7, seed=3, chunk=chunk, output_type="np", **SIZE).frames
    assert max_diff(whole, parts) < 1e-4


@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_equals_unchunked_with_controlnet(tiny_control_pipe, chunk):
    images = control_images(7)
    whole = sample_video(tiny_control_pipe, PROMPT, frames=7, seed=3, control_images=images, output_type="np", **SIZE)
    parts = sample_video(
        tiny_control_pipe, PROMPT, frames=7, seed=3, control_images=images, chunk=chunk, output_type="np", **SIZE
    )
    assert max_diff(whole.frames, parts.frames) < 1e-4


def test_controlnet_one_frame_reproduces_the_stock_controlnet_pipeline(tiny_control_pipe):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    image = control_images(1)
    ours = sample_video(
        tiny_control_pipe,
        PROMPT,
        frames=1,
        latents=latents,
        control_images=image,
        control_scale=0.7,
        output_type="np",
        **SIZE,
    ).frames
    stock = tiny_control_pipe(
        PROMPT,
        image=image[0],
        width=64,
        height=64,
        num_inference_steps=4,
        controlnet_conditioning_scale=0.7,
        latents=latents.clone(),
        output_type="np",
    ).images
    assert max_diff(ours, stock) < 1e-6


def test_control_image_count_must_match(tiny_control_pipe):
    with pytest.raises(ValueError, match="one per frame"):
        sample_video(tiny_control_pipe, PROMPT, frames=3, control_images=control_images(2), **SIZE)


def test_seeded_and_reproducible(tiny_pipe):
    a = sample_video(tiny_pipe, PROMPT, frames=3, seed=11, output_type="np", **SIZE)
    b = sample_video(tiny_pipe, PROMPT, frames=3, seed=11, output_type="np", **SIZE)
    c = sample_video(tiny_pipe, PROMPT, frames=3, seed=12, output_type="np", **SIZE)
    assert max_diff(a.frames, b.frames) == 0.0
    assert max_diff(a.frames, c.frames) > 1e-3
    assert a.noise_stats.max_error < 1e-4 and len(a.noise_stats.alpha) == 3


def test_per_frame_lambda_and_mu(tiny_pipe):
    clip = dict(frames=4, lam=[0.01, 0.2, 0.05], output_type="np", **SIZE)
    result = sample_video(tiny_pipe, PROMPT, mu=[0.5, 0.9, 1.0], **clip)
    assert result.noise_stats.target == [0.0, 0.01, 0.2, 0.05]
    assert len(result.frames) == 4
    # The μ the attention uses: the transitions, after 0.0 for the first frame (it has no history) …
    options = SamplingOptions(PROMPT, frames=4, mu=[0.5, 0.9, 1.0])
    assert ChunkedDenoiser(tiny_pipe, options, prepare(tiny_pipe, options)).state.mu == [0.0, 0.5, 0.9, 1.0]
    # … the same as a per-frame list, whose entry 0 is unused …
    per_frame = sample_video(tiny_pipe, PROMPT, mu=[0.7, 0.5, 0.9, 1.0], **clip)
    assert max_diff(result.frames, per_frame.frames) == 0.0
    # … and μᵢ reaches frame i onwards only (TMA is causal): changing the last one changes the last frame.
    last_changed = sample_video(tiny_pipe, PROMPT, mu=[0.5, 0.9, 0.0], **clip)
    assert max_diff(result.frames[:3], last_changed.frames[:3]) < 1e-6
    assert max_diff(result.frames[3:], last_changed.frames[3:]) > 1e-3


def test_progress_frames_and_processor_restore(tiny_pipe):
    before = dict(tiny_pipe.unet.attn_processors)
    steps, frames = [], []
    sample_video(
        tiny_pipe,
        PROMPT,
        frames=5,
        chunk=2,
        progress=lambda s, t: steps.append((s, t)),
        on_frame=lambda i, f: frames.append((i, f.size)),
        **SIZE,
    )
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [i for i, _ in frames] == [0, 1, 2, 3, 4] and frames[0][1] == (64, 64)
    assert all(tiny_pipe.unet.attn_processors[n] is p for n, p in before.items())


def test_cancel_stops_and_restores(tiny_pipe):
    calls = []

    def should_cancel():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(SamplingCancelled):
        sample_video(tiny_pipe, PROMPT, frames=4, chunk=2, should_cancel=should_cancel, **SIZE)
    assert len(calls) == 4
    assert not any(isinstance(p, TemporalMomentumAttnProcessor) for p in tiny_pipe.unet.attn_processors.values())


@pytest.mark.parametrize("scheduler", ["euler", "dpmpp", "euler_a", "lcm", "tcd", "ddim-trailing", "euler-trailing"])
def test_other_schedulers_keep_chunking_exact(scheduler):
    from zss_core.models import load_pipeline

    pipe = load_pipeline("tiny", scheduler=scheduler, device="cpu")
    whole = sample_video(pipe, PROMPT, frames=4, seed=1, output_type="np", **SIZE).frames
    parts = sample_video(pipe, PROMPT, frames=4, seed=1, chunk=3, output_type="np", **SIZE).frames
    assert max_diff(whole, parts) < 1e-4


def test_eight_bit_control_arrays_mean_the_same_as_images(tiny_control_pipe):
    images = control_images(2)
    as_images = sample_video(tiny_control_pipe, PROMPT, frames=2, control_images=images, output_type="np", **SIZE)
    as_arrays = sample_video(
        tiny_control_pipe, PROMPT, frames=2, control_images=[np.asarray(i) for i in images], output_type="np", **SIZE
    )
    assert max_diff(as_images.frames, as_arrays.frames) < 1e-6


def test_sample_with_options_is_sample_video_and_reports_its_stages(tiny_pipe):
    from zss_core.sampler import sample

    stages = []
    options = SamplingOptions(PROMPT, frames=3, seed=4, chunk=2, output_type="np", **SIZE)
    ours = sample(tiny_pipe, options, on_stage=stages.append)
    assert stages == ["encode", "denoise", "decode"]
    spelled = sample_video(tiny_pipe, PROMPT, frames=3, seed=4, chunk=2, output_type="np", **SIZE)
    assert max_diff(ours.frames, spelled.frames) == 0.0
    assert options.replace(chunk=1).chunk == 1 and options.chunk == 2
    with pytest.raises(ValueError, match="multiples of 8"):
        SamplingOptions(PROMPT, width=65)
    with pytest.raises(TypeError, match="stepz"):
        sample_video(tiny_pipe, PROMPT, stepz=3)
