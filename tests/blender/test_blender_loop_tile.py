"""Seamless loops, tileable textures and prompt travel: the schedule rows become the job's prompts,
bad rows are refused, tiled clips import with a repeating texture and a "ZS² Tiling" Mapping node,
and Regenerate reuses all of it."""

import json
import os

import pytest
from PIL import Image

pytestmark = pytest.mark.blender


@pytest.fixture
def scene(zb, prefs):
    """A clip of 8 frames starting at scene frame 10, valid as it is."""
    import bpy

    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 10, 17
    settings = scene.zss
    settings.prompt = "a calm sea"
    settings.width = settings.height = 64
    assert zb.operators.validation_problems(bpy.context) == []
    return scene


def add_key(bpy, scene, frame, prompt):
    scene.frame_current = frame
    assert bpy.ops.zss.prompt_key_add() == {"FINISHED"}
    key = scene.zss.prompt_keys[scene.zss.prompt_key_index]
    assert key.frame == frame and key.prompt == scene.zss.prompt  # starts from the main prompt
    key.prompt = prompt
    return key


def test_schedule_rows_loop_and_tile_reach_the_job(zb, prefs, scene):
    import bpy

    settings = scene.zss
    assert zb.jobspec.build(scene, prefs, "j", "/tmp")["prompts"] is None  # the simple case stays simple
    add_key(bpy, scene, 17, "a stormy sea")
    add_key(bpy, scene, 13, "rain on the sea")
    settings.loop = True
    settings.tile = "XY"
    settings.prompt_interpolation = "SLERP"
    job = zb.jobspec.build(scene, prefs, "j", zb.jobspec.output_root(prefs))
    assert job["prompts"] == [{"frame": 3, "prompt": "rain on the sea"}, {"frame": 7, "prompt": "a stormy sea"}]
    assert (job["loop"], job["tile_x"], job["tile_y"], job["prompt_interpolation"]) == (True, True, True, "slerp")
    assert job["prompt"] == "a calm sea"  # the frame-0 prompt
    assert zb.operators.checks.protocol.validate_job(job) == []
    core = zb.operators.checks.protocol.Job.from_dict(job)
    assert core.prompt_schedule() == [(0, "a calm sea"), (3, "rain on the sea"), (7, "a stormy sea")]

    for tile, expected in (("X", (True, False)), ("Y", (False, True)), ("NONE", (False, False))):
        settings.tile = tile
        job = zb.jobspec.build(scene, prefs, "j", "/tmp")
        assert (job["tile_x"], job["tile_y"]) == expected

    # An explicit range moves the clip: the rows keep their scene frames, the indices follow.
    settings.frames, settings.frame_start = 6, 12
    assert [k["frame"] for k in zb.jobspec.build(scene, prefs, "j", "/tmp")["prompts"]] == [1, 5]


def test_move_and_remove_rows(zb, prefs, scene):
    import bpy

    settings = scene.zss
    add_key(bpy, scene, 11, "one")
    add_key(bpy, scene, 12, "two")
    assert bpy.ops.zss.prompt_key_move(direction="UP") == {"FINISHED"}
    assert [k.prompt for k in settings.prompt_keys] == ["two", "one"] and settings.prompt_key_index == 0
    assert bpy.ops.zss.prompt_key_remove() == {"FINISHED"}
    assert [k.prompt for k in settings.prompt_keys] == ["one"] and settings.prompt_key_index == 0
    assert bpy.ops.zss.prompt_key_remove() == {"FINISHED"}
    assert len(settings.prompt_keys) == 0 and not bpy.ops.zss.prompt_key_remove.poll()


@pytest.fixture
def sent(zb, monkeypatch):
    """What Generate would send, instead of starting a worker."""
    jobs = []
    monkeypatch.setattr(zb.jobs, "ensure_client", lambda prefs: None)
    monkeypatch.setattr(zb.jobs, "submit", lambda plan, staging: jobs.append(plan.job))
    return jobs


