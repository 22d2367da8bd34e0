"""LoRAs (issue 15): files made here with PEFT on the tiny SD1 model, in diffusers and Kohya format,
applied through diffusers' loader; weight 0 ≡ none, disabling ≡ a model that never had one (also across
a real worker process), and files for another family or missing files refused by name."""

import json
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from zss_core import loras
from zss_core.client import WorkerClient
from zss_core.models import load_pipeline
from zss_core.protocol import Job
from zss_core.runner import JobError, run_job
from zss_core.sampler import SamplingOptions, sample

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def make_lora_files(folder, seed=0, text_encoder=True):
    """One random LoRA (UNet and text encoder) on the tiny model, saved by diffusers' ``save_lora_weights``
    (diffusers/PEFT keys) and converted to Kohya keys by diffusers' ``convert_state_dict_to_kohya``."""
    folder.mkdir(parents=True, exist_ok=True)
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_kohya
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    pipe = load_pipeline("tiny", device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # init_lora_weights=False: both matrices random (PEFT's default makes B zero: a no-op LoRA)
        pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=TARGETS, init_lora_weights=False), "made")
        if text_encoder:  # PEFT itself here: transformers' add_adapter asks for a newer PEFT than this one
            inject_adapter_in_model(
                LoraConfig(r=4, lora_alpha=4, target_modules=TEXT_TARGETS, init_lora_weights=False),
                pipe.text_encoder,
                "made",
            )
    unet_layers = get_peft_model_state_dict(pipe.unet, adapter_name="made")
    text_layers = get_peft_model_state_dict(pipe.text_encoder, adapter_name="made") if text_encoder else {}
    diffusers_dir = folder / "diffusers-lora"
    StableDiffusionPipeline.save_lora_weights(
        diffusers_dir,
        unet_lora_layers=unet_layers,
        text_encoder_lora_layers=text_layers or None,
        safe_serialization=True,
    )
    peft_keys = {f"unet.{k}": v for k, v in unet_layers.items()} | {
        f"text_encoder.{k}": v for k, v in text_layers.items()
    }
    kohya = folder / "kohya-lora.safetensors"
    save_file({k: v.contiguous() for k, v in convert_state_dict_to_kohya(peft_keys).items()}, str(kohya))
    return diffusers_dir / loras.FOLDER_WEIGHT_NAME, kohya


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory):
    return make_lora_files(tmp_path_factory.mktemp("loras"))


@pytest.fixture(scope="module")
def pipe():
    """A pipeline of this module's own: adapters loaded here stay out of the session's tiny_pipe."""
    return load_pipeline("tiny", device="cpu")


def latents(pipe, seed=3):
    options = SamplingOptions(
        prompt="a brick wall", frames=3, width=32, height=32, steps=3, seed=seed, output_type="latent"
    )
    return torch.stack(list(sample(pipe, options).frames))


def write_header(path, shapes):
    """A .safetensors file with zero tensors of these shapes: only its header (names, shapes) matters."""
    from safetensors.torch import save_file

    save_file({name: torch.zeros(shape) for name, shape in shapes.items()}, str(path))
    return path


def test_kohya_keys_are_kohya(lora_files):
    from zss_core.model_check import read_safetensors_header

    names = list(read_safetensors_header(lora_files[1]))
    assert all(n.startswith(("lora_unet_", "lora_te")) for n in names), names[:4]
    assert any(n.endswith(".lora_down.weight") for n in names) and any(n.endswith(".alpha") for n in names)


