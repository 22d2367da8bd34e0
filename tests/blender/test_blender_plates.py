"""Strips go to a plates scene (issue 11, bug 2): F12 in the 3D scene keeps rendering 3D, and rendering
'<scene> · plates' composites the 3D render over the clip."""

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.blender

START = 3
FRAMES = 4
PLATE = (255, 0, 0)  # the clip: red
CUBE = (0.0, 0.0, 1.0)  # the 3D scene: an emitting blue cube on a transparent film


@pytest.fixture
def clip(tmp_path):
    job_dir = tmp_path / "zss" / "20260101-000000-ffffff"
    job_dir.mkdir(parents=True)
    frames = []
    for i in range(1, FRAMES + 1):
        frames.append(str(job_dir / f"frame_{i:04d}.png"))
        Image.new("RGB", (32, 16), PLATE).save(frames[-1])
    job = {
        "id": job_dir.name,
        "prompt": "red sky",
        "negative_prompt": "",
        "frames": FRAMES,
        "width": 32,
        "height": 16,
        "steps": 2,
        "guidance": 7.5,
        "seed": 3,
        "lam": 0.01,
        "mu": 0.98,
        "noise": "dependency",
        "model": "tiny",
        "output_dir": str(job_dir.parent),
    }
    return job, str(job_dir), frames


def strips_of(zb, scene):
    editor = scene.sequence_editor
    return list(zb.compat.top_level_strips(editor)) if editor is not None else []


def setup_3d_scene(bpy):
    """A tiny Cycles scene: the default cube emitting blue, no light, no world, Standard view."""
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 12
    scene.render.fps = 30
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 32, 24, 100
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.view_settings.view_transform = "Standard"
    bpy.data.objects["Light"].hide_render = True
    scene.world = None
    material = bpy.data.materials.new("blue")
    if bpy.app.version < (5, 0, 0):
        material.use_nodes = True
    nodes = material.node_tree.nodes
    nodes.clear()
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Color"].default_value = (*CUBE, 1.0)
    output = nodes.new("ShaderNodeOutputMaterial")
    material.node_tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    bpy.data.objects["Cube"].active_material = material
    return scene


def render(bpy, scene, frame, path):
    """Render scene at frame as 8-bit RGBA; rows top-down."""
    scene.frame_set(frame)
    settings = scene.render.image_settings
    settings.file_format, settings.color_mode, settings.color_depth = "PNG", "RGBA", "8"
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True, scene=scene.name)
    return np.array(Image.open(path).convert("RGBA")).astype(int)