def test_bad_rows_are_reported_and_nothing_is_sent(zb, prefs, scene, sent):
    import bpy

    add_key(bpy, scene, 30, "a sunset over the sea, long prompt text here")  # after the clip (10–17)
    add_key(bpy, scene, 12, "   ")
    add_key(bpy, scene, 15, "x")
    add_key(bpy, scene, 15, "y")
    with pytest.raises(RuntimeError) as info:
        bpy.ops.zss.generate()
    message = str(info.value)
    assert ("Prompt key 1 (frame 30, “a sunset over the sea, long p…”) is outside the clip (frames 10–17)") in message
    assert "Prompt key 2 (frame 12) has an empty prompt" in message
    assert "Prompt keys 3 and 4 are both at frame 15" in message
    assert "The job is invalid" not in message  # protocol duplicates of our own row messages are dropped
    assert message.count(" — ") >= 3
    assert sent == [] and zb.jobs.running_job() is None
    assert not os.path.exists(os.path.join(prefs.output_dir, ".staging"))

    # Fixed rows go through.
    scene.zss.prompt_keys.clear()
    add_key(bpy, scene, 10, "first frame overridden")
    assert bpy.ops.zss.generate() == {"FINISHED"}
    assert sent[0]["prompts"] == [{"frame": 0, "prompt": "first frame overridden"}]


def clip_on_disk(tmp_path, count=4):
    frames = []
    for i in range(count):
        path = tmp_path / "clip" / f"frame_{i + 1:04d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (32, 32), (i * 60, 0, 0)).save(path)
        frames.append(str(path))
    return frames


def travel_job(tmp_path, **fields):
    job = {
        "id": "20260101-000000-bbbbbb",
        "prompt": "moss",
        "frames": 4,
        "width": 64,
        "height": 64,
        "steps": 2,
        "guidance": 7.5,
        "seed": 5,
        "lam": 0.01,
        "mu": 0.98,
        "noise": "dependency",
        "model": "tiny",
        "chunk": "auto",
        "output_dir": str(tmp_path),
        "loop": True,
        "tile_x": True,
        "tile_y": True,
        "prompts": [{"frame": 2, "prompt": "lichen"}],
        "prompt_interpolation": "slerp",
    }
    job.update(fields)
    return job


def test_looped_tiled_clip_imports_repeating_with_a_mapping_node(zb, tmp_path):
    import bpy

    scene = bpy.context.scene
    job = travel_job(tmp_path)
    material, image, _objects = zb.importers.import_material(
        scene, scene.collection, clip_on_disk(tmp_path), job, str(tmp_path / "clip"), 1, ["Cube"]
    )
    nodes = material.node_tree.nodes
    texture = nodes["ZS² Clip"]
    assert texture.image_user.use_cyclic and texture.image_user.frame_duration == 4
    assert texture.extension == "REPEAT"
    mapping = nodes["ZS² Tiling"]
    assert mapping.type == "MAPPING" and mapping.label == "ZS² Tiling"
    assert tuple(mapping.inputs["Scale"].default_value) == (1.0, 1.0, 1.0)
    (into_texture,) = texture.inputs["Vector"].links
    assert into_texture.from_node == mapping
    (into_mapping,) = mapping.inputs["Vector"].links
    assert into_mapping.from_node.type == "TEX_COORD" and into_mapping.from_socket.name == "UV"
    for datablock in (material, image):
        assert datablock["zss_loop"] and datablock["zss_tile"] == "XY"
        assert json.loads(datablock["zss_prompts"]) == [{"frame": 2, "prompt": "lichen"}]

    # Not tiled: no mapping node, the texture node as before.
    plain = travel_job(tmp_path, id="20260101-000000-cccccc", tile_x=False, tile_y=False, loop=False, prompts=None)
    material, _image, _objects = zb.importers.import_material(
        scene, scene.collection, clip_on_disk(tmp_path), plain, str(tmp_path / "clip"), 1, ["Cube"]
    )
    assert "ZS² Tiling" not in material.node_tree.nodes
    assert not material.node_tree.nodes["ZS² Clip"].inputs["Vector"].links
    assert not material["zss_loop"] and material["zss_tile"] == "NONE" and material["zss_prompts"] == "[]"


def test_regenerate_reuses_loop_tile_and_schedule(zb, prefs, sent, tmp_path):
    import bpy

    scene = bpy.context.scene
    job = travel_job(tmp_path, tile_y=False)
    zb.importers.import_material(
        scene, scene.collection, clip_on_disk(tmp_path), job, str(tmp_path / "clip"), 20, ["Cube"]
    )
    bpy.context.view_layer.objects.active = bpy.data.objects["Cube"]
    assert bpy.ops.zss.regenerate() == {"FINISHED"}
    (new,) = sent
    assert (new["loop"], new["tile_x"], new["tile_y"]) == (True, True, False)
    assert new["prompts"] == [{"frame": 2, "prompt": "lichen"}] and new["prompt_interpolation"] == "slerp"
    assert new["chunk"] == "auto"
    settings = scene.zss
    assert [(k.frame, k.prompt) for k in settings.prompt_keys] == [(22, "lichen")]  # scene frames in the list
    assert settings.tile == "X" and settings.loop and settings.chunk == -1
