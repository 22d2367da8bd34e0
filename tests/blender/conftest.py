"""Blender tests: real bpy (Blender as a Python module), headless.

Blender's user folders, caches and temp files go to a throw-away folder (set before bpy is imported,
or Blender and Mesa write into $HOME). The add-on is loaded from the repository root under an explicit
package name, exactly as Blender loads an extension, so its relative imports (..zss_core) resolve no
matter what the checkout folder is called.
"""

import importlib.util
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
ADDON = "zss_ext"  # the package name the repository root is imported under
# The generator's Python (torch, diffusers) for tests that start a real worker: this Python when it has
# them (make test), else the one make test-blender names (a bpy-only venv per Blender version).
GENERATOR_PYTHON = os.environ.get("ZSS_GENERATOR_PYTHON") or sys.executable

if importlib.util.find_spec("bpy") is None:
    collect_ignore_glob = ["test_*.py"]  # no bpy for this Python (it needs CPython 3.11)
else:
    _SANDBOX = tempfile.mkdtemp(prefix="zss-blender-tests-")
    for _var, _sub in (("BLENDER_USER_RESOURCES", "blender"), ("XDG_CACHE_HOME", "cache"), ("TMPDIR", "tmp")):
        os.makedirs(os.path.join(_SANDBOX, _sub), exist_ok=True)
        os.environ[_var] = os.path.join(_SANDBOX, _sub)


def load_addon():
    """Import the repository root as package ADDON and enable it like Blender enables an add-on."""
    import addon_utils

    if ADDON not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            ADDON, REPO / "__init__.py", submodule_search_locations=[str(REPO)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[ADDON] = module
        spec.loader.exec_module(module)
        # addon_utils reloads a module whose file changed since __time__; a file-spec module cannot be
        # reloaded by name, so record the time it was loaded at.
        module.__time__ = os.path.getmtime(module.__file__)
    addon_utils.enable(ADDON, default_set=True)
    return sys.modules[ADDON]


@pytest.fixture(scope="session")
def addon():
    import bpy  # noqa: F401  (imported after the environment above is set; puts addon_utils on sys.path)

    # isort: split
    import addon_utils

    module = load_addon()
    yield module
    addon_utils.disable(ADDON, default_set=True)
    shutil.rmtree(_SANDBOX, ignore_errors=True)


@pytest.fixture
def zb(addon):
    """The add-on's zss_blender package, with a fresh default scene and no job left running."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=False)
    jobs = addon.zss_blender.jobs
    environment = addon.zss_blender.environment
    assert not jobs.is_running(), "a previous test left a job running"
    assert not environment.is_running(), "a previous test left a setup running"
    environment.state.__init__()
    yield addon.zss_blender
    if jobs.is_running():  # a failed test: do not leak its job into the next one
        jobs.cancel()
    jobs.abandon("test ended")
    environment.cancel()
    environment.state.__init__()


@pytest.fixture
def prefs(zb, tmp_path):
    """Preferences that work on any machine: GENERATOR_PYTHON as generator, the tiny models."""
    p = zb.preferences.get()
    p.python_path = GENERATOR_PYTHON
    p.model = "tiny"
    p.controlnet_model = "tiny"
    p.output_dir = str(tmp_path / "out")
    p.device = "CPU"
    p.precision = "AUTO"
    p.max_resolution = 768
    p.strip_source = "IMAGES"
    p.recent_models = "[]"
    p.generator_dir = p.setup_python = p.setup_torch_spec = p.setup_pip_args = ""
    p.allow_pickle = p.attention_slicing = p.vae_tiling = p.cpu_offload = False
    p.generator, p.server_url, p.server_token, p.server_cafile, p.server_models = "LOCAL", "", "", "", "[]"
    return p
