"""The built-in texture model (issue 7): loads offline, follows prompts and its depth ControlNet.

Real trained weights (zss_core/builtin/), so these tests measure quality, not just shapes. Everything is
seeded; the thresholds are what the shipped weights reach with a margin (see train/README.md for the
measured values). Skipped only when the weights are not installed. Its speed (8 frames in under 10 s on
2 CPU cores) is measured by ``bench/quality.py --speed``, not asserted here: on a shared machine the
clock measures the neighbours.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zss_core.builtin import builtin_path
from zss_core.builtin.classifier import CLASSIFIER_DIR, classify, load_classifier

try:
    MODEL = builtin_path("builtin:textures")
    CONTROLNET = builtin_path("builtin:textures-depth")
    assert (CLASSIFIER_DIR / "model.safetensors").exists(), "classifier weights missing"
except (FileNotFoundError, AssertionError) as exc:  # weights not committed yet: nothing to measure
    pytest.skip(f"built-in texture weights are not installed: {exc}", allow_module_level=True)

import itertools

from train.textures import COLOURS, FAMILIES, FAMILY_WORDS, control_maps, make_batch

# 16 prompts: every family twice and every colour twice, each pair (family, colour) once.
PROMPTS = [(f, (f * 3 + k * 5) % 8) for f in range(8) for k in range(2)]
PROMPT_TEXT = [f"{COLOURS[c]} {FAMILY_WORDS[FAMILIES[f]]}" for f, c in PROMPTS]
STEPS, GUIDANCE = 20, 5.0
# The thresholds. Measured on the shipped weights with these 16 prompts: family 1.00, colour 0.94
# (over all 64 prompts: 0.97 / 0.98, train/README.md); the classifier itself: 0.97 / 1.00 held out.
FAMILY_MIN = 0.9
COLOUR_MIN = 0.8


@pytest.fixture(scope="module")
def pipes():
    from zss_core.models import load_pipeline

    torch.set_num_threads(2)
    text = load_pipeline(str(MODEL), device="cpu", dtype="float32")
    control = load_pipeline(str(MODEL), controlnet=str(CONTROLNET), device="cpu", dtype="float32")
    return text, control


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


def test_loads_offline_and_samples_8_frames(pipes, monkeypatch):
    from zss_core.sampler import sample_video

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text, control = pipes
    assert text.vae_scale_factor == 4 and text.unet.config.sample_size == 16
    clip = sample_video(
        text, "orange wood rings", frames=8, width=64, height=64, steps=STEPS, guidance=GUIDANCE, seed=1
    )
    assert len(clip.frames) == 8 and clip.frames[0].size == (64, 64)
    heights = make_batch(5, 8)[1]
    maps = control_maps(heights)
    clip = sample_video(
        control,
        "green marble veins",
        frames=8,
        width=64,
        height=64,
        steps=STEPS,
        guidance=GUIDANCE,
        control_images=maps,
        seed=1,
    )
    assert len(clip.frames) == 8


def test_single_frames_follow_the_prompt(pipes, classifier):
    text, _ = pipes
    model, config = classifier
    generator = torch.Generator("cpu").manual_seed(0)
    images = text(
        PROMPT_TEXT,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        height=64,
        width=64,
        generator=generator,
        output_type="np",
    ).images
    fam, col = classify(model, list(images))
    family_acc = float(np.mean(fam == [f for f, _ in PROMPTS]))
    colour_acc = float(np.mean(col == [c for _, c in PROMPTS]))
    print(
        f"family {family_acc:.2f}, colour {colour_acc:.2f} (classifier held out: "
        f"{config['held_out_family_accuracy']}, {config['held_out_colour_accuracy']})"
    )
    assert family_acc >= FAMILY_MIN, f"family accuracy {family_acc:.2f}"
    assert colour_acc >= COLOUR_MIN, f"colour accuracy {colour_acc:.2f}"


def _corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-8))


def test_depth_controlnet_follows_its_control_map(pipes):
    from zss_core.sampler import sample_video

    _, control = pipes
    _, heights, _, _, _ = make_batch(11, 8)
    maps = control_maps(heights)
    clip = sample_video(
        control,
        "blue marble veins",
        frames=8,
        width=64,
        height=64,
        steps=STEPS,
        guidance=GUIDANCE,
        control_images=maps,
        seed=3,
        output_type="np",
    )
    luma = [f @ np.array([0.299, 0.587, 0.114]) for f in clip.frames]
    matched = np.mean([_corr(luma[i], heights[i]) for i in range(8)])
    shuffled = np.mean([_corr(luma[i], heights[(i + 3) % 8]) for i in range(8)])
    print(f"control correlation: matched {matched:.2f}, shuffled {shuffled:.2f}")
    assert matched > 0.6 and matched > shuffled + 0.4  # measured: 0.85 vs -0.01


def test_looping_prompt_schedule_does_not_jump_at_the_wrap(pipes):
    """Bug 5: a loop with a prompt schedule travels back to the first prompt instead of cutting to it."""
    from zss_core.sampler import sample_video

    text, _ = pipes
    clip = sample_video(
        text,
        [(0, "red bricks"), (4, "blue marble veins")],
        frames=8,
        width=64,
        height=64,
        steps=STEPS,
        guidance=GUIDANCE,
        seed=0,
        loop=True,
        output_type="np",
    )
    frames = [np.asarray(f, dtype=np.float32) * 255 for f in clip.frames]
    neighbours = [float(np.abs(b - a).mean()) for a, b in itertools.pairwise(frames)]
    wrap = float(np.abs(frames[0] - frames[-1]).mean())
    print(f"frame difference: wrap {wrap:.1f}, neighbours mean {np.mean(neighbours):.1f}, max {max(neighbours):.1f}")
    assert wrap <= max(neighbours)  # before the fix the wrap was the clip's largest jump by far
