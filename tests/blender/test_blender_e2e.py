"""End to end with the real generator process (tiny random-weight models, CPU).

zss.generate must return at once; jobs.poll() (called here in a loop, because timers never fire in
background mode) follows the job and imports the result. The worker stays warm across these tests.
"""

import importlib.util
import os
import pathlib
import signal
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.blender,
    pytest.mark.slow,
    pytest.mark.skipif(not (REPO / "zss_core" / "worker.py").exists(), reason="zss_core/worker.py not written yet"),
    pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="the generator needs torch in this Python"),
]

POLL_TIMEOUT = 240.0  # a cold worker imports torch + diffusers first


def poll_until_idle(jobs, timeout=POLL_TIMEOUT, until=None):
    """Call jobs.poll() like the timer would; returns the longest single call in seconds."""
    deadline = time.monotonic() + timeout
    longest = 0.0
    while True:
        started = time.perf_counter()
        delay = jobs.poll()
        longest = max(longest, time.perf_counter() - started)
        if delay is None or (until is not None and until()):
            return longest
        assert time.monotonic() < deadline, f"job did not finish: {jobs.state}\n{jobs.client().stderr_tail()}"
        time.sleep(0.02)


@pytest.fixture
def clip_settings(zb, prefs):
    import bpy

    scene = bpy.context.scene
    settings = scene.zss
    settings.prompt = "a red brick wall"
    settings.frames = 8
    settings.width = settings.height = 64
    settings.steps = 2
    settings.seed = 7
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj.name == "Cube")
    return settings


def imported(bpy):
    materials = [m for m in bpy.data.materials if "zss_job_id" in m]
    editor = bpy.context.scene.sequence_editor
    strips = [s for s in (editor.strips_all if editor else []) if "zss_job_id" in s]
    return materials, strips


def test_generate_with_depth_imports_material_and_strip(zb, clip_settings, prefs):
    import bpy

    clip_settings.use_depth = True
    clip_settings.target = 'BOTH'
    started = time.perf_counter()
    assert bpy.ops.zss.generate() == {'FINISHED'}
    returned = time.perf_counter() - started
    assert returned < 5.0  # depth for 8 frames + sending; never waits for the model
    job = zb.jobs.running_job().job
    assert job["control"]["images"] and all(os.path.isfile(p) for p in job["control"]["images"])

    longest = poll_until_idle(zb.jobs)
    assert zb.jobs.state.error == "", (zb.jobs.state.error, zb.jobs.state.hint)
    assert zb.jobs.state.status.startswith("Done") and zb.jobs.state.fraction == 1.0
    assert longest < 1.0  # poll never blocks (the import on done included)

    (material,), (strip,) = imported(bpy)
    cube = bpy.data.objects["Cube"]
    assert cube.active_material == material
    node = next(n for n in material.node_tree.nodes if n.type == 'TEX_IMAGE')
    assert node.image.source == 'SEQUENCE' and node.image_user.frame_duration == 8
    assert len(strip.elements) == 8 and strip.frame_final_duration == 8
    job_dir = os.path.join(prefs.output_dir, job["id"])
    assert material["zss_job_dir"] == job_dir and material["zss_seed"] == 7
    assert len(os.listdir(os.path.join(job_dir, "control"))) == 8
    assert not os.path.exists(os.path.join(prefs.output_dir, ".staging", job["id"]))  # staging removed

    # The MP4 imports as a movie strip of the same length.
    movie = zb.importers.import_strip(bpy.context.scene, [], os.path.join(job_dir, "clip.mp4"), job, job_dir, 1,
                                      use_movie=True)
    assert movie.type == 'MOVIE' and movie.frame_final_duration == 8 and movie.channel != strip.channel

    # Vary seed: same settings, a new seed, read back from the selected object's material.
    bpy.context.view_layer.objects.active = cube
    assert bpy.ops.zss.vary_seed() == {'FINISHED'}
    poll_until_idle(zb.jobs)
    assert zb.jobs.state.error == ""
    materials, _strips = imported(bpy)
    assert len(materials) == 2
    assert cube.active_material["zss_seed"] != 7 and cube.active_material["zss_prompt"] == "a red brick wall"


