"""SD1.x checks: what is accepted, what is refused with which message (issue 5)."""

import pytest
import torch
from safetensors.torch import save_file

from zss_core.model_check import ModelFamily, ModelMismatch, inspect_checkpoint, read_safetensors_header
from zss_core.models import ModelError, ModelIncompatible, build_tiny_pipeline, load_pipeline


def save_variant(tmp_path, name, **unet_overrides):
    """The tiny model with some UNet config changed, saved as a diffusers folder."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    pipe = build_tiny_pipeline()
    config = {**pipe.unet.config, **unet_overrides}
    unet = UNet2DConditionModel.from_config(config)
    variant = StableDiffusionPipeline(**{**pipe.components, "unet": unet}, requires_safety_checker=False)
    variant.save_pretrained(tmp_path / name, safe_serialization=True)
    return str(tmp_path / name)


def test_tiny_sd1_shaped_model_is_accepted(tiny_model_dir):
    pipe = load_pipeline(str(tiny_model_dir), str(tiny_model_dir / "controlnet"), device="cpu")
    assert pipe.unet.config.in_channels == 4


def test_wrong_cross_attention_width_is_refused(tmp_path):
    path = save_variant(tmp_path, "wide", cross_attention_dim=64)
    with pytest.raises(
        ModelIncompatible, match=r"cross-attention width \(64\) does not match the text encoder \(32\)"
    ) as info:
        load_pipeline(path, device="cpu")
    assert info.value.code == "model_incompatible" and "1.x" in info.value.hint


def test_inpainting_channels_are_refused(tmp_path):
    path = save_variant(tmp_path, "inpaint", in_channels=9)
    with pytest.raises(ModelIncompatible, match="inpainting"):
        load_pipeline(path, device="cpu")


def test_wrong_latent_channels_are_refused(tmp_path):
    path = save_variant(tmp_path, "eight", in_channels=8, out_channels=8)
    with pytest.raises(ModelIncompatible, match="8 UNet input"):
        load_pipeline(path, device="cpu")


def test_mismatched_controlnet_is_refused(tmp_path, tiny_model_dir):
    from diffusers import ControlNetModel

    cnet = ControlNetModel(
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        cross_attention_dim=48,
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=16,
        conditioning_embedding_out_channels=(16, 16, 16, 16),
    )
    cnet.save_pretrained(tmp_path / "cn48")
    with pytest.raises(ModelIncompatible, match="ControlNet does not match") as info:
        load_pipeline(str(tiny_model_dir), str(tmp_path / "cn48"), device="cpu")
    assert info.value.field == "controlnet_model"


def test_pickle_checkpoint_refused_by_default_and_explained(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ModelError, match="pickle") as info:
        load_pipeline(str(path), device="cpu")
    assert "Allow legacy pickle checkpoints" in info.value.hint


@pytest.mark.parametrize(
    "suffix, content",
    [
        (".ckpt", {"state_dict": {}}),
        (".pt", {"optimizer": {"lr": torch.tensor(0.1)}, "epoch": 3}),
        (
            ".bin",
            {"encoder.conv_in.weight": torch.zeros(8, 3, 3, 3), "decoder.conv_out.weight": torch.zeros(3, 8, 3, 3)},
        ),
    ],
)
def test_a_pickle_that_is_not_a_model_is_named_as_such(tmp_path, monkeypatch, suffix, content):
    """Bug 4: such a file used to get the hub library's "download the config files" message."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    path = tmp_path / f"thing{suffix}"
    torch.save(content, path)
    with pytest.raises(ModelIncompatible) as info:
        load_pipeline(str(path), device="cpu", allow_pickle=True)
    error = info.value
    assert f"'thing{suffix}' is not a Stable Diffusion checkpoint" in error.message
    assert "not a model ZS² can read" in error.message and error.field == "model"
    assert "Stable Diffusion 1.x, 2.x or SDXL checkpoint" in error.hint
    assert not any(word in error.message + error.hint for word in ("HF_HUB_OFFLINE", "local_files_only", "cached"))


def test_a_file_torch_cannot_open_is_named_as_such(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"these bytes are no pickle")
    with pytest.raises(ModelIncompatible, match=r"'junk.pt' is not a model file ZS² can read: torch cannot open it"):
        load_pipeline(str(path), device="cpu", allow_pickle=True)


def test_a_safetensors_file_without_a_unet_is_not_a_model(tmp_path):
    path = fake_checkpoint(tmp_path / "vae.safetensors", {"encoder.conv_in.weight": (8, 3, 3, 3)})
    with pytest.raises(ModelIncompatible, match=r"'vae.safetensors' is not a Stable Diffusion checkpoint"):
        load_pipeline(str(path), device="cpu")
    assert inspect_checkpoint(path) == "sd1"  # as a ControlNet file (no UNet expected) it is not refused here


def fake_checkpoint(path, tensors):
    save_file({name: torch.zeros(shape) for name, shape in tensors.items()}, str(path))
    return path


