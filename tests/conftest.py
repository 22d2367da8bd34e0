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