def test_strip_goes_to_a_plates_scene_under_the_3d_render(zb, clip, tmp_path):
    import bpy

    job, job_dir, frames = clip
    scene = setup_3d_scene(bpy)
    assert scene.zss.strip_placement == "PLATES"  # the default
    result = zb.importers.place_strip(scene, frames, None, job, job_dir, START)

    # The 3D scene is untouched: no strip, so F12 there renders the 3D scene.
    assert strips_of(zb, scene) == [] and not scene.render.film_transparent
    edit = bpy.data.scenes[f"{scene.name} · plates"]
    assert result.scene == edit and result.strip.id_data == edit
    plate, scene_strip = sorted(strips_of(zb, edit), key=lambda s: s.channel)
    assert plate == result.strip and plate.type == "IMAGE" and plate["zss_job_id"] == job["id"]
    assert plate["zss_scene"] == scene.name
    assert (plate.frame_final_start, plate.frame_final_duration) == (START, FRAMES)
    assert scene_strip.type == "SCENE" and scene_strip.scene == scene and scene_strip.channel > plate.channel
    assert scene_strip.blend_type == "ALPHA_OVER"
    assert (scene_strip.frame_final_start, scene_strip.frame_final_end) == (scene.frame_start, scene.frame_end + 1)
    assert (edit.frame_start, edit.frame_end, edit.render.fps) == (1, 12, 30)
    assert (edit.render.resolution_x, edit.render.resolution_y) == (32, 24) and edit.render.use_sequencer
    # The import says where the clip went; the 3D film is opaque and would hide the clip: the note says
    # what to do (and the import changes nothing in the 3D scene).
    (note,) = result.notes
    assert edit.name in note and "Transparent" in note

    # The user turns on a transparent film: F12 in the 3D scene renders the cube only, the plates scene
    # renders the cube over the clip.
    scene.render.film_transparent = True
    (note,) = zb.importers.place_strip(scene, frames, None, job, job_dir, START + 50).notes
    assert edit.name in note and "Transparent" not in note
    own = render(bpy, scene, START + 1, str(tmp_path / "3d.png"))
    h, w = own.shape[:2]
    assert own[h // 2, w // 2, 2] > 200 and own[h // 2, w // 2, 0] < 30  # the blue cube
    assert own[h // 2, 0, 3] == 0  # transparent beside the cube: no clip in the 3D scene's own render
    composite = render(bpy, edit, START + 1, str(tmp_path / "plates.png"))
    assert composite[h // 2, w // 2, 2] > 200 and composite[h // 2, w // 2, 0] < 30  # the cube on top
    # The 32×16 clip is fitted into the 32×24 frame (bars above and below): beside the cube it is red.
    assert composite[h // 2, 0, 0] > 200 and composite[h // 2, 0, 2] < 30  # the red clip behind the cube


def test_second_import_reuses_the_plates_scene_on_a_free_channel(zb, clip):
    import bpy

    job, job_dir, frames = clip
    scene = bpy.context.scene
    first = zb.importers.import_strip(scene, frames, None, job, job_dir, START)
    scenes = len(bpy.data.scenes)
    second = zb.importers.import_strip(scene, frames, None, job, job_dir, START + 1)  # overlaps the first
    edit = bpy.data.scenes[f"{scene.name} · plates"]
    assert len(bpy.data.scenes) == scenes and first.id_data == second.id_data == edit
    scene_strips = [s for s in strips_of(zb, edit) if s.type == "SCENE"]
    assert len(scene_strips) == 1
    assert first.channel == 1 and second.channel == 2 and scene_strips[0].channel == 3
    assert second.frame_final_start == START + 1
    # The 3D scene got longer: its scene strip follows, still above the plates, still one.
    scene.frame_end = 400
    zb.importers.import_strip(scene, frames, None, job, job_dir, START + 2)
    (scene_strip,) = [s for s in strips_of(zb, edit) if s.type == "SCENE"]
    assert (scene_strip.frame_final_end, edit.frame_end) == (401, 400) and scene_strip.channel == 4
    # Renamed scenes keep their pairing.
    scene.name = "Shot 010"
    third = zb.importers.import_strip(scene, frames, None, job, job_dir, START + 500)
    assert third.id_data == edit and len(bpy.data.scenes) == scenes
    # Regenerating from a plate hands over the plates scene: it stands for its 3D scene (no plates² scene).
    assert zb.plates.owner_scene(edit) == scene and zb.plates.owner_scene(scene) == scene
    fourth = zb.importers.import_strip(edit, frames, None, job, job_dir, START, replace=third.name)
    assert fourth.id_data == edit and len(bpy.data.scenes) == scenes and fourth.frame_final_start == START + 500


def test_this_scene_placement_keeps_the_old_behaviour(zb, clip):
    import bpy

    job, job_dir, frames = clip
    scene = bpy.context.scene
    scene.zss.strip_placement = "SCENE"
    scenes = len(bpy.data.scenes)
    result = zb.importers.place_strip(scene, frames, None, job, job_dir, START)
    assert result.scene == scene and strips_of(zb, scene) == [result.strip] and result.notes == ()
    assert len(bpy.data.scenes) == scenes
    assert zb.plates.F12_WARNING  # what the panel shows for this placement
