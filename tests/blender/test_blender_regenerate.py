"""Regenerate / vary seed read a clip's stored parameters back from its material or strip."""

import pytest

pytestmark = pytest.mark.blender

LAM = [0.0, 0.01, 0.02, 0.03]


@pytest.fixture
def sent(zb, prefs, monkeypatch, tmp_path):
    """Capture what Generate would send instead of starting a worker."""
    plans = []
    monkeypatch.setattr(zb.jobs, "ensure_client", lambda prefs: None)
    monkeypatch.setattr(zb.jobs, "submit", lambda plan, staging: plans.append(plan))
    return plans


def stored_job(tmp_path):
    return {
        "id": "20260101-000000-aaaaaa",
        "prompt": "stormy sea",
        "negative_prompt": "text",
        "frames": 4,
        "width": 96,
        "height": 64,
        "steps": 3,
        "guidance": 5.0,
        "seed": 1234,
        "lam": LAM,
        "mu": 0.9,
        "noise": "mixed",
        "model": "tiny",
        "chunk": 2,
        "cache_interval": 3,
        "output_dir": str(tmp_path),
    }


def frames_on_disk(tmp_path):
    from PIL import Image

    paths = []
    for i in range(4):
        path = tmp_path / "clip" / f"frame_{i + 1:04d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (96, 64), (i * 60, 0, 0)).save(path)
        paths.append(str(path))
    return paths


def test_regenerate_from_material_keeps_everything(zb, sent, tmp_path):
    import bpy

    scene = bpy.context.scene
    job = stored_job(tmp_path)
    zb.importers.import_material(
        scene, scene.collection, frames_on_disk(tmp_path), job, str(tmp_path / "clip"), 7, ["Cube"]
    )
    bpy.context.view_layer.objects.active = bpy.data.objects["Cube"]
    assert bpy.ops.zss.regenerate() == {"FINISHED"}
    (plan,) = sent
    new = plan.job
    for key in (
        "prompt",
        "negative_prompt",
        "frames",
        "width",
        "height",
        "steps",
        "guidance",
        "seed",
        "noise",
        "model",
        "chunk",
        "cache_interval",
    ):
        assert new[key] == job[key], key
    assert new["lam"] == pytest.approx(LAM) and new["mu"] == pytest.approx(0.9)
    assert new["id"] != job["id"] and plan.targets.frame_start == 7
    assert plan.targets.replace.material == bpy.data.objects["Cube"].active_material.name
    assert scene.zss.prompt == "stormy sea" and scene.zss.seed == 1234  # the panel shows what was reused


def test_vary_seed_from_strip_changes_only_the_seed(zb, sent, tmp_path):
    import bpy

    scene = bpy.context.scene
    job = stored_job(tmp_path)
    strip = zb.importers.import_strip(scene, frames_on_disk(tmp_path), None, job, str(tmp_path / "clip"), 3)
    scene.sequence_editor.active_strip = strip
    bpy.data.objects["Cube"].active_material = None
    assert bpy.ops.zss.vary_seed() == {"FINISHED"}
    (plan,) = sent
    new = plan.job
    assert plan.targets.replace.strip == strip.name
    assert new["seed"] != job["seed"] and new["prompt"] == job["prompt"] and new["lam"] == pytest.approx(LAM)


def test_regenerate_needs_a_clip(zb, sent):
    import bpy

    bpy.data.objects["Cube"].active_material = None
    assert not bpy.ops.zss.regenerate.poll()
