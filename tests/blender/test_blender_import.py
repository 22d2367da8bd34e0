"""Import: animated material texture (verified by rendering two frames) and sequencer strip."""

import json
import os

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.blender

FRAMES = 6
START = 5
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]


@pytest.fixture
def clip(tmp_path):
    """A fake finished job: a folder of solid-colour frames and its job dict."""
    job_dir = tmp_path / "zss" / "20260101-000000-abcdef"
    job_dir.mkdir(parents=True)
    frames = []
    for i, color in enumerate(COLORS, start=1):
        path = job_dir / f"frame_{i:04d}.png"
        Image.new("RGB", (32, 16), color).save(path)
        frames.append(str(path))
    job = {
        "id": job_dir.name,
        "prompt": "a  very long prompt about a glowing jellyfish in the deep blue sea",
        "negative_prompt": "blurry",
        "frames": FRAMES,
        "width": 32,
        "height": 16,
        "steps": 4,
        "guidance": 7.5,
        "seed": 42,
        "lam": [0.0, 0.01, 0.02, 0.03, 0.04, 0.05],
        "mu": 0.98,
        "noise": "dependency",
        "model": "tiny",
        "output_dir": str(job_dir.parent),
    }
    return job, str(job_dir), frames


def render_pixel(bpy, scene, frame, path):
    """Render `frame` with Cycles at a tiny size and return the centre pixel (RGB)."""
    scene.frame_set(frame)
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(path, check_existing=False)
    w, h = image.size
    pixels = np.empty(w * h * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return pixels.reshape(h, w, 4)[h // 2, w // 2, :3]


def test_material_texture_animates(zb, clip, tmp_path):
    import bpy

    job, job_dir, frames = clip
    scene = bpy.context.scene
    cube = bpy.data.objects["Cube"]
    material, image, objects = zb.importers.import_material(
        scene, scene.collection, frames, job, job_dir, START, [cube.name], use_emission=True
    )

    assert objects == [cube] and cube.active_material == material
    assert image.source == "SEQUENCE"
    node = next(n for n in material.node_tree.nodes if n.type == "TEX_IMAGE")
    assert node.image == image
    user = node.image_user
    assert (user.frame_duration, user.frame_start, user.frame_offset) == (FRAMES, START, 0)
    assert user.use_cyclic and user.use_auto_refresh
    assert material.name.startswith("ZS² a very long prompt") and len(material.name) <= 48
    for datablock in (image, material):
        assert datablock["zss_job_id"] == job["id"] and datablock["zss_seed"] == 42
        assert datablock["zss_prompt"] == job["prompt"] and datablock["zss_model"] == "tiny"
        assert list(datablock["zss_lam"]) == pytest.approx(job["lam"]) and datablock["zss_mu"] == pytest.approx(0.98)
        assert datablock["zss_job_dir"] == job_dir and datablock["zss_frame_start"] == START
        assert json.loads(datablock["zss_job"])["steps"] == 4

    # Render the cube (emission = the texture) at two frames: the texture must change with the frame.
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = 24
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "OPEN_EXR"
    bpy.data.objects["Light"].hide_render = True
    scene.world = None
    first = render_pixel(bpy, scene, START, str(tmp_path / "a.exr"))
    third = render_pixel(bpy, scene, START + 2, str(tmp_path / "b.exr"))
    assert first[0] > first[2] + 0.2  # red frame_0001
    assert third[2] > third[0] + 0.2  # blue frame_0003
    cyclic = render_pixel(bpy, scene, START + FRAMES, str(tmp_path / "c.exr"))
    assert cyclic[0] > cyclic[2] + 0.2  # loops back to frame_0001


def test_new_plane_faces_camera_when_nothing_selected(zb, clip):
    import bpy

    job, job_dir, frames = clip
    scene = bpy.context.scene
    _material, _image, objects = zb.importers.import_material(
        scene, scene.collection, frames, job, job_dir, START, [], use_emission=False
    )
    (plane,) = objects
    assert plane.name.startswith("ZS²") and plane.data.uv_layers
    xs = [v.co.x for v in plane.data.vertices]
    ys = [v.co.y for v in plane.data.vertices]
    assert (max(xs) - min(xs)) / (max(ys) - min(ys)) == pytest.approx(2.0)  # the clip's 32×16 aspect
    normal = (plane.matrix_world.to_3x3() @ plane.data.polygons[0].normal).normalized()
    to_camera = (scene.camera.matrix_world.translation - plane.matrix_world.translation).normalized()
    assert normal.dot(to_camera) > 0.99


def test_strip_on_free_channel(zb, clip):
    """Placement 'SCENE' (Scene.zss.strip_placement): the strip goes into this scene, as before issue 11."""
    import bpy

    job, job_dir, frames = clip
    scene = bpy.context.scene
    scene.zss.strip_placement = "SCENE"
    editor = scene.sequence_editor_create()
    strips = zb.compat.top_level_strips(editor)
    blocker = strips.new_image("blocker", frames[0], 1, START + 2, fit_method="FIT")  # channel 1 is busy
    strip = zb.importers.import_strip(scene, frames, None, job, job_dir, START)
    assert strip.channel == 2 and blocker.channel == 1
    assert strip.frame_final_start == START and strip.frame_final_duration == FRAMES
    assert len(strip.elements) == FRAMES
    assert [e.filename for e in strip.elements] == [os.path.basename(f) for f in frames]
    assert os.path.normpath(bpy.path.abspath(strip.directory)) == os.path.normpath(job_dir)
    assert strip["zss_job_id"] == job["id"] and strip["zss_seed"] == 42
    # Later in the timeline channel 1 is free again.
    later = zb.importers.import_strip(scene, frames, None, job, job_dir, START + 100)
    assert later.channel == 1


def test_paths_relative_to_saved_blend(zb, clip, tmp_path):
    import bpy

    job, job_dir, frames = clip
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    scene = bpy.context.scene
    _material, image, _objects = zb.importers.import_material(
        scene, scene.collection, frames, job, job_dir, START, ["Cube"]
    )
    strip = zb.importers.import_strip(scene, frames, None, job, job_dir, START, placement="SCENE")
    assert image.filepath.startswith("//zss/") and strip.directory.startswith("//zss/")
    assert image["zss_job_dir"].startswith("//zss/") and strip["zss_job_dir"] == image["zss_job_dir"]
    assert os.path.normpath(bpy.path.abspath(image.filepath)) == os.path.normpath(frames[0])


def test_replace_updates_material_image_and_strip_in_place(zb, tmp_path):
    """Regenerate / Vary Seed (issue 11, bug 8): five imports with replace= leave the counts of materials,
    images, node groups and strips unchanged, point the image at the newest frames and keep the strip's
    channel and start; the render shows the newest clip."""
    import bpy

    scene = bpy.context.scene

    def clip_number(n, color):
        job_dir = tmp_path / "zss" / f"20260101-00000{n}-abcdef"
        job_dir.mkdir(parents=True)
        frames = []
        for i in range(1, 4):
            frames.append(str(job_dir / f"frame_{i:04d}.png"))
            Image.new("RGB", (32, 16), color).save(frames[-1])
        job = {
            "id": job_dir.name,
            "prompt": "sea",
            "frames": 3,
            "width": 32,
            "height": 16,
            "steps": 2,
            "guidance": 7.5,
            "seed": n,
            "lam": 0.01,
            "mu": 0.98,
            "noise": "dependency",
            "model": "tiny",
            "output_dir": str(job_dir.parent),
            "control": {"type": "depth", "images": [], "scale": 1.0},
        }
        return job, str(job_dir), frames

    job, job_dir, frames = clip_number(0, (255, 0, 0))
    material, image, _objects = zb.importers.import_material(
        scene, scene.collection, frames, job, job_dir, START, ["Cube"], use_emission=True
    )
    strip = zb.importers.import_strip(scene, frames, None, job, job_dir, START)
    strip.channel, strip.frame_start = 4, START + 10  # the user moved it
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = 24
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "OPEN_EXR"
    bpy.data.objects["Light"].hide_render = True
    scene.world = None
    first = render_pixel(bpy, scene, START, str(tmp_path / "first.exr"))  # loads (caches) the first clip
    assert first[0] > first[2] + 0.2
    editor = strip.id_data.sequence_editor

    def counts():
        return (
            len(bpy.data.materials),
            len(bpy.data.images),
            len(bpy.data.node_groups),
            len(bpy.data.scenes),
            len(zb.compat.all_strips(editor)),
        )

    before = counts()
    for n in range(1, 6):
        job, job_dir, frames = clip_number(n, (0, 0, 255) if n == 5 else (0, 255, 0))
        material, image, objects = zb.importers.import_material(
            scene, scene.collection, frames, job, job_dir, START, [], use_emission=True, replace=material.name
        )
        strip = zb.importers.import_strip(scene, frames, None, job, job_dir, START, replace=strip.name)
        assert counts() == before, n
    assert objects == [bpy.data.objects["Cube"]]  # nothing selected: the objects using it keep it
    assert os.path.normpath(bpy.path.abspath(image.filepath)) == os.path.normpath(frames[0])
    assert material["zss_seed"] == image["zss_seed"] == strip["zss_seed"] == 5
    assert (strip.channel, strip.frame_final_start) == (4, START + 10)
    assert strip["zss_job_id"] == job["id"] and os.path.normpath(bpy.path.abspath(strip.directory)) == job_dir

    newest = render_pixel(bpy, scene, START, str(tmp_path / "newest.exr"))
    assert newest[2] > newest[0] + 0.2 and newest[2] > newest[1] + 0.2  # blue: clip 5, not a cached frame
