"""The extension zip (built by the extension_zip fixture, checked in tests/test_extension_zip.py) installs,
enables and uninstalls in this Blender.

Install/uninstall runs in a separate Python with its own Blender user folder, so the installed copy
(bl_ext.user_default.zs2_video) never meets the add-on the other tests load from the checkout.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.blender

INSTALL_SCRIPT = textwrap.dedent("""
    import json, sys
    import bpy

    zip_path = sys.argv[1]
    report = {}
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    module = "bl_ext.user_default.zs2_video"
    report["enabled"] = module in bpy.context.preferences.addons
    report["ops"] = [hasattr(bpy.ops.zss, name) and bpy.ops.zss.__getattr__(name).idname() == "ZSS_OT_" + name
                     for name in ("generate", "cancel", "check_generator", "open_output", "randomize_seed",
                                  "regenerate", "vary_seed")]
    report["scene_zss"] = hasattr(bpy.types.Scene, "zss") and bpy.context.scene.zss.steps == 30
    report["panels"] = [hasattr(bpy.types, name) for name in ("ZSS_PT_main", "ZSS_PT_sequencer")]
    prefs = bpy.context.preferences.addons[module].preferences
    report["prefs"] = prefs.max_resolution
    # The worker's code travels with the add-on.
    import importlib
    installed = importlib.import_module(module)
    report["core"] = installed.zss_core.protocol.PROTOCOL_VERSION
    report["directory"] = installed.__path__[0]
    report["generator_dir"] = installed.zss_blender.environment.default_directory()

    repo_index = next(i for i, r in enumerate(bpy.context.preferences.extensions.repos)
                      if r.module == "user_default")
    bpy.ops.extensions.package_uninstall(repo_index=repo_index, pkg_id="zs2_video")
    report["after_enabled"] = module in bpy.context.preferences.addons
    report["after_scene_zss"] = hasattr(bpy.types.Scene, "zss")
    report["after_ops"] = any(hasattr(bpy.types, "ZSS_OT_" + n) for n in ("generate", "cancel"))
    report["after_panels"] = any(hasattr(bpy.types, n) for n in ("ZSS_PT_main", "ZSS_PT_sequencer"))
    print("REPORT " + json.dumps(report))
""")


def test_install_enable_uninstall(extension_zip, tmp_path):
    env = dict(os.environ)
    for var in ("BLENDER_USER_RESOURCES", "XDG_CACHE_HOME"):
        env[var] = str(tmp_path / var.lower())
    result = subprocess.run(
        [sys.executable, "-c", INSTALL_SCRIPT, extension_zip],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=180,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT ") :])
    assert report["enabled"] and all(report["ops"]) and report["scene_zss"] and all(report["panels"])
    assert report["prefs"] == 768 and report["core"] == 1
    assert report["directory"].startswith(str(tmp_path))
    # Set Up Generator installs into the extension's own user folder.
    assert report["generator_dir"].startswith(str(tmp_path))
    assert report["generator_dir"].replace("\\", "/").endswith("/.user/user_default/zs2_video/generator")
    assert not report["after_enabled"] and not report["after_scene_zss"]
    assert not report["after_ops"] and not report["after_panels"]
