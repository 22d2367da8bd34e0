"""The panel's Preset (Scene.zss.preset) is expanded into the job when the plan is built (real bpy)."""

import json

import pytest
from test_blender_panels import draw, draw_preferences

pytestmark = pytest.mark.blender

LCM_LORA = "latent-consistency/lcm-lora-sdv1-5"


def plan_job(zb, prefs):
    import bpy

    return zb.jobspec.plan(bpy.context, prefs, job_id="job-1").job


def test_no_preset_keeps_the_panels_steps_and_guidance(zb, prefs):
    import bpy

    settings = bpy.context.scene.zss
    settings.prompt = "waves"
    settings.steps, settings.guidance = 25, 6.0
    assert settings.preset == "NONE"
    prefs.draft_lora = LCM_LORA  # only the Draft preset applies it
    job = plan_job(zb, prefs)
    assert (job["steps"], job["guidance"]) == (25, 6.0)
    assert "loras" not in job and job.get("scheduler", "ddim") == "ddim"


def test_the_draft_preset_expands_into_steps_scheduler_guidance_and_the_draft_lora(zb, prefs, tmp_path):
    import bpy

    protocol = zb.operators.checks.protocol  # the add-on's own copy of the protocol
    settings = bpy.context.scene.zss
    settings.prompt = "waves"
    settings.preset = "DRAFT"
    prefs.draft_lora = LCM_LORA
    job = plan_job(zb, prefs)
    assert (job["steps"], job["guidance"], job["scheduler"]) == (6, 1.0, "lcm")
    assert job["loras"] == [{"path": LCM_LORA, "weight": 1.0}]
    assert protocol.validate_job(job) == []

    lora_file = tmp_path / "lcm-lora.safetensors"
    lora_file.write_bytes(b"")
    prefs.draft_lora = str(lora_file)
    assert plan_job(zb, prefs)["loras"] == [{"path": str(lora_file), "weight": 1.0}]

    prefs.draft_lora = ""  # an LCM model needs no LoRA
    job = plan_job(zb, prefs)
    assert job["scheduler"] == "lcm" and "loras" not in job


def test_the_turbo_preset_runs_one_step_without_guidance_and_no_lora(zb, prefs):
    import bpy

    settings = bpy.context.scene.zss
    settings.prompt = "waves"
    settings.preset = "TURBO"
    prefs.draft_lora = LCM_LORA
    job = plan_job(zb, prefs)
    assert (job["steps"], job["guidance"], job["scheduler"]) == (1, 0.0, "euler-trailing")
    assert "loras" not in job


def test_the_panel_shows_the_preset_and_what_it_replaces(zb, prefs):
    import bpy

    settings = bpy.context.scene.zss
    log = draw(zb)
    assert ("prop", "preset") in log and ("prop", "steps") in log
    assert not any(kind == "label" and text.startswith("Draft:") for kind, text, *_ in log)
    settings.preset = "DRAFT"
    prefs.draft_lora = ""
    labels = [text for kind, text, *_ in draw(zb) if kind == "label"]
    assert "Draft: 6 steps, lcm, guidance 1 + draft LoRA" in labels
    assert any("No Draft LoRA" in text for text in labels)
    prefs.draft_lora = LCM_LORA
    assert not any("No Draft LoRA" in text for kind, text, *_ in draw(zb) if kind == "label")
    assert ("prop", "draft_lora") in draw_preferences(zb, prefs)


def test_regenerating_a_draft_clip_pins_its_scheduler_and_lora(zb, prefs):
    import bpy

    scene = bpy.context.scene
    settings = scene.zss
    settings.prompt = "waves"
    settings.preset = "DRAFT"
    prefs.draft_lora = LCM_LORA
    stored = plan_job(zb, prefs)
    source = {"zss_job": json.dumps(stored)}
    settings.preset = "NONE"
    prefs.draft_lora = "another/lcm-lora"  # the clip keeps the LoRA it was made with
    overrides = zb.operators.apply_stored(scene, source)
    assert settings.preset == "DRAFT" and (settings.steps, settings.guidance) == (6, 1.0)
    job = zb.jobspec.plan(bpy.context, prefs, overrides=overrides, job_id="job-2").job
    assert (job["steps"], job["guidance"], job["scheduler"]) == (6, 1.0, "lcm")
    assert job["loras"] == stored["loras"] == [{"path": LCM_LORA, "weight": 1.0}]

    # a clip made without a preset, with a scheduler the panel does not offer, is regenerated with it
    settings.preset = "NONE"
    stored = {**plan_job(zb, prefs), "scheduler": "euler", "steps": 12}
    overrides = zb.operators.apply_stored(scene, {"zss_job": json.dumps(stored)})
    assert settings.preset == "NONE"
    job = zb.jobspec.plan(bpy.context, prefs, overrides=overrides, job_id="job-3").job
    assert (job["steps"], job["scheduler"]) == (12, "euler") and "loras" not in job
