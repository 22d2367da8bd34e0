"""Step caching (zss_core/step_cache.py): the UNet's own forward on full steps, exact under chunking."""

import pytest
import torch
from frames import control_images, max_diff

from zss_core.sampler import ChunkedDenoiser, SamplingOptions, initial_noise, prepare, sample_video
from zss_core.step_cache import StepCachedUNet

SIZE = dict(width=64, height=64, steps=6)  # steps 0 and 3 full, 1, 2, 4, 5 cached at interval 3
PROMPT = "a red brick wall"


def unet_inputs(unet, batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 4, 8, 8, generator=g)
    embeds = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=g)
    return sample, torch.tensor(500), embeds


@pytest.mark.parametrize("branch", [1, 2, 3])
def test_a_full_step_is_the_unets_forward(tiny_control_pipe, branch):
    unet = tiny_control_pipe.unet
    sample, t, embeds = unet_inputs(unet)
    down, mid = tiny_control_pipe.controlnet(
        sample, t, encoder_hidden_states=embeds, controlnet_cond=torch.rand(4, 3, 64, 64), return_dict=False
    )
    cached = StepCachedUNet(unet, interval=3, branch=branch)
    with torch.no_grad():
        for residuals in ({}, dict(down_block_additional_residuals=down, mid_block_additional_residual=mid)):
            stock = unet(sample, t, encoder_hidden_states=embeds, return_dict=False, **residuals)[0]
            ours = cached(sample, t, embeds, key="batch", step_index=0, **residuals)
            assert float((ours - stock).abs().max()) <= 1e-6
            # A cached step on the same input reuses the same deep feature: the same output again.
            again = cached(sample, t, embeds, key="batch", step_index=1, **residuals)
            assert float((again - stock).abs().max()) <= 1e-6


def test_a_full_step_is_the_unets_forward_with_sdxl_conditioning():
    """SDXL's extra conditioning (pooled text + size/crop ids) goes through the UNet's own helpers."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=16,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8,
    ).eval()
    sample, t, embeds = unet_inputs(unet, batch=2)
    added = {"text_embeds": torch.randn(2, 32), "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)}
    with torch.no_grad():
        stock = unet(sample, t, encoder_hidden_states=embeds, added_cond_kwargs=added, return_dict=False)[0]
        for branch in (1, 2, 3, 4):
            ours = StepCachedUNet(unet, 2, branch)(sample, t, embeds, key=0, step_index=0, added_cond_kwargs=added)
            assert float((ours - stock).abs().max()) <= 1e-6


def test_interval_one_is_the_plain_path(tiny_control_pipe):
    images = control_images(4)
    clip = dict(frames=4, seed=5, control_images=images, output_type="np", **SIZE)
    plain = sample_video(tiny_control_pipe, PROMPT, **clip).frames
    assert max_diff(plain, sample_video(tiny_control_pipe, PROMPT, cache_interval=1, **clip).frames) == 0.0
    # The wrapper itself at interval 1 (every step full) inside the real denoising loop: bit-identical.
    options = SamplingOptions(PROMPT, frames=4, seed=5, chunk=2, output_type="latent", **SIZE)

    def denoise(step_cache):
        cond = prepare(tiny_control_pipe, options, images)
        denoiser = ChunkedDenoiser(tiny_control_pipe, options, cond)
        denoiser.step_cache = step_cache
        generator = torch.Generator("cpu").manual_seed(5)
        latents, _ = initial_noise(tiny_control_pipe, options, generator)
        with torch.no_grad():
            return denoiser.run(latents, generator)

    assert torch.equal(denoise(None), denoise(StepCachedUNet(tiny_control_pipe.unet, interval=1)))


def test_caching_reuses_deep_features(tiny_pipe):
    clip = dict(frames=3, seed=4, output_type="np", **SIZE)
    plain = sample_video(tiny_pipe, PROMPT, **clip).frames
    cached = sample_video(tiny_pipe, PROMPT, cache_interval=3, **clip).frames
    assert max_diff(plain, cached) > 1e-4  # the cached steps really skip the deep blocks


@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_equals_unchunked_with_caching(tiny_pipe, chunk):
    clip = dict(frames=7, seed=3, cache_interval=3, output_type="np", **SIZE)
    whole = sample_video(tiny_pipe, PROMPT, **clip).frames
    parts = sample_video(tiny_pipe, PROMPT, chunk=chunk, **clip).frames
    assert max_diff(whole, parts) < 1e-5


@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_equals_unchunked_with_caching_and_controlnet(tiny_control_pipe, chunk):
    clip = dict(frames=7, seed=3, cache_interval=3, control_images=control_images(7), output_type="np", **SIZE)
    whole = sample_video(tiny_control_pipe, PROMPT, **clip).frames
    parts = sample_video(tiny_control_pipe, PROMPT, chunk=chunk, **clip).frames
    assert max_diff(whole, parts) < 1e-5


class OneFeatureForAllChunks(StepCachedUNet):
    """What the ``deepcache`` package does: one kept feature, whatever frames the batch holds."""

    def __call__(self, *args, key, **kwargs):
        return super().__call__(*args, key="every chunk", **kwargs)


def test_features_are_kept_per_chunk(tiny_pipe):
    options = SamplingOptions(
        PROMPT, frames=6, seed=2, chunk=3, cache_interval=3, noise="independent", output_type="latent", **SIZE
    )
    whole = options.replace(chunk=None)

    def denoise(opts, cache_class=None):
        cond = prepare(tiny_pipe, opts)
        denoiser = ChunkedDenoiser(tiny_pipe, opts, cond)
        if cache_class is not None:
            denoiser.step_cache = cache_class(tiny_pipe.unet, opts.cache_interval)
        generator = torch.Generator("cpu").manual_seed(2)
        latents, _ = initial_noise(tiny_pipe, opts, generator)
        with torch.no_grad():
            return denoiser.run(latents, generator), denoiser

    reference, _ = denoise(whole)
    chunked, denoiser = denoise(options)
    # One feature per chunk, for the guided batch of its frames (uncond + cond: 2 × 3).
    assert sorted(denoiser.step_cache.features) == [(0, 3, 6), (3, 6, 6)]
    scale = float(reference.abs().max())  # final latents of a random model: magnitudes up to ~10
    assert float((chunked - reference).abs().max()) < 1e-5 * scale
    # A cache shared by the chunks keeps the last chunk's feature, and the cached steps of the first
    # chunk run on it: the first chunk's frames come out wrong.
    shared, _ = denoise(options, OneFeatureForAllChunks)
    assert float((shared[:3] - reference[:3]).abs().max()) > 1e-2 * scale


def test_bad_settings_are_refused(tiny_pipe):
    with pytest.raises(ValueError, match="cache_interval"):
        SamplingOptions(PROMPT, cache_interval=0)
    with pytest.raises(ValueError, match="branch"):
        StepCachedUNet(tiny_pipe.unet, 3, branch=4)  # 2 up blocks × 2 layers: 1..3
