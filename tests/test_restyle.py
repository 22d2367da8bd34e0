"""Restyle (video-to-video, issue 17): the strength limits, exact chunking, seeding, the dependency
noise on the source, progress counts, and the runner reading ``job.init``."""

import json

import numpy as np
import pytest
import torch
from frames import max_diff
from PIL import Image

from zss_core import restyle
from zss_core.noise import SQRT_E, noise_divergence
from zss_core.protocol import Job
from zss_core.runner import JobError, run_job
from zss_core.sampler import SamplingOptions, initial_noise, sample_video

SIZE = dict(width=64, height=64, steps=4)
PROMPT = "a red brick wall"


def source(frames, seed=0):
    """A moving source: a bright bar sliding right over a gradient (uint8 RGB, 64×64)."""
    out = []
    for i in range(frames):
        image = np.zeros((64, 64, 3), np.uint8)
        image[..., 2] = np.linspace(0, 200, 64, dtype=np.uint8)[None, :]
        x = 8 + 4 * i
        image[:, x : x + 10, 0] = 255
        image[20 + seed : 30 + seed, :, 1] = 180
        out.append(image)
    return out


def depth_images(frames):
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).convert("RGB") for _ in range(frames)]


def test_strength_one_is_text_to_video_bit_for_bit(tiny_pipe):
    plain = sample_video(tiny_pipe, PROMPT, frames=4, seed=7, output_type="np", **SIZE).frames
    restyled = sample_video(
        tiny_pipe, PROMPT, frames=4, seed=7, init_images=source(4), strength=1.0, output_type="np", **SIZE
    ).frames
    assert all(np.array_equal(a, b) for a, b in zip(plain, restyled))


def test_strength_one_with_controlnet_is_text_to_video_bit_for_bit(tiny_control_pipe):
    depth = depth_images(3)
    common = dict(frames=3, seed=2, control_images=depth, output_type="np", **SIZE)
    plain = sample_video(tiny_control_pipe, PROMPT, **common).frames
    restyled = sample_video(tiny_control_pipe, PROMPT, init_images=source(3), strength=1.0, **common).frames
    assert all(np.array_equal(a, b) for a, b in zip(plain, restyled))


def vae_round_trip(pipe, images):
    """The source through the VAE alone: posterior mean, then decoded (what strength 0 must return)."""
    pixels = pipe.image_processor.preprocess([Image.fromarray(im) for im in images], height=64, width=64)
    with torch.no_grad():
        decoded = pipe.vae.decode(pipe.vae.encode(pixels).latent_dist.mode(), return_dict=False)[0]
    return pipe.image_processor.postprocess(decoded, output_type="np")


@pytest.mark.parametrize("strength", [0.0, 0.2])  # 0.2 × 4 steps: int(0.8) = 0 steps run
def test_strength_zero_returns_the_source_re_encoded_and_runs_no_step(tiny_pipe, strength):
    calls = []
    result = sample_video(
        tiny_pipe,
        PROMPT,
        frames=3,
        init_images=source(3),
        strength=strength,
        output_type="np",
        progress=lambda step, total: calls.append((step, total)),
        **SIZE,
    )
    assert max_diff(result.frames, vae_round_trip(tiny_pipe, source(3))) < 1e-5
    assert calls == []


def test_lower_strength_stays_closer_to_the_source(tiny_pipe):
    round_trip = np.stack(vae_round_trip(tiny_pipe, source(4)))
    distance = {}
    for strength in (0.25, 0.5, 1.0):
        frames = sample_video(
            tiny_pipe, PROMPT, frames=4, seed=1, init_images=source(4), strength=strength, output_type="np", **SIZE
        ).frames
        distance[strength] = float(np.abs(np.stack(frames) - round_trip).mean())
    assert distance[0.25] < distance[0.5] < distance[1.0], distance


def test_progress_counts_only_the_steps_run(tiny_pipe):
    calls = []
    sample_video(
        tiny_pipe,
        PROMPT,
        frames=2,
        init_images=source(2),
        strength=0.6,
        width=64,
        height=64,
        steps=10,
        output_type="latent",
        progress=lambda step, total: calls.append((step, total)),
    )
    assert calls == [(k, 6) for k in range(1, 7)] and restyle.denoise_steps(10, 0.6) == 6


