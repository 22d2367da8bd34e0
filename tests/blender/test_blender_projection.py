"""Camera projection (issue 11, bug 3): a depth-conditioned clip lands on the geometry it was made for.

The "generated" clip here is the depth map itself, so a correct mapping renders the depth map back:
edges of the render must sit on the depth map's edges. The object's UV map (the mapping before the fix)
scatters the picture over the cube's faces and scores far lower.
"""

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.blender

WIDTH, HEIGHT = 96, 64  # the job's size; not the render's default aspect
EDGE = 0.08  # a step of more than this (0…1) between neighbouring pixels is an edge
CAMERA_MIN = 0.9  # fraction of depth-map edge pixels with a render edge within 1 px
UV_MAX = 0.6
FRAMES = 2


def build_scene(bpy):
    """The default cube turned at an angle, a camera that looks at it from the side and moves between the
    clip's two frames (with a lens shift); nothing else, no light, no world: the render is the emission."""
    scene = bpy.context.scene
    cube = bpy.data.objects["Cube"]
    cube.rotation_euler = (0.4, 0.3, 0.7)
    cube.location = (0.2, 0.0, 0.0)
    camera = scene.camera
    camera.data.lens = 50
    camera.data.shift_x = 0.05
    track = camera.constraints.new("TRACK_TO")
    track.target = cube
    for frame, location in ((1, (5.0, -6.0, 3.0)), (FRAMES, (3.5, -7.0, 1.5))):
        camera.location = location
        camera.keyframe_insert("location", frame=frame)
    bpy.data.objects["Light"].hide_render = True
    scene.world = None
    scene.frame_start, scene.frame_end = 1, FRAMES
    scene.render.resolution_x, scene.render.resolution_y = WIDTH, HEIGHT
    scene.render.resolution_percentage = 100
    return scene, cube


def depth_clip(zb, bpy, scene, tmp_path):
    """Depth maps of the clip's frames and 'generated' frames that are exactly those maps (8-bit RGB)."""
    control, _range = zb.depth.render_depth_maps(
        scene, bpy.context.view_layer, 1, FRAMES, WIDTH, HEIGHT, str(tmp_path / "control")
    )
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    frames, maps = [], []
    for i, path in enumerate(control, start=1):
        depth = np.array(Image.open(path)).astype(np.float64) / 65535.0
        frame = np.round(depth * 255).astype(np.uint8)
        frames.append(str(job_dir / f"frame_{i:04d}.png"))
        Image.fromarray(np.stack([frame] * 3, axis=-1)).save(frames[-1])
        maps.append(frame / 255.0)
    job = {
        "id": "20260101-000000-dddddd",
        "prompt": "depth",
        "negative_prompt": "",
        "frames": FRAMES,
        "width": WIDTH,
        "height": HEIGHT,
        "steps": 2,
        "guidance": 7.5,
        "seed": 1,
        "lam": 0.01,
        "mu": 0.98,
        "noise": "dependency",
        "model": "tiny",
        "output_dir": str(tmp_path),
        "control": {"type": "depth", "images": control, "scale": 1.0},
    }
    return job, str(job_dir), frames, maps


def render(bpy, scene, frame, path):
    """Cycles, one sample at each pixel centre (no filter), Standard view: pixels = the emitted texture."""
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.pixel_filter_type = "BOX"
    scene.cycles.filter_width = 0.01
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    settings = scene.render.image_settings
    settings.file_format, settings.color_mode, settings.color_depth = "PNG", "RGB", "8"
    scene.frame_set(frame)
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    return np.array(Image.open(path).convert("L")).astype(np.float64) / 255.0


def edges(image):
    """Pixels on either side of a step larger than EDGE to the right or below."""
    marks = np.zeros(image.shape, dtype=bool)
    step_x = np.abs(np.diff(image, axis=1)) > EDGE
    step_y = np.abs(np.diff(image, axis=0)) > EDGE
    marks[:, :-1] |= step_x
    marks[:, 1:] |= step_x
    marks[:-1, :] |= step_y
    marks[1:, :] |= step_y
    return marks


def edge_score(render_image, depth_map):
    """Fraction of the depth map's edge pixels that have a render edge within 1 px."""
    target = edges(depth_map)
    found = np.pad(edges(render_image), 1)
    near = np.zeros(target.shape, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            near |= found[dy : dy + target.shape[0], dx : dx + target.shape[1]]
    assert target.sum() > 40, "the depth map has too few edges to judge the mapping"
    return float((target & near).sum() / target.sum())


def test_depth_clip_is_projected_from_the_generating_camera(zb, tmp_path):
    import bpy

    scene, cube = build_scene(bpy)
    job, job_dir, frames, maps = depth_clip(zb, bpy, scene, tmp_path)
    assert scene.zss.mapping == "CAMERA"  # the default for depth-controlled clips
    material, _image, _objects = zb.importers.import_material(
        scene, scene.collection, frames, job, job_dir, 1, [cube.name], use_emission=True
    )
    assert material.node_tree.nodes["ZS² Clip"].inputs["Vector"].links[0].from_node.name == "ZS² Projection"
    camera_scores = [
        edge_score(render(bpy, scene, f, str(tmp_path / f"camera_{f}.png")), maps[f - 1]) for f in range(1, FRAMES + 1)
    ]

    # The same clip through the cube's UV map: what the importer did before the fix.
    zb.importers.import_material(
        scene,
        scene.collection,
        frames,
        job,
        job_dir,
        1,
        [cube.name],
        use_emission=True,
        mapping="UV",
        replace=material.name,
    )
    assert not material.node_tree.nodes["ZS² Clip"].inputs["Vector"].links
    uv_score = edge_score(render(bpy, scene, 1, str(tmp_path / "uv.png")), maps[0])
    print(
        f"edge overlap with the depth map: camera projection {camera_scores} (frames 1, {FRAMES}; the camera "
        f"moves), UV map {uv_score:.3f}"
    )
    assert min(camera_scores) >= CAMERA_MIN, camera_scores
    assert uv_score <= UV_MAX and min(camera_scores) - uv_score > 0.3, (uv_score, camera_scores)


def test_clip_without_depth_keeps_the_uv_map(zb, tmp_path):
    import bpy

    scene = bpy.context.scene
    path = tmp_path / "frame_0001.png"
    Image.new("RGB", (WIDTH, HEIGHT), (200, 10, 10)).save(path)
    job = {
        "id": "20260101-000000-eeeeee",
        "prompt": "plain",
        "frames": 1,
        "width": WIDTH,
        "height": HEIGHT,
        "steps": 2,
        "guidance": 7.5,
        "seed": 1,
        "lam": 0.01,
        "mu": 0.98,
        "noise": "dependency",
        "model": "tiny",
        "output_dir": str(tmp_path),
    }
    material, _image, _objects = zb.importers.import_material(
        scene, scene.collection, [str(path)], job, str(tmp_path), 1, ["Cube"]
    )
    nodes = material.node_tree.nodes
    assert "ZS² Projection" not in nodes and not nodes["ZS² Clip"].inputs["Vector"].links
