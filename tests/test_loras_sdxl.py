"""LoRAs on SDXL (issue 15 §2): a LoRA made with PEFT on the tiny SDXL (UNet attention and the second
text encoder), saved by ``StableDiffusionXLPipeline.save_lora_weights``, goes through ``zss_core.loras``
like an SD 1.x one: the header says SDXL, it changes the frames, weight 0 ≡ none, disabled ≡ never
loaded; an SD 1.x LoRA is refused on SDXL and the SDXL one on SD 1.x, naming both."""

import pytest
import torch

from zss_core import loras
from zss_core.model_check import read_safetensors_header
from zss_core.models import load_pipeline
from zss_core.runner import JobError
from zss_core.sampler import SamplingOptions, sample

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


@pytest.fixture(scope="module")
def sdxl_lora(tiny_sdxl_dir, tmp_path_factory):
    """A random LoRA for the tiny SDXL's UNet and second text encoder, in diffusers' own format."""
    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    pipe = load_pipeline(str(tiny_sdxl_dir), device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        # init_lora_weights=False: both matrices random (PEFT's default makes B zero: a no-op LoRA)
        pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=TARGETS, init_lora_weights=False), "made")
        config = LoraConfig(r=4, lora_alpha=4, target_modules=TEXT_TARGETS, init_lora_weights=False)
        inject_adapter_in_model(config, pipe.text_encoder_2, "made")
    folder = tmp_path_factory.mktemp("sdxl-lora")
    unet_layers = get_peft_model_state_dict(pipe.unet, adapter_name="made")
    text_layers = get_peft_model_state_dict(pipe.text_encoder_2, adapter_name="made")
    StableDiffusionXLPipeline.save_lora_weights(
        folder, unet_lora_layers=unet_layers, text_encoder_2_lora_layers=text_layers, safe_serialization=True
    )
    return folder / loras.FOLDER_WEIGHT_NAME


@pytest.fixture(scope="module")
def sdxl_kohya_lora(sdxl_lora):
    """The same LoRA in Kohya keys (lora_unet_…, lora_te2_…), by diffusers' ``convert_state_dict_to_kohya``."""
    from diffusers.utils import convert_state_dict_to_kohya
    from safetensors.torch import load_file, save_file

    kohya = sdxl_lora.parent / "kohya-sdxl.safetensors"
    save_file(
        {k: v.contiguous() for k, v in convert_state_dict_to_kohya(load_file(str(sdxl_lora))).items()}, str(kohya)
    )
    return kohya


@pytest.fixture(scope="module")
def pipe(tiny_sdxl_dir):
    """A pipeline of this module's own: adapters loaded here stay out of other modules' pipelines."""
    return load_pipeline(str(tiny_sdxl_dir), device="cpu")


def latents(pipe):
    options = SamplingOptions(
        prompt="a brick wall", frames=3, width=32, height=32, steps=3, seed=3, output_type="latent"
    )
    return torch.stack(list(sample(pipe, options).frames))


def test_the_header_says_sdxl(sdxl_lora, pipe):
    names = list(read_safetensors_header(sdxl_lora))
    assert any(n.startswith("unet.") for n in names) and any(n.startswith("text_encoder_2.") for n in names)
    shapes = {name: info["shape"] for name, info in read_safetensors_header(sdxl_lora).items()}
    # the tiny SDXL's cross-attention is 64 wide (not 2048): the width must match the model's, as on tiny SD1
    assert loras.lora_family(shapes) == ("sdxl", pipe.unet.config.cross_attention_dim)
    assert loras.check_family(sdxl_lora, pipe.unet.config, "loras[0].path") == "sdxl"
    assert loras.check_family(sdxl_lora, pipe.unet.config, "loras[0].path", base="sdxl") == "sdxl"


