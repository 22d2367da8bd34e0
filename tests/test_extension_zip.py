"""The Blender extension zip (`make zip`): what it contains and what it leaves out. Installing it into
real Blender is tests/blender/test_blender_extension.py."""

import pathlib
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_zip_contents(extension_zip):
    names = zipfile.ZipFile(extension_zip).namelist()
    assert {
        "blender_manifest.toml",
        "__init__.py",
        "zss_blender/__init__.py",
        "zss_blender/jobs.py",
        "zss_blender/compat.py",
        "zss_core/__init__.py",
        "zss_core/protocol.py",
        "zss_core/client.py",
        "zss_core/worker.py",
        "icons/zss.png",
        "icons/generate.png",
    } <= set(names)
    core_sources = {p.name for p in (ROOT / "zss_core").glob("*.py")}
    assert core_sources <= {n.split("/", 1)[1] for n in names if n.startswith("zss_core/")}
    forbidden = (
        "tests/",
        "bench/",
        "tools/",
        "docs/",
        "train/",
        ".venv",
        "dist/",
        ".git/",
        "Makefile",
        "pyproject.toml",
    )
    assert not [
        n for n in names if n.startswith(forbidden) or "__pycache__" in n or n.endswith(".pyc") or "/." in "/" + n
    ]