@pytest.mark.parametrize(
    "tensors, message",
    [
        ({"lora_unet_down_blocks_0_attentions_0.lora_down.weight": (4, 320)}, "LoRA"),
        ({"model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3)}, "is an inpainting model"),
        ({"model.diffusion_model.input_blocks.0.0.weight": (320, 8, 3, 3)}, "is an InstructPix2Pix"),
        (
            {
                "model.diffusion_model.input_blocks.0.0.weight": (384, 4, 3, 3),
                "conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias": (1280,),
            },
            "is the SDXL refiner",
        ),
    ],
)
def test_single_file_checkpoints_are_classified_from_their_header(tmp_path, tensors, message):
    path = fake_checkpoint(tmp_path / "x.safetensors", tensors)
    with pytest.raises(ModelMismatch, match=message):
        inspect_checkpoint(path)
    with pytest.raises(ModelIncompatible, match=message):
        load_pipeline(str(path), device="cpu")


def test_sd1_single_file_header_passes(tmp_path):
    path = fake_checkpoint(
        tmp_path / "sd1.safetensors",
        {
            "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
        },
    )
    assert inspect_checkpoint(path) == "sd1"
    assert set(read_safetensors_header(path)) == {
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
    }


# ---------------------------------------------------------------------------------------------
# Families (issue 15)


def test_folder_families_are_named_before_loading(tiny_model_dir, tiny_sd2_dir, tiny_sdxl_dir):
    from zss_core.model_check import read_folder_family

    assert read_folder_family(tiny_model_dir) == ModelFamily("sd1", "epsilon")
    assert read_folder_family(tiny_sd2_dir) == ModelFamily("sd2", "v_prediction")
    assert read_folder_family(tiny_sdxl_dir).name == "sdxl"
    assert [read_folder_family(d).default_size for d in (tiny_model_dir, tiny_sd2_dir, tiny_sdxl_dir)] == [
        512,
        768,
        1024,
    ]


def configs_only_copy(source, target, **unet_overrides):
    """The folder's JSON configs (no weights) with some UNet config changed: refused before loading."""
    import json
    import shutil

    for name in ("model_index.json", "unet/config.json", "scheduler/scheduler_config.json"):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, target / name)
    config = json.loads((target / "unet/config.json").read_text())
    (target / "unet/config.json").write_text(json.dumps({**config, **unet_overrides}))
    return str(target)


@pytest.mark.parametrize(
    "channels, message",
    [
        (9, r"is an inpainting model: it fills masked areas .* Supported: Stable Diffusion 1.x, 2.x or SDXL"),
        (8, r"is an InstructPix2Pix \(instruction editing\) model: .* text-to-video and depth do not support it"),
    ],
)
def test_inpainting_and_instruct_pix2pix_sdxl_folders_are_refused_by_name(tmp_path, tiny_sdxl_dir, channels, message):
    path = configs_only_copy(tiny_sdxl_dir, tmp_path / "variant", in_channels=channels)
    with pytest.raises(ModelIncompatible, match=message) as info:
        load_pipeline(path, device="cpu")  # the folder has no weights: refused from its configs alone
    assert info.value.field == "model"


def test_a_controlnet_of_another_family_is_refused_naming_both(tiny_model_dir, tiny_sd2_dir, tiny_sdxl_dir):
    with pytest.raises(ModelIncompatible, match=r"made for SDXL, the model is Stable Diffusion 1\.x") as info:
        load_pipeline(str(tiny_model_dir), str(tiny_sdxl_dir / "controlnet"), device="cpu")
    assert info.value.field == "controlnet_model" and "control_v11f1p_sd15_depth" in info.value.hint
    with pytest.raises(ModelIncompatible, match=r"made for Stable Diffusion 2\.x, the model is SDXL"):
        load_pipeline(str(tiny_sdxl_dir), str(tiny_sd2_dir / "controlnet"), device="cpu")


# The keys diffusers' single-file loader reads to tell models apart (loaders/single_file_utils.py),
# with the real models' shapes. diffusers cannot write a checkpoint in the original layout, so these
# headers are made here: only the tensors the classification reads, as zeros.
UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
V2_KEY = "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
SINGLE_FILES = {
    "sd1": {UNET_IN: (320, 4, 3, 3), V2_KEY: (320, 768)},
    "sd2": {UNET_IN: (320, 4, 3, 3), V2_KEY: (320, 1024)},
    "sdxl": {
        UNET_IN: (320, 4, 3, 3),
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (640, 2048),
        "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
        "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": (1280,),
    },
}
DIFFUSERS_TYPES = {"sd1": "v1", "sd2": "v2", "sdxl": "xl_base"}


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_single_file_families_agree_with_the_diffusers_loader(tmp_path, family):
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    tensors = SINGLE_FILES[family]
    path = fake_checkpoint(tmp_path / f"{family}.safetensors", tensors)
    assert inspect_checkpoint(path, unet=True) == family
    expected = DIFFUSERS_TYPES[family]
    assert infer_diffusers_model_type({k: torch.zeros(s) for k, s in tensors.items()}) == expected
    assert ModelFamily(family).default_size == {"sd1": 512, "sd2": 768, "sdxl": 1024}[family]


def test_an_sdxl_controlnet_file_is_named_sdxl(tmp_path):
    path = fake_checkpoint(
        tmp_path / "cn.safetensors",
        {"add_embedding.linear_1.weight": (1280, 2816), "controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3)},
    )
    assert inspect_checkpoint(path, "controlnet_model") == "sdxl"


def test_an_sdxl_single_file_goes_to_the_sdxl_single_file_loader(tmp_path, monkeypatch):
    from diffusers import StableDiffusionXLControlNetPipeline, StableDiffusionXLPipeline

    from zss_core.models import ModelNotFound, detect_family, pipeline_classes

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    path = fake_checkpoint(tmp_path / "sdxl.safetensors", SINGLE_FILES["sdxl"])
    family = detect_family(str(path))
    assert family.name == "sdxl" and family.default_size == 1024
    assert pipeline_classes(family.name)[:2] == (StableDiffusionXLPipeline, StableDiffusionXLControlNetPipeline)
    # Offline, diffusers' SDXL single-file loader needs stabilityai/stable-diffusion-xl-base-1.0's configs.
    with pytest.raises(ModelNotFound, match="single-file checkpoint: loading it needs its model's configuration"):
        load_pipeline(str(path), device="cpu")
