"""Instruction editing (issue 17): a tiny random-weight InstructPix2Pix model built from config runs with
ZS² (three-way guidance, TMA, exact chunking), matches diffusers' pipeline on one frame, and the model
check accepts it only in editing mode."""

import json

import numpy as np
import pytest
import torch
from frames import max_diff
from PIL import Image

from zss_core.cli import main
from zss_core.models import ModelIncompatible, build_tiny_pipeline, load_pipeline
from zss_core.sampler import sample_video

SIZE = dict(width=64, height=64, steps=4)
INSTRUCTION = "make it snowy"


def build_tiny_edit_pipeline():
    """The tiny SD pipeline with its UNet rebuilt from config with 8 input channels (InstructPix2Pix)."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    base = build_tiny_pipeline()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        unet = UNet2DConditionModel.from_config({**base.unet.config, "in_channels": 8})
    return StableDiffusionPipeline(**{**base.components, "unet": unet})


@pytest.fixture(scope="module")
def edit_model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("models") / "tiny-ip2p"
    build_tiny_edit_pipeline().save_pretrained(directory, safe_serialization=True)
    return directory


@pytest.fixture(scope="module")
def edit_pipe(edit_model_dir):
    return load_pipeline(str(edit_model_dir), device="cpu", edit=True)


def frames(count):
    out = []
    for i in range(count):
        image = np.full((64, 64, 3), 60, np.uint8)
        image[:, 5 * i : 5 * i + 14] = (230, 90, 40)
        out.append(Image.fromarray(image))
    return out


def test_one_frame_reproduces_diffusers_instruct_pix2pix(edit_pipe):
    from diffusers import StableDiffusionInstructPix2PixPipeline

    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    stock = StableDiffusionInstructPix2PixPipeline(**edit_pipe.components)
    expected = stock(
        INSTRUCTION,
        image=frames(1)[0],
        num_inference_steps=4,
        guidance_scale=7.5,
        image_guidance_scale=1.5,
        latents=latents.clone(),
        output_type="np",
    ).images
    ours = sample_video(
        edit_pipe,
        INSTRUCTION,
        frames=1,
        guidance=7.5,
        image_guidance=1.5,
        init_images=frames(1),
        latents=latents,
        output_type="np",
        **SIZE,
    ).frames
    assert max_diff(expected, ours) < 1e-5


def test_the_source_frames_steer_the_edit(edit_pipe):
    common = dict(frames=3, seed=2, image_guidance=1.5, output_type="np", **SIZE)
    first = sample_video(edit_pipe, INSTRUCTION, init_images=frames(3), **common).frames
    other = sample_video(edit_pipe, INSTRUCTION, init_images=frames(3)[::-1], **common).frames
    assert max_diff(first, other) > 1e-3


@pytest.mark.parametrize("chunk", [1, 2])
def test_edit_chunked_equals_unchunked_with_momentum(edit_pipe, chunk):
    common = dict(frames=5, seed=4, image_guidance=1.5, init_images=frames(5), output_type="np", **SIZE)
    whole = sample_video(edit_pipe, INSTRUCTION, **common).frames
    parts = sample_video(edit_pipe, INSTRUCTION, chunk=chunk, **common).frames
    plain = sample_video(edit_pipe, INSTRUCTION, mu=0.0, **common).frames
    assert max_diff(whole, parts) < 1e-4
    assert max_diff(whole[:1], plain[:1]) < 1e-6 and max_diff(whole[1:], plain[1:]) > 1e-4  # TMA at work


def test_the_model_check_accepts_an_editing_model_only_for_editing(edit_model_dir):
    with pytest.raises(
        ModelIncompatible, match=r"InstructPix2Pix \(instruction editing\) model: it edits .* only instruction editing"
    ) as info:
        load_pipeline(str(edit_model_dir), device="cpu")
    assert "--edit" in info.value.hint
    with pytest.raises(ModelIncompatible, match=r"\(8 UNet input channels\); this model is Stable Diffusion 1.x"):
        load_pipeline("tiny", device="cpu", edit=True)


def test_an_editing_model_without_image_guidance_is_refused_by_the_sampler(edit_pipe):
    with pytest.raises(ValueError, match="instruction-editing"):
        sample_video(edit_pipe, "x", frames=2, init_images=frames(2), **SIZE)


def save(folder, images):
    folder.mkdir()
    for i, image in enumerate(images):
        image.save(folder / f"f{i + 1}.png")
    return folder


def test_generate_edit_end_to_end_and_refused_without_edit(edit_model_dir, tmp_path, capsys):
    source = save(tmp_path / "src", frames(3))
    out = tmp_path / "out"
    common = ["--init", str(source), "--model", str(edit_model_dir), "--steps", "3", "--out", str(out)]
    assert main(["generate", "--edit", INSTRUCTION, *common, "--id", "e"]) == 0
    manifest = json.loads((out / "e" / "job.json").read_text())
    assert manifest["status"] == "done" and len(manifest["frames"]) == 3
    job = manifest["job"]
    assert job["prompt"] == INSTRUCTION and job["image_guidance"] == 1.5 and job["strength"] == 1.0
    capsys.readouterr()
    assert main(["generate", "snowy", *common, "--id", "n"]) == 2
    err = capsys.readouterr().err
    assert "text-to-video and depth do not support it" in err and "--edit" in err and not (out / "n").exists()
    assert main(["generate", "snowy", "--edit", INSTRUCTION, *common, "--id", "b"]) == 2
    assert "instruction alone" in capsys.readouterr().err