@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_equals_unchunked_with_init_images(tiny_pipe, chunk):
    common = dict(frames=7, seed=3, init_images=source(7), strength=0.6, output_type="np", **SIZE)
    whole = sample_video(tiny_pipe, PROMPT, **common).frames
    parts = sample_video(tiny_pipe, PROMPT, chunk=chunk, **common).frames
    assert max_diff(whole, parts) < 1e-4


@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_equals_unchunked_with_init_images_and_controlnet(tiny_control_pipe, chunk):
    common = dict(
        frames=7,
        seed=3,
        init_images=source(7),
        control_images=depth_images(7),
        strength=0.6,
        output_type="np",
        **SIZE,
    )
    whole = sample_video(tiny_control_pipe, PROMPT, **common).frames
    parts = sample_video(tiny_control_pipe, PROMPT, chunk=chunk, **common).frames
    assert max_diff(whole, parts) < 1e-4


def test_a_restyle_is_reproducible_from_its_seed(tiny_pipe):
    common = dict(frames=3, init_images=source(3), strength=0.7, output_type="np", **SIZE)
    first = sample_video(tiny_pipe, PROMPT, seed=11, **common).frames
    again = sample_video(tiny_pipe, PROMPT, seed=11, **common).frames
    other = sample_video(tiny_pipe, PROMPT, seed=12, **common).frames
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert max_diff(first, other) > 1e-3


@pytest.mark.parametrize("noise", ["dependency", "independent"])
def test_the_noise_added_to_the_source_is_the_clips_noise_model(tiny_pipe, noise):
    """Recover the noise the source got from the noised latents: consecutive frames diverge by exactly λ
    with the dependency noise model (by ≈ √e with independent per-frame noise, img2img's)."""
    options = SamplingOptions(prompt=PROMPT, frames=6, lam=0.2, noise=noise, strength=0.5, **SIZE)
    drawn, _ = initial_noise(tiny_pipe, options, torch.Generator().manual_seed(4))
    with torch.no_grad():
        noised, first = restyle.init_latents(tiny_pipe, options, source(6), drawn)
        clean = restyle.encode_frames(tiny_pipe, source(6), options)
    scheduler = tiny_pipe.scheduler
    t = int(scheduler.timesteps[first])
    alpha = scheduler.alphas_cumprod[t]
    added = (noised - alpha.sqrt() * clean) / (1 - alpha).sqrt()
    assert first == 2 and torch.allclose(added, drawn, atol=1e-4)
    divergence = noise_divergence(added[1:], added[:-1])
    if noise == "dependency":
        assert torch.allclose(divergence, torch.full_like(divergence, 0.2), atol=1e-3), divergence
    else:
        assert abs(float(divergence.mean()) - SQRT_E) < 0.5 and float(divergence.min()) > 1.0, divergence


def test_source_count_and_missing_source_are_refused(tiny_pipe):
    with pytest.raises(ValueError, match="Got 2 source frames for 3 frames"):
        sample_video(tiny_pipe, PROMPT, frames=3, init_images=source(2), strength=0.5, **SIZE)
    with pytest.raises(ValueError, match="needs init_images"):
        sample_video(tiny_pipe, PROMPT, frames=3, strength=0.5, **SIZE)
    with pytest.raises(ValueError, match="strength must be in"):
        SamplingOptions(prompt=PROMPT, strength=1.5)


# ----------------------------------------------------------------------------- the runner


def save_source(folder, frames, size=(64, 64)):
    folder.mkdir(exist_ok=True)
    paths = []
    for i, image in enumerate(source(frames)):
        path = folder / f"src_{i + 1}.png"
        Image.fromarray(image).resize(size).save(path)
        paths.append(str(path))
    return paths


def restyle_job(tmp_path, init, job_id="r", **extra):
    return Job.from_dict(
        dict(
            id=job_id,
            prompt=PROMPT,
            model="tiny",
            output_dir=str(tmp_path / "out"),
            frames=len(init),
            width=64,
            height=64,
            steps=4,
            init=init,
            strength=0.5,
            outputs={"frames": True, "mp4": False, "contact_sheet": False},
            **extra,
        )
    )


