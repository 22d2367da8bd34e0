"""SD 2.x (v-prediction) and SDXL through ZS²: the SD1 equivalences, on tiny models saved and loaded
through the real path (issue 15). Each family: 1 frame ≡ the stock diffusers pipeline, μ = 0 ≡ a plain
batch, μ = 1 ≡ Text2Video-Zero cross-frame attention, chunked ≡ unchunked (with ControlNet, step
caching and tiling too), TMA on every self-attention."""

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention
from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import (
    CrossFrameAttnProcessor2_0,
)
from frames import control_images, max_diff
from PIL import Image

from zss_core.attention import TemporalMomentumAttnProcessor, TemporalState, temporal_momentum_attention
from zss_core.families import AddedConditioning, StableDiffusionXL, family_of
from zss_core.models import detect_family, load_pipeline, set_scheduler
from zss_core.sampler import SamplingOptions, prepare, sample_video

SIZE = dict(width=64, height=64, steps=4)
STOCK = dict(width=64, height=64, num_inference_steps=4, guidance_scale=7.5, output_type="np")
PROMPT = "a red brick wall"
CLASSES = {
    "sd2": ("StableDiffusionPipeline", "StableDiffusionControlNetPipeline"),
    "sdxl": ("StableDiffusionXLPipeline", "StableDiffusionXLControlNetPipeline"),
}


@pytest.fixture(scope="module", params=["sd2", "sdxl"])
def family(request):
    """(family name, its tiny model folder with controlnet/)."""
    return request.param, request.getfixturevalue(f"tiny_{request.param}_dir")


@pytest.fixture(scope="module")
def pipe(family):
    return load_pipeline(str(family[1]), device="cpu")


@pytest.fixture(scope="module")
def control_pipe(family):
    return load_pipeline(str(family[1]), str(family[1] / "controlnet"), device="cpu")


def test_the_family_picks_the_pipeline_class(family, pipe, control_pipe):
    name, folder = family
    found = detect_family(str(folder))
    assert found.name == name
    assert found.default_size == {"sd2": 768, "sdxl": 1024}[name]  # the tiny SD2 is v-prediction: 768-v
    assert (type(pipe).__name__, type(control_pipe).__name__) == CLASSES[name]
    assert isinstance(family_of(pipe), StableDiffusionXL) == (name == "sdxl")


def test_one_frame_reproduces_the_stock_pipeline(pipe):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    ours = sample_video(pipe, PROMPT, frames=1, latents=latents, output_type="np", **SIZE).frames
    stock = pipe(PROMPT, latents=latents.clone(), **STOCK).images
    assert max_diff(ours, stock) < 1e-6


def test_one_frame_with_a_negative_prompt_reproduces_the_stock_pipeline(pipe):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    ours = sample_video(
        pipe, PROMPT, negative_prompt="blurry", frames=1, latents=latents, output_type="np", **SIZE
    ).frames
    stock = pipe(PROMPT, negative_prompt="blurry", latents=latents.clone(), **STOCK).images
    assert max_diff(ours, stock) < 1e-6


def test_controlnet_one_frame_reproduces_the_stock_controlnet_pipeline(control_pipe):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    image = control_images(1)
    clip = dict(frames=1, latents=latents, control_images=image, control_scale=0.7, output_type="np", **SIZE)
    ours = sample_video(control_pipe, PROMPT, **clip).frames
    stock = control_pipe(
        PROMPT, image=image[0], controlnet_conditioning_scale=0.7, latents=latents.clone(), **STOCK
    ).images
    plain = sample_video(control_pipe, PROMPT, **{**clip, "control_scale": 0.0}).frames
    assert max_diff(ours, stock) < 1e-6
    assert max_diff(ours, plain) > 1e-3  # the ControlNet (and its SDXL conditioning) does steer


def test_mu_zero_reproduces_a_plain_batch(pipe):
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    ours = sample_video(pipe, PROMPT, frames=3, latents=latents, mu=0.0, output_type="np", **SIZE).frames
    stock = pipe([PROMPT] * 3, latents=latents.clone(), **STOCK).images
    # The stock call encodes the prompt as a batch of 3 (ours once): float32 rounding of batched matmuls.
    assert max_diff(ours, stock) < 1e-5


def test_mu_one_is_cross_frame_attention_to_the_first_frame(pipe):
    """Text2Video-Zero's processor (every frame attends to frame 1's keys and values) on every
    self-attention of the UNet, against TMA with μ = 1: the same clip."""
    latents = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    clip = dict(frames=4, latents=latents, output_type="np", **SIZE)
    tma = sample_video(pipe, PROMPT, mu=1.0, **clip).frames
    before = dict(pipe.unet.attn_processors)
    cross_frame = {
        name: CrossFrameAttnProcessor2_0(batch_size=2) if name.endswith("attn1.processor") else proc
        for name, proc in before.items()
    }
    pipe.unet.set_attn_processor(cross_frame)
    try:
        t2vz = sample_video(pipe, PROMPT, tma=False, **clip).frames
    finally:
        pipe.unet.set_attn_processor(before)
    assert max_diff(tma, t2vz) < 1e-5
    assert max_diff(tma[1:], sample_video(pipe, PROMPT, mu=0.0, **clip).frames[1:]) > 1e-3


@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_equals_unchunked(pipe, chunk):
    whole = sample_video(pipe, PROMPT, frames=5, seed=3, output_type="np", **SIZE).frames
    parts = sample_video(pipe, PROMPT, frames=5, seed=3, chunk=chunk, output_type="np", **SIZE).frames
    assert max_diff(whole, parts) < 1e-5


