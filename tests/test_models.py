"""Model loading through the real paths (save_pretrained folders), and its errors."""

import pytest
import torch

from zss_core.models import (
    ModelError,
    ModelNotFound,
    build_tiny_pipeline,
    load_pipeline,
    resolve_device,
    resolve_dtype,
    set_scheduler,
)


def test_tiny_model_round_trips_through_save_pretrained(tiny_model_dir):
    loaded = load_pipeline(str(tiny_model_dir), device="cpu")
    built = build_tiny_pipeline()
    for name, tensor in built.unet.state_dict().items():
        assert torch.equal(tensor, loaded.unet.state_dict()[name]), name
    assert loaded.tokenizer("brick").input_ids == built.tokenizer("brick").input_ids
    assert type(loaded.scheduler).__name__ == "DDIMScheduler"


def test_controlnet_folder_loads_with_the_model(tiny_model_dir):
    pipe = load_pipeline(str(tiny_model_dir), str(tiny_model_dir / "controlnet"), device="cpu")
    assert type(pipe).__name__ == "StableDiffusionControlNetPipeline"
    assert pipe.controlnet.config.cross_attention_dim == pipe.unet.config.cross_attention_dim


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFound, match="does not exist") as info:
        load_pipeline(str(tmp_path / "no-such-model"), device="cpu")
    assert info.value.code == "model_not_found" and info.value.hint


def test_corrupt_safetensors_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x00not a safetensors file" * 10)
    with pytest.raises(ModelError, match=r"broken.safetensors") as info:
        load_pipeline(str(path), device="cpu")
    assert info.value.code == "model_load_failed" and info.value.hint


def test_unknown_hub_id_offline_says_it_is_not_cached_and_how_to_get_it(monkeypatch, tmp_path):
    """Bug 4: not the hub library's advice to pass local_files_only=False (a user cannot)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFound) as info:
        load_pipeline("nobody/no-such-model-zss", device="cpu")
    error = info.value
    assert "'nobody/no-such-model-zss' is not in the local Hugging Face cache" in error.message
    assert "HF_HUB_OFFLINE=1" in error.message and error.field == "model"
    assert "Download button" in error.hint and "hf download nobody/no-such-model-zss" in error.hint
    assert "local diffusers folder" in error.hint
    assert "local_files_only" not in error.message + error.hint


def test_single_file_checkpoint_offline_says_it_needs_its_configuration(monkeypatch, tmp_path):
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    path = tmp_path / "sd15.safetensors"
    save_file(
        {
            "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(320, 768),
        },
        str(path),
    )
    with pytest.raises(ModelNotFound) as info:
        load_pipeline(str(path), device="cpu")
    assert "single-file checkpoint" in info.value.message and "not in the local cache" in info.value.message
    assert "online access" in info.value.hint and "local_files_only" not in info.value.message + info.value.hint


def test_pickle_checkpoints_are_refused(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"pickle")
    with pytest.raises(ModelError, match="pickle"):
        load_pipeline(str(path), device="cpu")


def test_broken_controlnet_names_its_field(tiny_model_dir, tmp_path):
    with pytest.raises(ModelNotFound) as info:
        load_pipeline(str(tiny_model_dir), str(tmp_path / "nothing"), device="cpu")
    assert info.value.field == "controlnet_model"


def test_device_and_dtype_choice():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert resolve_dtype("bfloat16") == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA"):
            resolve_device("cuda")


def test_scheduler_swap_keeps_the_noise_schedule(tiny_pipe):
    pipe = build_tiny_pipeline()
    betas = pipe.scheduler.config.beta_end
    set_scheduler(pipe, "euler")
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe.scheduler.config.beta_end == betas
    with pytest.raises(ValueError, match="scheduler"):
        set_scheduler(pipe, "nope")


def test_make_tiny_model_command_writes_a_loadable_model(tmp_path):
    from zss_core.cli import main

    assert main(["make-tiny-model", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "model_index.json").exists()
    assert (tmp_path / "m" / "controlnet" / "diffusion_pytorch_model.safetensors").exists()
    pipe = load_pipeline(str(tmp_path / "m"), str(tmp_path / "m" / "controlnet"), device="cpu")
    assert pipe.unet.config.in_channels == 4


def test_unknown_builtin_model_is_a_clear_error():
    with pytest.raises(ModelNotFound, match="unknown built-in model 'builtin:nope'") as info:
        load_pipeline("builtin:nope", device="cpu")
    assert "builtin:textures" in info.value.hint


def test_a_pickle_only_model_folder_is_refused_unless_allowed(tmp_path):
    """Issue 12: allow_pickle=False is enforced here, before any loader runs, not left to the libraries."""
    from zss_core.models import ModelIncompatible, pickle_only_folders

    folder = tmp_path / "pickled"
    build_tiny_pipeline().save_pretrained(folder, safe_serialization=False)
    assert {p.name for p in pickle_only_folders(folder)} == {"unet", "vae"}  # transformers writes safetensors
    with pytest.raises(ModelIncompatible) as info:
        load_pipeline(str(folder), device="cpu")
    assert info.value.code == "model_incompatible" and info.value.field == "model"
    assert "allow_pickle" in info.value.message and "safetensors" in info.value.hint
    loaded = load_pipeline(str(folder), device="cpu", allow_pickle=True)
    assert torch.equal(loaded.unet.conv_in.weight, build_tiny_pipeline().unet.conv_in.weight)