def test_the_runner_restyles_keeps_the_source_and_reports_the_steps_run(tiny_pipe, tmp_path):
    init = save_source(tmp_path / "src", 3, size=(96, 96))  # resized to the job's 64×64
    stages = []
    from zss_core.runner import JobCallbacks

    outcome = run_job(restyle_job(tmp_path, init), tiny_pipe, JobCallbacks(stage=lambda *args: stages.append(args)))
    assert outcome.status == "done" and len(outcome.frames) == 3
    assert ("denoise", 0, 2) in stages and ("denoise", 2, 2) in stages
    manifest = json.loads((tmp_path / "out" / "r" / "job.json").read_text())
    kept = manifest["job"]["init"]
    assert kept == [str(tmp_path / "out" / "r" / "init" / f"init_{i:04d}.png") for i in range(1, 4)]
    assert all(Image.open(p).size == (64, 64) for p in kept)
    direct = sample_video(
        tiny_pipe, PROMPT, frames=3, init_images=[Image.open(p) for p in kept], strength=0.5, output_type="np", **SIZE
    ).frames
    written = [np.asarray(Image.open(p), np.float32) / 255 for p in outcome.frames]
    assert max_diff(direct, written) <= 1 / 255 + 1e-6  # the job is the sampler on its kept frames


def test_an_unreadable_source_frame_is_named(tiny_pipe, tmp_path):
    init = save_source(tmp_path / "src", 3)
    (tmp_path / "src" / "src_2.png").write_text("not a picture")
    with pytest.raises(JobError) as info:
        run_job(restyle_job(tmp_path, init), tiny_pipe)
    assert info.value.field == "init[1]" and "Source frame 2" in info.value.message
    assert "not an image" in info.value.message
    assert not (tmp_path / "out" / "r").exists()


def test_source_frames_of_differing_sizes_are_refused(tiny_pipe, tmp_path):
    init = save_source(tmp_path / "src", 3)
    Image.fromarray(source(3)[2]).resize((80, 64)).save(init[2])
    with pytest.raises(JobError) as info:
        run_job(restyle_job(tmp_path, init), tiny_pipe)
    assert info.value.field == "init[2]" and "80×64" in info.value.message and "64×64" in info.value.message


def test_a_restyle_with_step_caching_is_exact_under_chunking(tiny_pipe):
    """Step caching counts from the first step run (a full UNet call), so chunking stays exact."""
    common = dict(frames=5, seed=6, init_images=source(5), strength=0.8, cache_interval=2, output_type="np")
    whole = sample_video(tiny_pipe, PROMPT, width=64, height=64, steps=10, **common).frames
    parts = sample_video(tiny_pipe, PROMPT, width=64, height=64, steps=10, chunk=2, **common).frames
    uncached = sample_video(tiny_pipe, PROMPT, width=64, height=64, steps=10, **{**common, "cache_interval": 1}).frames
    assert max_diff(whole, parts) < 1e-4 and max_diff(whole, uncached) > 1e-4


@pytest.fixture(scope="module")
def tiny_sdxl_pipe(tiny_sdxl_dir):
    from zss_core.models import load_pipeline

    return load_pipeline(str(tiny_sdxl_dir), device="cpu")


def test_an_sdxl_restyle_is_exact_under_chunking_and_text_to_video_at_strength_one(tiny_sdxl_pipe):
    """SDXL's added conditioning is per chunk; restyle changes only the start, so the same holds."""
    common = dict(frames=4, seed=2, output_type="np", **SIZE)
    plain = sample_video(tiny_sdxl_pipe, PROMPT, **common).frames
    full = sample_video(tiny_sdxl_pipe, PROMPT, init_images=source(4), strength=1.0, **common).frames
    assert all(np.array_equal(a, b) for a, b in zip(plain, full))
    whole = sample_video(tiny_sdxl_pipe, PROMPT, init_images=source(4), strength=0.5, **common).frames
    parts = sample_video(tiny_sdxl_pipe, PROMPT, init_images=source(4), strength=0.5, chunk=3, **common).frames
    assert max_diff(whole, parts) < 1e-4 and max_diff(whole, plain) > 1e-3
