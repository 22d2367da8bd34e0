"""The Flamenco job type's depth task in real Blender (bpy): integrations/flamenco/render_depth.py, run
the way a Worker runs it (a fresh Blender with the blend file open, the script's arguments after `--`),
writes the same depth maps as the add-on; and a whole compiled job — depth task, then `zss generate` —
runs to a clip. Compiling alone is tests/test_flamenco_jobtype.py."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import GENERATOR_PYTHON, REPO
from PIL import Image

pytestmark = pytest.mark.blender

SCRIPT = REPO / "integrations" / "flamenco" / "render_depth.py"
JOB_TYPE_JS = REPO / "integrations" / "flamenco" / "zss-generate.js"
STUB = REPO / "tests" / "flamenco" / "author_stub.js"
SIZE = 32  # the maps' width and height (--size 32x32)

# A Worker's `blender --background FILE ARGS…`, for a Python whose Blender is the bpy module: open the
# file, give the script Blender's argv, run each --python script as Blender does (as __main__, with
# --python-exit-code's status when it raises).
BLENDER = """
import runpy, sys
import bpy

blend, args = sys.argv[1], sys.argv[2:]
bpy.ops.wm.open_mainfile(filepath=blend)
sys.argv = ["blender", "--background", blend, *args]
exit_code = int(args[args.index("--python-exit-code") + 1]) if "--python-exit-code" in args else 0
i = 0
while i < len(args) and args[i] != "--":
    if args[i] == "--python":
        try:
            runpy.run_path(args[i + 1], run_name="__main__")
        except SystemExit:
            raise
        except Exception as e:
            print(f"Python error: {e!r}", file=sys.stderr)
            sys.exit(exit_code)
        i += 1
    i += 1
