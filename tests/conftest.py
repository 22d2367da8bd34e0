"""Shared fixtures: offline hub, temporary caches, and the tiny model saved once per session."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny SD + ControlNet written with save_pretrained, so tests load it through the real path."""
    from zss_core.models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd", controlnet=True)


@pytest.fixture(scope="session")
def tiny_pipe():
    from zss_core.models import load_pipeline

    return load_pipeline("tiny", device="cpu")


@pytest.fixture(scope="session")
def tiny_control_pipe():
    from zss_core.models import load_pipeline

    return load_pipeline("tiny", "tiny", device="cpu")


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory):
    """The extension zip as `make zip` builds it: tools/build_extension.py under Python with no
    site-packages (-S), so the build needs nothing beyond the standard library (no bpy, no venv)."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-S", str(ROOT / "tools" / "build_extension.py"), "--output-dir", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    zip_path = result.stdout.strip().splitlines()[-1]
    assert zip_path == str(out / "zs2_video-0.1.0.zip") and os.path.isfile(zip_path)
    return zip_path


# ---------------------------------------------------------------------------------------------
# Tiny SD 2.x (v-prediction) and SDXL models, built from configs like the SD1 one (issue 15)


def build_tiny_sd2(seed=0):
    """(SD 2.x-shaped pipeline, its ControlNet): linear transformer projections, per-block head counts,
    an OpenCLIP-style (gelu) text encoder and a v-prediction scheduler, as stabilityai/stable-diffusion-2-1."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    from zss_core.models import TINY_UNET, sd_pipeline_parts, tiny_controlnet, tiny_text_config, tiny_vae

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**{**TINY_UNET, "attention_head_dim": (2, 4), "use_linear_projection": True})
        parts = sd_pipeline_parts(unet, tiny_vae(), CLIPTextModel(tiny_text_config(hidden_act="gelu")))
        parts["scheduler"] = parts["scheduler"].from_config(parts["scheduler"].config, prediction_type="v_prediction")
        return StableDiffusionPipeline(**parts), tiny_controlnet(unet)


def build_tiny_sdxl(seed=0):
    """(SDXL-shaped pipeline, its ControlNet): two text encoders (the second with a projection, whose
    pooled output and the 6 size/crop ids make the ``text_time`` embedding), linear projections, and a
    transformer block with 2 layers (down, mid and up), as stabilityai/stable-diffusion-xl-base-1.0."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from zss_core.models import TINY_UNET, sdxl_pipeline, tiny_controlnet, tiny_text_config, tiny_vae

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sdxl = {
            "cross_attention_dim": 64,  # the two text encoders' widths together
            "attention_head_dim": (2, 4),
            "transformer_layers_per_block": (1, 2),
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 6 * 8 + 32,  # 6 time ids × 8 + pooled text (32)
        }
        unet = UNet2DConditionModel(**{**TINY_UNET, **sdxl})
        text_encoder = CLIPTextModel(tiny_text_config())
        text_encoder_2 = CLIPTextModelWithProjection(tiny_text_config(hidden_act="gelu"))
        return sdxl_pipeline(unet, tiny_vae(), text_encoder, text_encoder_2), tiny_controlnet(unet)


def _save_family_model(directory, built):
    pipe, controlnet = built
    pipe.save_pretrained(directory, safe_serialization=True)
    controlnet.save_pretrained(directory / "controlnet", safe_serialization=True)
    return directory


@pytest.fixture(scope="session")
def tiny_sd2_dir(tmp_path_factory):
    """The tiny SD 2.x (v-prediction) model and its ControlNet, written with save_pretrained."""
    return _save_family_model(tmp_path_factory.mktemp("models") / "tiny-sd2", build_tiny_sd2())


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory):
    """The tiny SDXL model and its ControlNet, written with save_pretrained."""
    return _save_family_model(tmp_path_factory.mktemp("models") / "tiny-sdxl", build_tiny_sdxl())
