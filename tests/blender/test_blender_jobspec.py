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
        point.interpolation = "LINEAR"
    for point in zb.animation.find_fcurve(scene, "zss.mu").keyframe_points:
        point.interpolation = "LINEAR"

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
    assert (job["noise"], job["chunk"], job["device"], job["dtype"], job["fps"]) == (
        "progressive",
        4,
        "cuda",
        "float16",
        25.0,
    )
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


def test_plan_reads_the_scene_once_and_is_immutable(zb, prefs):
    import dataclasses

    import bpy

    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 3, 6
    settings = scene.zss
    settings.prompt, settings.width, settings.height = "bark", 64, 64
    settings.use_depth, settings.control_scale, settings.target = True, 0.7, "BOTH"
    plan = zb.jobspec.plan(bpy.context, prefs, ["Cube"])
    assert plan.job["frames"] == 4 and "control" not in plan.job
    assert (plan.depth.frame_start, plan.depth.count, plan.depth.width, plan.depth.height) == (3, 4, 64, 64)
    assert plan.depth.folder == os.path.join(prefs.output_dir, ".staging", plan.id)
    targets = plan.targets
    assert (targets.scene_name, targets.object_names, targets.target, targets.frame_start) == (
        scene.name,
        ("Cube",),
        "BOTH",
        3,
    )
    assert targets.camera_name == "Camera" and targets.replace == zb.jobspec.Replace()
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.job = {}

    # Depth images make a new plan; the scene is not read again (a change after planning does not leak in).
    settings.control_scale = 3.0
    with_maps = plan.with_control(["/d/1.png", "/d/2.png", "/d/3.png", "/d/4.png"])
    assert with_maps.job["control"] == {
        "type": "depth",
        "images": ["/d/1.png", "/d/2.png", "/d/3.png", "/d/4.png"],
        "scale": pytest.approx(0.7),
    }
    assert "control" not in plan.job and with_maps.targets is plan.targets and with_maps.id == plan.id


def test_staging_folder_is_removed_on_every_path_but_a_handed_over_one(zb, prefs):
    import bpy

    bpy.context.scene.zss.use_depth = True
    plan = zb.jobspec.plan(bpy.context, prefs)
    with pytest.raises(ValueError), zb.staging.folder(plan) as folder:
        assert os.path.isdir(folder.path)
        raise ValueError("a depth render failed")
    assert not os.path.exists(folder.path) and not os.path.exists(os.path.dirname(folder.path))
    with zb.staging.folder(plan) as folder:
        folder.hand_over()  # the job owns it now
    assert os.path.isdir(folder.path)
    folder.remove()  # the job's task ended
    assert not os.path.exists(os.path.dirname(folder.path))


def test_background_removals_share_one_thread(zb, prefs, tmp_path):
    """Finished jobs' staging folders go to one long-lived cleanup thread, never a new thread per job."""
    import threading

    folders = []
    for index in range(3):
        path = tmp_path / ".staging" / f"job-{index}"
        path.mkdir(parents=True)
        (path / "depth_0001.png").write_bytes(b"x" * 1024)
        folders.append(zb.staging.Folder(str(path)))
    for folder in folders:
        folder.remove_in_background()
    assert zb.staging.wait_idle(timeout=10.0)
    assert not (tmp_path / ".staging").exists()
    assert [t.name for t in threading.enumerate()].count("zss-staging") == 1


def test_relative_output_folder_resolves_against_the_saved_blend(zb, prefs, tmp_path):
    """Bug 7: //clips was rejected silently; now it is the .blend's clips folder, or a clear message."""
    import bpy

    prefs.output_dir = "//clips"
    assert zb.jobspec.output_root(prefs) == ""
    problems = dict(zb.operators.validation_problems(bpy.context))
    assert "Output Folder //clips is relative to the .blend file, which is not saved" in problems["output_dir"]
    assert "Save the .blend first or use an absolute folder" in problems["output_dir"]
    bpy.context.scene.zss.prompt = "ivy"
    with pytest.raises(RuntimeError, match=r"Save the .blend first or use an absolute folder"):
        bpy.ops.zss.generate()

    (tmp_path / "shots").mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shots" / "shot.blend"))
    assert zb.jobspec.output_root(prefs) == str(tmp_path / "shots" / "clips")
    assert "output_dir" not in dict(zb.operators.validation_problems(bpy.context))
    plan = zb.jobspec.plan(bpy.context, prefs)
    assert plan.job_dir == str(tmp_path / "shots" / "clips" / plan.id)
    prefs.output_dir = str(tmp_path / "elsewhere")  # an absolute folder is for unsaved files only
    assert zb.jobspec.output_root(prefs) == str(tmp_path / "shots" / "zss")