def test_check_generator_reports_ready(zb, prefs):
    import bpy

    assert bpy.ops.zss.check_generator() == {'FINISHED'}
    assert zb.jobs.state.status.startswith("Generator ready on cpu")
    assert zb.jobs.state.ready.versions.get("torch")


def wait_for_denoising(jobs):
    poll_until_idle(jobs, until=lambda: jobs.state.fraction > 0 and jobs.state.status.startswith("Denoising"))
    assert jobs.is_running(), f"the job ended before it could be interrupted: {jobs.state}"


def test_cancel_imports_nothing_and_next_generate_works(zb, clip_settings):
    import bpy

    clip_settings.steps = 200  # long enough to be interrupted
    assert bpy.ops.zss.generate() == {'FINISHED'}
    wait_for_denoising(zb.jobs)
    assert bpy.ops.zss.cancel() == {'FINISHED'}
    poll_until_idle(zb.jobs, timeout=60)
    assert zb.jobs.state.status.startswith("Cancelled") and zb.jobs.state.error == ""
    assert imported(bpy) == ([], [])

    clip_settings.steps = 2
    assert bpy.ops.zss.generate() == {'FINISHED'}
    poll_until_idle(zb.jobs)
    assert zb.jobs.state.error == ""
    assert len(imported(bpy)[0]) == 1


def test_killed_worker_reports_error_and_restarts(zb, clip_settings):
    import bpy

    clip_settings.steps = 200
    assert bpy.ops.zss.generate() == {'FINISHED'}
    wait_for_denoising(zb.jobs)
    old_pid = zb.jobs.client().process.pid
    os.kill(old_pid, signal.SIGKILL if sys.platform != "win32" else signal.SIGTERM)
    poll_until_idle(zb.jobs, timeout=60)
    assert "stopped unexpectedly" in zb.jobs.state.error
    assert zb.jobs.state.hint  # what to do, and the worker's last log lines
    assert imported(bpy) == ([], [])

    clip_settings.steps = 2
    assert bpy.ops.zss.generate() == {'FINISHED'}
    assert zb.jobs.client().process.pid != old_pid  # restarted on demand
    poll_until_idle(zb.jobs)
    assert zb.jobs.state.error == ""
    assert len(imported(bpy)[0]) == 1


def test_loop_tile_and_prompt_travel_end_to_end(zb, clip_settings, prefs):
    """The worker accepts what the panel builds: a looped, tileable clip travelling between prompts."""
    import json

    import bpy

    scene = bpy.context.scene
    clip_settings.frame_start = 1
    clip_settings.loop = True
    clip_settings.tile = 'XY'
    scene.frame_current = 5
    assert bpy.ops.zss.prompt_key_add() == {'FINISHED'}
    clip_settings.prompt_keys[0].prompt = "a mossy stone wall"
    assert bpy.ops.zss.generate() == {'FINISHED'}
    job_id = zb.jobs.running_job().job["id"]
    poll_until_idle(zb.jobs)
    assert zb.jobs.state.error == "", (zb.jobs.state.error, zb.jobs.state.hint)
    (material,), _strips = imported(bpy)
    assert material.node_tree.nodes["ZS² Clip"].extension == 'REPEAT' and "ZS² Tiling" in material.node_tree.nodes
    manifest = json.loads(open(os.path.join(prefs.output_dir, job_id, "job.json"), encoding="utf-8").read())
    text = json.dumps(manifest)
    assert '"loop": true' in text and '"tile_x": true' in text and "a mossy stone wall" in text
    assert zb.preferences.recent_models(prefs)[0] == "tiny"


def test_download_offline_fails_fast_with_a_hint(zb, prefs):
    """Online access is off in these tests, so the worker runs with HF_HUB_OFFLINE=1: a model that is
    not cached fails at once instead of trying the network."""
    assert zb.jobs.worker_env()["HF_HUB_OFFLINE"] == "1"
    zb.jobs.start_download(prefs.python_path, "nobody-zss/not-a-model", "download-test-1")
    started = time.monotonic()
    poll_until_idle(zb.jobs, timeout=120)
    assert zb.jobs.state.download_error.startswith("Could not download 'nobody-zss/not-a-model'")
    assert "online access" in zb.jobs.state.download_hint
    assert time.monotonic() - started < 60