def test_weights_formats_and_disabling(pipe, lora_files):
    diffusers_file, kohya_file = lora_files
    base = latents(pipe)
    assert loras.apply_loras(pipe, None) == []

    (first,) = loras.apply_loras(pipe, [{"path": str(diffusers_file), "weight": 1.0}])
    assert first.load_seconds > 0 and first.adapter.startswith("zss_")
    with_lora = latents(pipe)
    assert not torch.equal(with_lora, base)

    (kohya,) = loras.apply_loras(pipe, [{"path": str(kohya_file), "weight": 1.0}])
    assert kohya.adapter != first.adapter
    assert torch.equal(latents(pipe), with_lora)  # the same LoRA in Kohya keys: diffusers converts it exactly

    (again,) = loras.apply_loras(pipe, [{"path": str(diffusers_file.parent), "weight": 0.0}])  # the folder
    assert again.adapter == first.adapter and again.load_seconds == 0.0  # loaded once, switched since
    assert torch.equal(latents(pipe), base)  # weight 0 ≡ no LoRA

    half = loras.apply_loras(pipe, [{"path": str(diffusers_file), "weight": 0.5}])
    assert half[0].load_seconds == 0.0
    assert not torch.equal(latents(pipe), with_lora) and not torch.equal(latents(pipe), base)

    assert loras.apply_loras(pipe, []) == []
    assert torch.equal(latents(pipe), base)  # disabled ≡ never loaded
    assert loras.loaded_adapters(pipe) == {first.adapter, kohya.adapter}  # kept for the next job, not fused
    listed = pipe.get_list_adapters()  # both files reached the text encoder too (Kohya's lora_te keys)
    assert sorted(listed["unet"]) == sorted(listed["text_encoder"]) == sorted([first.adapter, kohya.adapter])


def test_a_unet_only_lora_after_one_with_a_text_encoder_leaves_the_text_encoder_plain(pipe, lora_files, tmp_path):
    unet_only, _ = make_lora_files(tmp_path / "unet-only", seed=7, text_encoder=False)
    ids = pipe.tokenizer(["a brick wall"], padding="max_length", max_length=77, return_tensors="pt").input_ids

    def encoded():
        with torch.no_grad():
            return pipe.text_encoder(ids)[0]

    loras.apply_loras(pipe, None)
    plain = encoded()
    loras.apply_loras(pipe, [{"path": str(lora_files[0])}])
    assert not torch.equal(encoded(), plain)
    (applied,) = loras.apply_loras(pipe, [{"path": str(unet_only)}])
    assert applied.adapter not in pipe.get_list_adapters()["text_encoder"]
    assert torch.equal(encoded(), plain)  # the first LoRA's text-encoder layers are off, not left on


def test_a_lora_on_the_depth_controlnet_pipeline(lora_files):
    from PIL import Image

    control_pipe = load_pipeline("tiny", "tiny", device="cpu")
    depth = [Image.new("RGB", (32, 32), (60 * i, 60 * i, 60 * i)) for i in range(3)]
    options = SamplingOptions(prompt="a brick wall", frames=3, width=32, height=32, steps=2, output_type="latent")

    def run():
        return torch.stack(list(sample(control_pipe, options, control_images=depth).frames))

    base = run()
    loras.apply_loras(control_pipe, [{"path": str(lora_files[1]), "weight": 1.0}])
    assert not torch.equal(run(), base)
    loras.apply_loras(control_pipe, [])
    assert torch.equal(run(), base)


def test_fused_projections_refuse_loras(lora_files):
    fused = load_pipeline("tiny", device="cpu")
    fused.fuse_qkv_projections()  # what --fast does on a GPU
    with pytest.raises(JobError) as refused:
        loras.apply_loras(fused, [{"path": str(lora_files[0])}])
    assert refused.value.field == "fast" and "fused QKV" in refused.value.message


