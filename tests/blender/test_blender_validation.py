"""Generate refuses bad settings: every problem is an ERROR report, nothing is rendered or sent."""

import os
import stat

import pytest

pytestmark = pytest.mark.blender


@pytest.fixture
def ready(zb, prefs):
    """Settings that pass validation; each test breaks one thing."""
    import bpy

    scene = bpy.context.scene
    scene.zss.prompt = "a red brick wall"
    scene.zss.frames = 8
    scene.zss.width = scene.zss.height = 64
    assert zb.operators.validation_problems(bpy.context) == []
    return scene


def refused(zb, expected):
    """bpy.ops.zss.generate raises (background mode turns ERROR reports into RuntimeError)."""
    import bpy

    worker = zb.jobs.client()  # None, or a warm worker left by an earlier test
    with pytest.raises(RuntimeError) as info:
        bpy.ops.zss.generate()
    assert expected in str(info.value), str(info.value)
    assert " — " in str(info.value)  # what is wrong — what to do
    # Nothing was started or sent.
    assert zb.jobs.client() is worker and zb.jobs.running_job() is None
    assert worker is None or worker.pending == []
    assert not os.path.exists(os.path.join(zb.preferences.get().output_dir, ".staging"))
    return str(info.value)


def test_empty_prompt(zb, ready):
    ready.zss.prompt = "   "
    refused(zb, "The prompt is empty")


def test_depth_without_camera(zb, ready):
    import bpy

    ready.zss.use_depth = True
    bpy.data.objects.remove(bpy.data.objects["Camera"])
    refused(zb, "no active camera")


def test_missing_controlnet_for_a_model_without_a_builtin_one(zb, ready, prefs):
    prefs.model = "someone/some-sd15-model"
    prefs.controlnet_model = ""
    ready.zss.use_depth = True
    refused(zb, "needs a depth ControlNet")


def test_no_model_configured_means_the_builtin_texture_model(zb, ready, prefs):
    import bpy

    prefs.model = ""
    prefs.controlnet_model = ""
    ready.zss.use_depth = True
    job = zb.jobspec.build(bpy.context.scene, prefs, "j", zb.jobspec.output_root(prefs))
    assert job["model"] == "builtin:textures" and job["controlnet_model"] == "builtin:textures-depth"
    assert "model" not in [field for field, _ in zb.operators.validation_problems(bpy.context)]


def test_generator_python_missing_or_not_executable(zb, ready, prefs, tmp_path):
    prefs.python_path = ""
    refused(zb, "No generator Python is set")
    prefs.python_path = str(tmp_path / "nope" / "python")
    refused(zb, "does not exist")
    script = tmp_path / "python"
    script.write_text("not a program")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    prefs.python_path = str(script)
    refused(zb, "is not executable")


def test_unsaved_file_without_output_folder(zb, ready, prefs):
    prefs.output_dir = ""
    refused(zb, "not saved and no output folder")


def test_frames_out_of_range(zb, ready):
    ready.zss.frames = 0  # follow the scene range …
    ready.frame_start, ready.frame_end = 1, 2000  # … which is too long
    refused(zb, "2000 frames")


def test_size_not_multiple_of_eight(zb, ready):
    ready.zss.width = 100
    refused(zb, "Width 100 is not a multiple of 8")


def test_a_running_job_is_no_reason_to_refuse(zb, ready, monkeypatch):
    """Issue 13: Generate while a job runs queues the new job (test_blender_queue runs a real queue)."""
    import bpy

    monkeypatch.setattr(zb.jobs, "is_running", lambda: True)
    assert zb.operators.validation_problems(bpy.context) == []


def test_every_problem_is_reported_at_once(zb, ready, prefs):
    import bpy

    ready.zss.prompt = ""
    prefs.python_path = ""
    prefs.output_dir = ""
    fields = [field for field, _message in zb.operators.validation_problems(bpy.context)]
    assert fields == ["prompt", "python", "output_dir"]  # no duplicates from protocol.validate_job


def test_protocol_problems_are_reported(zb, ready):
    import bpy

    # Something only protocol.validate_job knows about: a guidance out of the protocol's range.
    problems = zb.operators.validation_problems(bpy.context, overrides={"guidance": 99.0})
    assert [field for field, _ in problems] == ["guidance"]
    assert "guidance must be a number from 0 to 50" in problems[0][1]
