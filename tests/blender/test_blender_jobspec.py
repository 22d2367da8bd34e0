"""Building the job: keyframed λ/μ become per-frame lists, 'auto' frames and size resolve."""

import os

import pytest

pytestmark = pytest.mark.blender


def build(zb, prefs, **overrides):
    import bpy

    scene = bpy.context.scene
    root = zb.jobspec.output_root(prefs)
    return zb.jobspec.build(scene, prefs, "job-1", root, overrides=overrides or None)


def test_keyframed_lambda_and_mu_become_per_frame_lists(zb, prefs):
    import bpy

    from_core = zb.operators.checks.protocol  # the same protocol module the add-on uses
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 11, 15
    settings = scene.zss
    settings.prompt = "waves"
    for frame, lam, mu in ((11, 0.0, 0.9), (15, 0.4, 0.5)):
        settings.lam, settings.mu = lam, mu
        settings.keyframe_insert("lam", frame=frame)
        settings.keyframe_insert("mu", frame=frame)
    fcurve = zb.animation.find_fcurve(scene, "zss.lam")
    for point in fcurve.keyframe_points:
        point.interpolation = 'LINEAR'
    for point in zb.animation.find_fcurve(scene, "zss.mu").keyframe_points:
        point.interpolation = 'LINEAR'

    job = build(zb, prefs)
    assert job["frames"] == 5
    assert job["lam"] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert job["mu"] == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5])
    assert from_core.validate_job(job) == []
    assert from_core.Job.from_dict(job).lam_per_frame() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])

    # An explicit range reads the curves over that range (extrapolated flat outside the keys).
    settings.frames, settings.frame_start = 3, 14
    job = build(zb, prefs)
    assert job["lam"] == pytest.approx([0.3, 0.4, 0.4])


def test_constant_keys_collapse_to_a_float_and_overshoot_is_clamped(zb, prefs):
    import bpy

    settings = bpy.context.scene.zss
    bpy.context.scene.frame_start, bpy.context.scene.frame_end = 1, 4
    settings.prompt = "waves"
    settings.lam = 0.05
    settings.keyframe_insert("lam", frame=1)
    settings.keyframe_insert("lam", frame=4)
    settings.mu = 1.0
    settings.keyframe_insert("mu", frame=1)
    settings.mu = 0.0
    settings.keyframe_insert("mu", frame=2)
    settings.mu = 1.0
    settings.keyframe_insert("mu", frame=3)  # Bézier overshoots above 1 around here
    job = build(zb, prefs)
    assert job["lam"] == pytest.approx(0.05) and isinstance(job["lam"], float)
    assert all(0.0 <= v <= 1.0 for v in job["mu"])


def test_auto_frames_size_and_fields(zb, prefs):
    import bpy

    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 24
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 1920, 1080, 100
    scene.render.fps, scene.render.fps_base = 25, 1.0
    settings = scene.zss
    settings.prompt = "a forest"
    settings.noise = "PROGRESSIVE"
    settings.chunk = 4
    prefs.device, prefs.precision = "CUDA", "FLOAT16"
    job = build(zb, prefs)
    assert (job["frames"], job["width"], job["height"]) == (24, 768, 432)
    assert (job["noise"], job["chunk"], job["device"], job["dtype"], job["fps"]) == ("progressive", 4, "cuda",
                                                                                    "float16", 25.0)
    assert job["output_dir"] == os.path.abspath(prefs.output_dir)
    assert "control" not in job and "controlnet_model" not in job

    settings.width = 512  # height follows the aspect, snapped to a multiple of 8
    assert (build(zb, prefs)["width"], build(zb, prefs)["height"]) == (512, 288)
    settings.chunk = 0
    settings.use_depth = True
    job = build(zb, prefs)
    assert job["chunk"] is None and job["controlnet_model"] == "tiny" and "control" not in job


def test_output_root_and_job_ids(zb, prefs, tmp_path):
    import bpy

    assert zb.jobspec.output_root(prefs) == os.path.abspath(prefs.output_dir)
    prefs.output_dir = ""
    assert zb.jobspec.output_root(prefs) == ""
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    assert zb.jobspec.output_root(prefs) == str(tmp_path / "zss")
    ids = {zb.jobspec.new_job_id(str(tmp_path)) for _ in range(20)}
    assert len(ids) == 20
    assert all(zb.operators.checks.protocol.JOB_ID_PATTERN.fullmatch(i) for i in ids)