def test_another_family_is_refused_before_loading_naming_both(pipe, tmp_path):
    sdxl = write_header(
        tmp_path / "sdxl-style.safetensors",
        {
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": [4, 2048],
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight": [640, 4],
            "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": [4, 1280],
        },
    )
    sd2 = write_header(
        tmp_path / "sd2-style.safetensors",
        {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v.lora_A.weight": [4, 1024]},
    )
    sd1 = write_header(
        tmp_path / "sd15-style.safetensors",
        {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": [4, 768]},
    )
    before = loras.loaded_adapters(pipe)
    for path, found in ((sdxl, "a LoRA for SDXL"), (sd2, "a LoRA for Stable Diffusion 2.x")):
        with pytest.raises(JobError) as refused:
            loras.apply_loras(pipe, [{"path": str(path), "weight": 1.0}])
        assert refused.value.code == "model_incompatible" and refused.value.field == "loras[0].path"
        assert found in refused.value.message and "the model is Stable Diffusion 1.x" in refused.value.message
    with pytest.raises(JobError) as refused:  # SD1's 768 on the tiny SD1-class model's 32: the width tells
        loras.apply_loras(pipe, [{"path": str(sd1), "weight": 1.0}])
    assert "Stable Diffusion 1.x (cross-attention width 768)" in refused.value.message
    assert "width 32" in refused.value.message
    assert loras.loaded_adapters(pipe) == before  # refused before loading


def test_family_of_real_key_styles():
    assert loras.lora_family(
        {"unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": [8, 768]}
    ) == (
        "sd1",
        768,
    )
    kohya_sdxl = {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_v.lora_down.weight": [8, 2048]}
    assert loras.lora_family(kohya_sdxl) == ("sdxl", 2048)
    assert (
        loras.lora_family({"text_encoder_2.text_model.encoder.layers.0.mlp.fc1.lora_A.weight": [4, 1280]})[0] == "sdxl"
    )
    assert loras.lora_family({"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": [4, 1024]}) == (
        "sd2",
        None,
    )
    assert loras.lora_family(
        {"unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": [4, 320]}
    ) == (
        None,
        None,
    )


def job_dict(tmp_path, job_id, **overrides):
    base = dict(
        id=job_id, prompt="a brick wall", model="tiny", output_dir=str(tmp_path / "out"), frames=3, width=64, height=64
    )
    base.update(steps=3, device="cpu", outputs={"frames": True, "mp4": False, "contact_sheet": False}, **overrides)
    return base


def test_missing_or_unusable_files_name_the_lora_and_leave_nothing(pipe, tmp_path, lora_files):
    pickle = tmp_path / "old.ckpt"
    pickle.write_bytes(b"\x80\x04")
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.safetensors", "b.safetensors"):
        write_header(two / name, {"x": [1]})
    cases = [
        ([{"path": str(tmp_path / "missing.safetensors")}], "loras[0].path", "does not exist"),
        ([{"path": str(lora_files[0])}, {"path": str(pickle)}], "loras[1].path", ".safetensors only"),
        ([{"path": str(two)}], "loras[0].path", "several .safetensors files"),
        ([{"path": str(lora_files[0])}, {"path": str(lora_files[0].parent)}], "loras", "listed twice"),
        ([{"path": "someone/no-such-lora"}], "loras[0].path", "downloads are off"),  # a hub id, offline
    ]
    for index, (entries, field, words) in enumerate(cases):
        job = Job.from_dict(job_dict(tmp_path, f"bad{index}", loras=entries))
        with pytest.raises(JobError) as refused:
            run_job(job, pipe)
        assert refused.value.field == field and words in refused.value.message, refused.value.message
        assert not (tmp_path / "out" / f"bad{index}").exists()


def test_cli_lora_option_reaches_job_json(tmp_path, lora_files):
    from zss_core.cli import _lora, main

    assert _lora("style.safetensors:0.6") == {"path": "style.safetensors", "weight": 0.6}
    assert _lora(r"C:\loras\style.safetensors") == {"path": r"C:\loras\style.safetensors", "weight": 1.0}
    assert _lora("owner/name") == {"path": "owner/name", "weight": 1.0}
    args = ["generate", "a wall", "--model", "tiny", "--frames", "2", "--size", "64x64", "--steps", "2"]
    args += ["--out", str(tmp_path), "--id", "lora1", "--no-mp4", "--device", "cpu"]
    assert main([*args, "--lora", f"{lora_files[1]}:0.75", "--lora", str(lora_files[0].parent)]) == 0
    manifest = json.loads((tmp_path / "lora1" / "job.json").read_text())
    assert manifest["job"]["loras"] == [
        {"path": str(lora_files[1]), "weight": 0.75},
        {"path": str(lora_files[0].parent), "weight": 1.0},
    ]
    assert [(x["path"], x["weight"]) for x in manifest["loras"]] == [
        (str(lora_files[1]), 0.75),
        (str(lora_files[0]), 1.0),
    ]
    assert all(x["adapter"].startswith("zss_") and x["load_seconds"] > 0 for x in manifest["loras"])


def frames_of(done):
    return [np.asarray(Image.open(path)) for path in done.frames]


@pytest.mark.slow
def test_worker_job_without_lora_after_one_matches_a_cold_worker(tmp_path, lora_files):
    """No leakage: a warm worker that ran a LoRA job makes the next job's frames exactly as a fresh one."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(client, job_id, **fields):
        client.submit(job_dict(tmp_path, job_id, **fields))
        end = client.wait_for(lambda e: e.id == job_id and e.type in ("done", "error"), 180)
        assert end.type == "done", end
        return end

    warm = WorkerClient(sys.executable, env=env)
    warm.start(timeout=120)
    try:
        styled = run(warm, "styled", loras=[{"path": str(lora_files[1]), "weight": 1.0}])
        plain = run(warm, "plain")
    finally:
        warm.stop()
    cold = WorkerClient(sys.executable, env=env)
    cold.start(timeout=120)
    try:
        reference = run(cold, "reference")
    finally:
        cold.stop()
    assert styled.model_load_seconds > 0 and plain.model_load_seconds == 0.0  # the base model stayed loaded
    assert any(not np.array_equal(a, b) for a, b in zip(frames_of(styled), frames_of(reference)))
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(plain), frames_of(reference), strict=True))
    manifest = json.loads((tmp_path / "out" / "plain" / "job.json").read_text())
    assert manifest["loras"] == [] and manifest["job"]["loras"] is None


def test_server_maps_lora_names_and_never_takes_a_path(tmp_path):
    pytest.importorskip("fastapi")
    from zss_core.server.app import ApiError, JobIntake, _client_manifest
    from zss_core.server.config import ConfigError, ModelEntry, ServerConfig, load_loras
    from zss_core.server.store import JobStore

    models = tmp_path / "models.toml"
    models.write_text('[models.m]\nmodel = "tiny"\n\n[loras.style]\npath = "/srv/loras/style.safetensors"\n')
    config = ServerConfig(models=(ModelEntry("m", "tiny"),), loras=load_loras(str(models)), data=str(tmp_path))
    intake = JobIntake(config, JobStore(str(tmp_path / "data")))
    body = {"prompt": "a wall", "model": "m", "frames": 2, "width": 64, "height": 64}
    job_id, job = intake.build({**body, "loras": [{"path": "style", "weight": 0.5}]}, "me")
    assert job["loras"] == [{"path": "/srv/loras/style.safetensors", "weight": 0.5}]
    for asked in ("/etc/passwd", "other"):
        with pytest.raises(ApiError) as refused:
            intake.build({**body, "loras": [{"path": asked}]}, "me")
        assert refused.value.field == "loras[0].path" and "its LoRAs: style" in refused.value.message
    record = intake.store.get(job_id, "me")
    seen = _client_manifest(
        {"job": dict(job), "loras": [{"path": "/srv/loras/style.safetensors", "weight": 0.5}]},
        record,
        {e.path: e.name for e in config.loras},
    )
    assert seen["job"]["loras"] == [{"path": "style", "weight": 0.5}] and seen["loras"][0]["path"] == "style"
    models.write_text('[models.m]\nmodel = "tiny"\n\n[loras.style]\nfile = "x"\n')
    with pytest.raises(ConfigError, match="needs path"):
        load_loras(str(models))
