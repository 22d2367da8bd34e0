"""Depth maps: one PNG per frame, one normalization for the clip, user settings untouched."""

import itertools
import math

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.blender

SIZE = 64
FRAMES = 6


STEP_TOP = (1.6, 1.6, 1.0)  # centre of the top face of a static box standing on the ground


def build_scene(bpy):
    """Camera looking straight down and sliding sideways: the static box's top face keeps the same planar
    depth (9) in every frame, while the cube rises towards the camera; the ground is the farthest."""
    scene = bpy.context.scene
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    ground = bpy.data.objects.new("Ground", bpy.data.meshes.new("Ground"))
    ground.data.from_pydata([(-3, -3, 0), (3, -3, 0), (3, 3, 0), (-3, 3, 0)], [], [(0, 1, 2, 3)])
    scene.collection.objects.link(ground)
    cube_mesh = bpy.data.meshes.new("Cube")
    import bmesh

    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.0)
    bm.to_mesh(cube_mesh)
    bm.free()
    cube = bpy.data.objects.new("Cube", cube_mesh)
    scene.collection.objects.link(cube)
    step = bpy.data.objects.new("Step", cube_mesh)
    step.location = (STEP_TOP[0], STEP_TOP[1], STEP_TOP[2] / 2)
    step.scale = (1.6, 1.6, STEP_TOP[2])
    scene.collection.objects.link(step)
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.lens = 35
    scene.collection.objects.link(camera)
    scene.camera = camera
    for frame, cam_x, cube_z in ((1, -0.4, 1.0), (FRAMES, 0.4, 4.0)):
        camera.location = (cam_x, 0.0, 10.0)
        camera.keyframe_insert("location", frame=frame)
        cube.location = (0.0, 0.0, cube_z)
        cube.keyframe_insert("location", frame=frame)
    return scene, cube


def user_settings(scene, view_layer):
    render = scene.render
    return {
        "engine": render.engine,
        "x": render.resolution_x,
        "y": render.resolution_y,
        "percentage": render.resolution_percentage,
        "format": render.image_settings.file_format,
        "color_mode": render.image_settings.color_mode,
        "color_depth": render.image_settings.color_depth,
        "filepath": render.filepath,
        "film_transparent": render.film_transparent,
        "use_compositing": render.use_compositing,
        "use_sequencer": render.use_sequencer,
        "pass_z": view_layer.use_pass_z,
        "override": view_layer.material_override,
        "samples": scene.cycles.samples,
        "denoise": scene.cycles.use_denoising,
        "frame": scene.frame_current,
        "materials": sorted(m.name for m in bpy_module().data.materials),
        "images": sorted(i.name for i in bpy_module().data.images),
    }


def pixel_of(bpy, scene, frame, world_point):
    """(row, column) in a top-down image array where world_point is seen at frame."""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    scene.frame_set(frame)
    u, v, _depth = world_to_camera_view(scene, scene.camera, Vector(world_point))
    return SIZE - 1 - int(v * SIZE), int(u * SIZE)


def bpy_module():
    import bpy

    return bpy


def test_depth_maps_share_one_range_and_restore_settings(zb, tmp_path):
    bpy = bpy_module()
    scene, _cube = build_scene(bpy)
    view_layer = bpy.context.view_layer
    render = scene.render
    render.engine = zb.compat.EEVEE  # a user setting the depth render must restore
    render.resolution_x, render.resolution_y, render.resolution_percentage = 1920, 1080, 50
    render.image_settings.file_format = "JPEG"
    render.filepath = "/tmp/user-output-"
    view_layer.use_pass_z = False
    scene.frame_set(3)
    before = user_settings(scene, view_layer)

    paths, (near, far) = zb.depth.render_depth_maps(scene, view_layer, 1, FRAMES, SIZE, SIZE, str(tmp_path))

    assert user_settings(scene, view_layer) == before
    assert [p.rsplit("/", 1)[-1] for p in paths] == [f"depth_{i:04d}.png" for i in range(1, FRAMES + 1)]
    assert 0 < near < far
    maps = []
    for path in paths:
        image = Image.open(path)
        assert image.mode == "I;16" and image.size == (SIZE, SIZE)  # 16-bit grayscale
        maps.append(np.array(image).astype(np.int64))

    render.resolution_x, render.resolution_y, render.resolution_percentage = SIZE, SIZE, 100  # for pixel_of
    # The box top is 9 units below a camera that only slides sideways: same value in every frame,
    # although the cube (the nearest thing) changes depth, so a per-frame range would change it.
    step_values = [m[pixel_of(bpy, scene, frame, STEP_TOP)] for frame, m in enumerate(maps, start=1)]
    assert min(step_values) > 0 and max(step_values) - min(step_values) <= 1, step_values
    # The corners see no geometry (background), the ground is the farthest surface: both black.
    assert all(m[0, 0] == 0 and m[-1, -1] == 0 for m in maps)
    assert all(m[pixel_of(bpy, scene, frame, (-2.0, -2.0, 0.0))] == 0 for frame, m in enumerate(maps, start=1))
    # The cube rises towards the camera: nearer is brighter, and brighter than the box.
    center = [m[SIZE // 2, SIZE // 2] for m in maps]
    assert all(b > a for a, b in itertools.pairwise(center)), center
    assert center[0] > step_values[0]
    assert max(m.max() for m in maps) == 65535  # the nearest percentile reaches white


def test_normalize_is_disparity_between_near_and_far(zb):
    depth = zb.depth
    z = np.array([[2.0, 4.0], [8.0, np.inf]], dtype=np.float32)
    v = depth.normalize(z, 2.0, 8.0)
    expected_mid = (1 / 4 - 1 / 8) / (1 / 2 - 1 / 8)
    assert v[0, 0] == pytest.approx(1.0) and v[1, 0] == pytest.approx(0.0) and v[1, 1] == 0.0
    assert v[0, 1] == pytest.approx(expected_mid)
    assert depth.clip_range(np.array([], dtype=np.float32)) is None
    near, far = depth.clip_range(np.full(100, 5.0, dtype=np.float32))  # a flat wall still gets a range
    assert near < 5.0 < far and math.isfinite(far)