def test_an_sdxl_lora_changes_frames_weight_zero_and_disabled_are_exact(pipe, sdxl_lora):
    base = latents(pipe)
    (applied,) = loras.apply_loras(pipe, [{"path": str(sdxl_lora), "weight": 1.0}], family="sdxl")
    assert applied.family == "sdxl" and applied.load_seconds > 0
    listed = pipe.get_list_adapters()
    assert listed["unet"] == listed["text_encoder_2"] == [applied.adapter]
    with_lora = latents(pipe)
    assert (with_lora - base).abs().max() > 1e-3

    (again,) = loras.apply_loras(pipe, [{"path": str(sdxl_lora.parent), "weight": 0.0}])
    assert again.adapter == applied.adapter and again.load_seconds == 0.0  # switched, not loaded again
    assert torch.equal(latents(pipe), base)  # weight 0 ≡ no LoRA

    assert loras.apply_loras(pipe, [{"path": str(sdxl_lora), "weight": 1.0}])[0].load_seconds == 0.0
    assert torch.equal(latents(pipe), with_lora)
    assert loras.apply_loras(pipe, None) == []
    assert torch.equal(latents(pipe), base)  # disabled ≡ never loaded
    assert loras.loaded_adapters(pipe) == {applied.adapter}  # kept, never fused


def test_loras_of_the_other_family_are_refused_naming_both(pipe, sdxl_lora, tiny_pipe, tmp_path):
    from test_loras import make_lora_files

    with pytest.raises(JobError) as info:
        loras.apply_loras(tiny_pipe, [{"path": str(sdxl_lora), "weight": 1.0}])
    assert info.value.field == "loras[0].path"
    assert "SDXL" in info.value.message and "Stable Diffusion 1" in info.value.message
    assert not loras.loaded_adapters(tiny_pipe)

    sd1_lora, _ = make_lora_files(tmp_path, text_encoder=False)  # the tiny SD1's width (32) is not SDXL's (64)
    with pytest.raises(JobError) as info:
        loras.apply_loras(pipe, [{"path": str(sd1_lora), "weight": 1.0}], family="sdxl")
    assert info.value.field == "loras[0].path" and "SDXL" in info.value.message, info.value.message
    assert "width 32" in info.value.message and "width 64" in info.value.message


def test_zss_generate_on_sdxl_with_a_lora_and_a_weighted_long_prompt(tmp_path, tiny_sdxl_dir, sdxl_lora):
    """What issue 15 is done with, on the tiny SDXL: the CLI makes a clip with a LoRA and a weighted prompt
    over 77 tokens; job.json names the LoRA's family; the frames differ from the same clip without the LoRA."""
    import json

    import numpy as np
    from PIL import Image

    from zss_core.cli import main

    prompt = "(mossy:1.3) red brick wall, [blurry], " + "old stones, " * 8
    args = ["generate", prompt, "--model", str(tiny_sdxl_dir), "--frames", "3", "--size", "64x64", "--steps", "2"]
    args += ["--chunk", "2", "--out", str(tmp_path), "--no-mp4", "--device", "cpu"]
    assert main([*args, "--id", "with", "--lora", f"{sdxl_lora}:0.8"]) == 0
    assert main([*args, "--id", "without"]) == 0
    manifest = json.loads((tmp_path / "with" / "job.json").read_text())
    assert [(x["path"], x["weight"], x["family"]) for x in manifest["loras"]] == [(str(sdxl_lora), 0.8, "sdxl")]

    def frames(name):
        return [np.asarray(Image.open(p), dtype=np.float32) for p in sorted((tmp_path / name).glob("frame_*.png"))]

    with_lora, without = frames("with"), frames("without")
    assert len(with_lora) == len(without) == 3 and with_lora[0].shape == (64, 64, 3)
    assert max(np.abs(a - b).max() for a, b in zip(with_lora, without)) > 1


def test_the_kohya_form_of_an_sdxl_lora_is_sdxl_and_makes_the_same_frames(pipe, sdxl_lora, sdxl_kohya_lora):
    names = list(read_safetensors_header(sdxl_kohya_lora))
    assert any(n.startswith("lora_unet_") for n in names) and any(n.startswith("lora_te2_") for n in names)
    (diffusers_form,) = loras.apply_loras(pipe, [{"path": str(sdxl_lora), "weight": 1.0}])
    expected = latents(pipe)
    (kohya_form,) = loras.apply_loras(pipe, [{"path": str(sdxl_kohya_lora), "weight": 1.0}])
    assert kohya_form.family == "sdxl" and kohya_form.adapter != diffusers_form.adapter
    assert torch.equal(latents(pipe), expected)  # diffusers converts Kohya keys exactly
    loras.apply_loras(pipe, None)