"""


def blender(blend, args):
    return subprocess.run(
        [sys.executable, "-c", BLENDER, str(blend), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def save_shot(bpy, path):
    """A cube rising over a ground plane, seen from above by ShotCam over 2 frames; the scene's own
    camera (Other) looks away from everything, so maps with geometry prove ShotCam was used."""
    import bmesh

    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    ground = bpy.data.objects.new("Ground", bpy.data.meshes.new("Ground"))
    ground.data.from_pydata([(-4, -4, 0), (4, -4, 0), (4, 4, 0), (-4, 4, 0)], [], [(0, 1, 2, 3)])
    scene.collection.objects.link(ground)
    mesh = bpy.data.meshes.new("Cube")
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.0)
    bm.to_mesh(mesh)
    bm.free()
    cube = bpy.data.objects.new("Cube", mesh)
    scene.collection.objects.link(cube)
    for frame, z in ((1, 1.0), (2, 3.0)):
        cube.location = (0.0, 0.0, z)
        cube.keyframe_insert("location", frame=frame)
    shot = bpy.data.objects.new("ShotCam", bpy.data.cameras.new("ShotCam"))
    shot.location = (0.0, 0.0, 10.0)  # a camera's default orientation looks down -Z
    other = bpy.data.objects.new("Other", bpy.data.cameras.new("Other"))
    other.location = (0.0, 0.0, -10.0)  # below the ground, looking further down: sees nothing
    for cam in (shot, other):
        scene.collection.objects.link(cam)
    scene.camera = other
    scene.frame_start, scene.frame_end = 1, 2
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return scene


def read_maps(folder):
    names = sorted(n for n in os.listdir(folder) if n.endswith(".png"))
    maps = []
    for name in names:
        image = Image.open(os.path.join(folder, name))
        assert image.mode == "I;16" and image.size == (SIZE, SIZE)  # 16-bit grayscale, as the add-on writes
        maps.append(np.array(image))
    return names, maps


def test_script_renders_the_addons_depth_maps_from_the_named_camera(zb, tmp_path):
    import bpy

    blend = tmp_path / "shot.blend"
    scene = save_shot(bpy, blend)
    out = tmp_path / "farm" / "depth"

    options = ["--out", str(out), "--camera", "ShotCam", "--frame-start", "1", "--frames", "2", "--size", "32x32"]
    result = blender(blend, ["--python", str(SCRIPT), "--", *options])

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"render_depth.py: 2 depth maps in {out}" in result.stdout
    names, maps = read_maps(out)
    assert names == ["depth_0001.png", "depth_0002.png"]
    assert all(m.max() > 0 for m in maps), "ShotCam sees the cube: the maps cannot be empty"
    assert maps[1][SIZE // 2, SIZE // 2] > maps[0][SIZE // 2, SIZE // 2]  # the cube rises: nearer, brighter

    # The same maps as the add-on renders before a job (same function, same camera, same frames).
    scene.camera = bpy.data.objects["ShotCam"]
    addon_paths, _ = zb.depth.render_depth_maps(scene, bpy.context.view_layer, 1, 2, SIZE, SIZE, str(tmp_path / "a"))
    assert [os.path.basename(p) for p in addon_paths] == names
    assert all(np.array_equal(a, b) for a, b in zip(read_maps(tmp_path / "a")[1], maps, strict=True))


def test_script_fails_the_task_on_an_unknown_camera(zb, tmp_path):
    import bpy

    blend = tmp_path / "shot.blend"
    save_shot(bpy, blend)
    out = tmp_path / "depth"

    options = ["--out", str(out), "--camera", "Missing", "--frames", "2", "--size", "32x32"]
    result = blender(blend, ["--python-exit-code", "1", "--python", str(SCRIPT), "--", *options])

    assert result.returncode == 1
    assert "no camera object named 'Missing'" in result.stderr and "ShotCam" in result.stderr
    assert not out.exists() or not os.listdir(out)


def test_script_as_a_function_restores_the_scene_camera(zb, tmp_path):
    import bpy

    save_shot(bpy, tmp_path / "shot.blend")
    spec = importlib.util.spec_from_file_location("render_depth_function", SCRIPT)
    render_depth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render_depth)

    paths, (near, far) = render_depth.render(str(tmp_path / "d"), 2, SIZE, SIZE, camera="ShotCam", frame_start=1)

    assert [os.path.basename(p) for p in paths] == ["depth_0001.png", "depth_0002.png"] and 0 < near < far
    assert bpy.context.scene.camera.name == "Other"


def _has_torch(python):
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"
    try:
        return subprocess.run([python, "-c", probe], check=False, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: the job type is JavaScript")
@pytest.mark.skipif(not _has_torch(GENERATOR_PYTHON), reason=f"{GENERATOR_PYTHON} has no torch (ZSS_GENERATOR_PYTHON)")
def test_compiled_job_runs_depth_then_generate_to_a_clip(zb, tmp_path):
    """The job as Flamenco would run it: compile (node + stand-in runtime), run the depth task's Blender
    command, then the generate task's `zss generate` (tiny models, CPU), in dependency order."""
    import bpy

    blend = tmp_path / "shot.flamenco.blend"
    save_shot(bpy, blend)
    settings = {
        "prompt": 'a "koi" pond',
        "model": "tiny",
        "frames": 2,
        "frame_start": 1,
        "width": 64,
        "height": 64,
        "steps": 2,
        "use_depth": True,
        "camera": "ShotCam",
        "blendfile": str(blend),
        "depth_script": str(SCRIPT),
        "render_output_root": str(tmp_path / "renders"),
        "render_output_path": str(tmp_path / "renders" / "job" / "{timestamp}"),
    }
    job = {"name": "job", "created": "2026-03-04T05:06:07Z", "settings": settings}
    compiled = subprocess.run(
        [shutil.which("node"), str(STUB), str(JOB_TYPE_JS)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TZ": "UTC"},
        check=True,
    )
    depth_task, generate_task = json.loads(compiled.stdout)["tasks"]
    assert generate_task["dependencies"] == [depth_task["id"]]

    (render,) = depth_task["commands"]
    result = blender(render["parameters"]["blendfile"], render["parameters"]["args"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    (generate,) = generate_task["commands"]
    assert generate["parameters"]["exe"] == "zss"  # the console script of zss_core.cli:main
    result = subprocess.run(
        [GENERATOR_PYTHON, "-m", "zss_core.cli", *generate["parameters"]["args"]],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    clip = tmp_path / "renders" / "job" / "2026-03-04_050607" / "clip"
    assert result.stdout.strip().splitlines()[-1] == str(clip)
    record = json.loads((clip / "job.json").read_text())
    depth_dir = clip.parent / "depth"
    assert record["status"] == "done" and len(record["job"]["control"]["images"]) == 2
    assert record["job"]["prompt"] == 'a "koi" pond'
    assert (clip / "frame_0001.png").is_file() and (clip / "frame_0002.png").is_file()
    assert sorted(p.name for p in depth_dir.iterdir()) == ["depth_0001.png", "depth_0002.png"]
