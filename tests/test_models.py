"""Model loading through the real paths (save_pretrained folders), and its errors."""

import pytest
import torch

from zss_core.models import (ModelError, ModelNotFound, build_tiny_pipeline, load_pipeline, resolve_device,
                             resolve_dtype, set_scheduler)


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
    with pytest.raises(ModelError, match="broken.safetensors") as info:
        load_pipeline(str(path), device="cpu")
    assert info.value.code == "model_load_failed" and info.value.hint


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFound, match="not found") as info:
        load_pipeline("nobody/no-such-model-zss", device="cpu")
    assert "HF_HUB_OFFLINE" in info.value.hint


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