@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_equals_unchunked_with_controlnet(control_pipe, chunk):
    clip = dict(frames=5, seed=3, control_images=control_images(5), output_type="np", **SIZE)
    whole = sample_video(control_pipe, PROMPT, **clip).frames
    parts = sample_video(control_pipe, PROMPT, chunk=chunk, **clip).frames
    assert max_diff(whole, parts) < 1e-5


def test_chunked_equals_unchunked_with_step_caching_and_tiling(control_pipe):
    clip = dict(frames=5, seed=6, cache_interval=2, tile_x=True, control_images=control_images(5), output_type="np")
    whole = sample_video(control_pipe, PROMPT, **clip, **SIZE).frames
    parts = sample_video(control_pipe, PROMPT, chunk=2, **clip, **SIZE).frames
    uncached = sample_video(control_pipe, PROMPT, **{**clip, "cache_interval": 1}, **SIZE).frames
    assert max_diff(whole, parts) < 1e-5
    assert max_diff(whole, uncached) > 1e-4  # the cached steps really reuse deep features


def test_a_loop_in_chunks_runs_on_the_family(pipe):
    clip = dict(frames=4, seed=2, loop=True, output_type="np", **SIZE)
    frames = sample_video(pipe, PROMPT, chunk=2, **clip).frames
    assert len(frames) == 4 and all(f.shape == (64, 64, 3) and np.isfinite(f).all() for f in frames)


def test_tma_is_on_every_self_attention(control_pipe):
    """Every attn1 of the UNet and ControlNet, SDXL's 2-layer transformer blocks included."""
    models = [control_pipe.unet, control_pipe.controlnet]
    self_attention = [name for model in models for name, module in model.named_modules() if name.endswith("attn1")]
    assert all(isinstance(m, Attention) for model in models for n, m in model.named_modules() if n.endswith("attn1"))
    with temporal_momentum_attention(models, TemporalState(mu=[0.5] * 2)) as installed:
        assert len(installed) == len(self_attention)
        for model in models:
            for name, proc in model.attn_processors.items():
                assert isinstance(proc, TemporalMomentumAttnProcessor) == name.endswith("attn1.processor")
    if type(control_pipe).__name__.startswith("StableDiffusionXL"):
        assert any(".transformer_blocks.1.attn1" in name for name in self_attention)


def test_sd2_keeps_v_prediction_through_every_scheduler(tiny_sd2_dir):
    pipe = load_pipeline(str(tiny_sd2_dir), device="cpu")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    for name in ("euler", "euler_a", "dpmpp", "pndm", "unipc", "ddim"):
        set_scheduler(pipe, name)
        assert pipe.scheduler.config.prediction_type == "v_prediction", name


def test_sdxl_conditioning_per_chunk(tiny_sdxl_dir):
    """Pooled text and size/crop ids: [negative, positive] per chunk, the ids saying the frame size."""
    pipe = load_pipeline(str(tiny_sdxl_dir), device="cpu")
    cond = prepare(pipe, SamplingOptions(PROMPT, frames=5, width=64, height=48, negative_prompt="grey"))
    assert isinstance(cond.added, AddedConditioning)
    kwargs = cond.added.for_chunk(1, 3)
    assert kwargs["text_embeds"].shape == (4, 32)
    assert kwargs["time_ids"].tolist() == [[48.0, 64.0, 0.0, 0.0, 48.0, 64.0]] * 4
    positive = pipe.encode_prompt(PROMPT, device="cpu", negative_prompt="grey")
    assert torch.equal(kwargs["text_embeds"][2:], positive[2].expand(2, -1))
    assert torch.equal(kwargs["text_embeds"][:2], positive[3].expand(2, -1))


def test_sdxl_prompt_schedule_interpolates_the_pooled_embedding_too(tiny_sdxl_dir):
    pipe = load_pipeline(str(tiny_sdxl_dir), device="cpu")
    options = SamplingOptions([(0, PROMPT), (4, "a blue sky")], frames=5, width=64, height=64)
    cond = prepare(pipe, options)
    first = pipe.encode_prompt(PROMPT, device="cpu")[2][0]
    last = pipe.encode_prompt("a blue sky", device="cpu")[2][0]
    pooled = cond.added.text_embeds
    assert pooled.shape == (5, 32) and cond.prompt_embeds.shape[0] == 5
    assert torch.allclose(pooled[0], first) and torch.allclose(pooled[4], last)
    assert torch.allclose(pooled[2], (first + last) / 2, atol=1e-6)


@pytest.mark.parametrize("name", ["sd2", "sdxl"])
def test_zss_generate_with_depth_control_on_the_family(tmp_path, name, request):
    """The CLI end to end: the family's pipeline class with its depth ControlNet, frames and video written."""
    from zss_core.cli import main

    folder = request.getfixturevalue(f"tiny_{name}_dir")
    depth = tmp_path / "depth"
    depth.mkdir()
    for index, image in enumerate(control_images(3)):
        image.save(depth / f"{index:04d}.png")
    code = main(
        [
            "generate",
            PROMPT,
            "--model",
            str(folder),
            "--controlnet",
            str(folder / "controlnet"),
            "--control-depth",
            str(depth),
            "--frames",
            "3",
            "--size",
            "64x64",
            "--steps",
            "2",
            "--chunk",
            "2",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
            "--id",
            name,
        ]
    )
    assert code == 0
    frames = sorted((tmp_path / "out" / name).glob("frame_*.png"))
    assert len(frames) == 3 and Image.open(frames[0]).size == (64, 64)
