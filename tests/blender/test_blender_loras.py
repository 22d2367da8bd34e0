"""The panel's LoRA list (issue 15): rows become the job's loras with absolute paths (// resolved), a file
that is not .safetensors is refused with a clear message, and Regenerate restores the list."""

import json

import pytest

pytestmark = pytest.mark.blender


@pytest.fixture
def ready(zb, prefs):
    import bpy

    scene = bpy.context.scene
    scene.zss.prompt = "a red brick wall"
    scene.zss.frames = 4
    scene.zss.width = scene.zss.height = 64
    assert zb.operators.validation_problems(bpy.context) == []
    return scene


def test_lora_list_reaches_the_plan_with_absolute_paths(zb, ready, prefs, tmp_path):
    import bpy

    (tmp_path / "loras").mkdir()
    style = tmp_path / "loras" / "style.safetensors"
    style.write_bytes(b"\0" * 16)  # the add-on checks the name and existence; the generator reads it
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"\0" * 16)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    scene = bpy.context.scene

    assert "loras" not in zb.jobspec.plan(bpy.context, prefs).job  # no rows: no LoRAs
    assert bpy.ops.zss.lora_add(filepath="//loras/style.safetensors") == {"FINISHED"}
    assert bpy.ops.zss.lora_add(filepath=str(other)) == {"FINISHED"}
    scene.zss.loras[1].weight = 0.4
    plan = zb.jobspec.plan(bpy.context, prefs)
    assert plan.job["loras"] == [
        {"path": str(style), "weight": 1.0},
        {"path": str(other), "weight": pytest.approx(0.4)},
    ]
    assert zb.operators.validation_problems(bpy.context) == []
    assert zb.operators.checks.protocol.validate_job(plan.job) == []

    scene.zss.lora_index = 0
    assert bpy.ops.zss.lora_remove() == {"FINISHED"}
    assert [row.filepath for row in scene.zss.loras] == [str(other)]

    # Regenerate restores the clip's LoRAs from its stored job.
    scene.zss.loras.clear()
    holder = bpy.data.materials.new("clip")
    holder["zss_job"] = json.dumps({**plan.job, "control_scale": None})
    zb.operators.apply_stored(scene, holder)
    assert [(row.filepath, round(row.weight, 3)) for row in scene.zss.loras] == [(str(style), 1.0), (str(other), 0.4)]


def test_a_file_that_is_not_safetensors_or_missing_is_refused_clearly(zb, ready, tmp_path):
    import bpy

    pickle = tmp_path / "style.ckpt"
    pickle.write_bytes(b"\x80\x04")
    with pytest.raises(RuntimeError) as refused:  # background mode turns ERROR reports into RuntimeError
        bpy.ops.zss.lora_add(filepath=str(pickle))
    assert "style.ckpt is not a .safetensors file — LoRAs load from .safetensors only" in str(refused.value)
    assert len(ready.zss.loras) == 0

    row = ready.zss.loras.add()  # typed into the row's own field instead
    row.filepath = str(pickle)
    missing = ready.zss.loras.add()
    missing.filepath = str(tmp_path / "gone.safetensors")
    ready.zss.loras.add()
    problems = zb.operators.validation_problems(bpy.context)
    assert [field for field, _ in problems] == ["loras", "loras", "loras"]
    assert "LoRA 1: style.ckpt is not a .safetensors file — LoRAs load from .safetensors only" in problems[0][1]
    assert f"LoRA 2: {tmp_path / 'gone.safetensors'} does not exist — " in problems[1][1]
    assert problems[2][1].startswith("LoRA 3 has no file — ")
    with pytest.raises(RuntimeError, match=r"not a \.safetensors file"):
        bpy.ops.zss.generate()


def test_with_a_server_the_rows_are_lora_names(zb, ready, prefs):
    import bpy

    prefs.generator, prefs.server_url = "SERVER", "https://gpu-box:7860"
    try:
        row = ready.zss.loras.add()
        row.filepath, row.weight = "watercolor", 0.5  # a name from the server's [loras.NAME], not a file here
        plan = zb.jobspec.plan(bpy.context, prefs)
        assert plan.job["loras"] == [{"path": "watercolor", "weight": 0.5}]
        assert [field for field, _ in zb.operators.validation_problems(bpy.context)] == []
    finally:
        prefs.generator, prefs.server_url = "LOCAL", ""


def test_hub_ids_pass_and_the_draft_lora_is_listed_once(zb, ready, prefs, tmp_path):
    """A row may hold a hub id (the generator fetches it); Regenerate of a draft clip leaves the draft LoRA
    as a row, and the next Generate with the Draft preset still lists it once."""
    import bpy

    style = tmp_path / "style.safetensors"
    style.write_bytes(b"\0" * 16)
    hub = "latent-consistency/lcm-lora-sdv1-5"
    for path, weight in ((str(style), 0.7), (hub, 1.0)):
        row = ready.zss.loras.add()
        row.filepath, row.weight = path, weight
    assert zb.operators.validation_problems(bpy.context) == []
    assert zb.jobspec.plan(bpy.context, prefs).job["loras"] == [
        {"path": str(style), "weight": pytest.approx(0.7)},
        {"path": hub, "weight": 1.0},
    ]
    prefs.draft_lora = hub
    try:
        ready.zss.preset = "DRAFT"
        loras = zb.jobspec.plan(bpy.context, prefs).job["loras"]
        assert [x["path"] for x in loras] == [str(style), hub]  # the preset's own, not the row's copy too
        stored = zb.jobspec.plan(bpy.context, prefs).job
        overrides = zb.operators.apply_stored(ready, {"zss_job": json.dumps(stored)})
        assert [row.filepath for row in ready.zss.loras] == [str(style)]  # the draft LoRA stays the preset's
        assert overrides["loras"] == stored["loras"]  # the regenerated clip gets both, as it had
    finally:
        prefs.draft_lora = ""
