"""End to end with the real generator process (tiny random-weight models, CPU).

zss.generate must return at once; jobs.poll() (called here in a loop, because timers never fire in
background mode) follows the job and imports the result. The worker stays warm across these tests.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import GENERATOR_PYTHON


def _has_torch(python):
    """Whether the generator's Python can find torch (find_spec: without importing it)."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"
    try:
        return subprocess.run([python, "-c", probe], check=False, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [
    pytest.mark.blender,
    pytest.mark.slow,
    pytest.mark.skipif(
        not _has_torch(GENERATOR_PYTHON),
        reason=f"the generator Python {GENERATOR_PYTHON} has no torch (set ZSS_GENERATOR_PYTHON)",
    ),
]

POLL_TIMEOUT = 240.0  # a cold worker imports torch + diffusers first


def poll_until_idle(jobs, timeout=POLL_TIMEOUT, until=None, seen=None):
    """Call jobs.poll() like the timer would; returns the longest single call in seconds.
    seen: a list that collects every distinct message the job's task is given on the way — also
    those that one poll passes through while draining several events (a fast stage such as
    "Encoding prompt…" often lands in the same poll as the next one)."""
    deadline = time.monotonic() + timeout
    longest = 0.0
    task = jobs.job_task()
    if seen is not None and task is not None:
        _record_messages(task, seen)
    while True:
        started = time.perf_counter()
        delay = jobs.poll()
        longest = max(longest, time.perf_counter() - started)
        task = jobs.job_task()
        if seen is not None and task is not None and (not seen or seen[-1] != task.message):
            seen.append(task.message)
        if delay is None or (until is not None and until()):
            return longest
        assert time.monotonic() < deadline, f"job did not finish: {task}\n{jobs.client().diagnostics()}"
        time.sleep(0.02)


def _record_messages(task, seen):
    """Append each new message of this task object as it is set (an instance attribute wraps the
    bound methods, so other tasks and the class are untouched)."""

    def recording(method):
        def wrapper(*args, **kwargs):
            result = method(*args, **kwargs)
            if not seen or seen[-1] != task.message:
                seen.append(task.message)
            return result

        return wrapper

    for name in ("update", "finish", "fail", "cancel"):
        setattr(task, name, recording(getattr(task, name)))


def succeeded(jobs):
    task = jobs.job_task()
    assert task.status == "done", (task.status, task.message, task.error, task.hint)
    return task


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
    # The first Generate with a Python imports its packages once (seconds, remembered afterwards): do it
    # here so the timings below measure Generate itself.
    assert zb.environment.generator_problem(prefs) is None
    return settings


def imported(bpy):
    """The ZS² materials, strips (in any scene: plates live in an edit scene) and images."""
    from zss_ext.zss_blender import compat

    materials = [m for m in bpy.data.materials if "zss_job_id" in m]
    strips = [
        s
        for scene in bpy.data.scenes
        if scene.sequence_editor
        for s in compat.all_strips(scene.sequence_editor)
        if "zss_job_id" in s
    ]
    images = [i for i in bpy.data.images if "zss_job_id" in i]
    return materials, strips, images


def test_generate_with_depth_imports_material_and_strip(zb, clip_settings, prefs):
    import bpy

    clip_settings.use_depth = True
    clip_settings.target = "BOTH"
    started = time.perf_counter()
    assert bpy.ops.zss.generate() == {"FINISHED"}
    returned = time.perf_counter() - started
    assert returned < 5.0  # depth for 8 frames + sending; never waits for the model
    job = zb.jobs.running_job().job
    assert job["control"]["images"] and all(os.path.isfile(p) for p in job["control"]["images"])

    seen = []
    longest = poll_until_idle(zb.jobs, seen=seen)
    task = succeeded(zb.jobs)
    assert task.message.startswith("Done") and task.progress == 1.0
    assert longest < 1.0  # poll never blocks (the import on done included)
    assert not [m for m in seen if m.startswith("Loading model") and "/" in m], seen  # not "Loading model 0/30"

    (material,), (strip,) = imported(bpy)[:2]
    cube = bpy.data.objects["Cube"]
    assert cube.active_material == material
    node = next(n for n in material.node_tree.nodes if n.type == "TEX_IMAGE")
    assert node.image.source == "SEQUENCE" and node.image_user.frame_duration == 8
    assert len(strip.elements) == 8 and strip.frame_final_duration == 8
    job_dir = os.path.join(prefs.output_dir, job["id"])
    assert material["zss_job_dir"] == job_dir and material["zss_seed"] == 7
    assert len(os.listdir(os.path.join(job_dir, "control"))) == 8
    staging = os.path.join(prefs.output_dir, ".staging", job["id"])
    deadline = time.monotonic() + 10
    while os.path.exists(staging):  # removed off the main thread once the job ended
        assert time.monotonic() < deadline, "the staging folder was not removed"
        time.sleep(0.05)

    # The MP4 imports as a movie strip of the same length.
    movie = zb.importers.import_strip(
        bpy.context.scene, [], os.path.join(job_dir, "clip.mp4"), job, job_dir, 1, use_movie=True
    )
    assert movie.type == "MOVIE" and movie.frame_final_duration == 8 and movie.channel != strip.channel

    # Vary seed: same settings, a new seed, read back from the selected object's material; the clip is
    # replaced in place.
    bpy.context.view_layer.objects.active = cube
    assert bpy.ops.zss.vary_seed() == {"FINISHED"}
    poll_until_idle(zb.jobs)
    succeeded(zb.jobs)
    materials = imported(bpy)[0]
    assert materials == [material] and cube.active_material == material
    assert material["zss_seed"] != 7 and material["zss_prompt"] == "a red brick wall"


def test_check_generator_reports_ready(zb, prefs):
    import bpy

    assert bpy.ops.zss.check_generator() == {"FINISHED"}
    ready = zb.jobs.ready()
    assert zb.jobs.ready_summary(ready).startswith("Generator ready on cpu") and ready.versions.get("torch")


def wait_for_denoising(jobs):
    poll_until_idle(jobs, until=lambda: jobs.job_task().progress > 0 and jobs.job_task().message.startswith("Sampling"))
    assert jobs.is_running(), f"the job ended before it could be interrupted: {jobs.job_task()}"


def test_cancel_imports_nothing_and_next_generate_works(zb, clip_settings):
    import bpy

    clip_settings.steps = 200  # long enough to be interrupted
    assert bpy.ops.zss.generate() == {"FINISHED"}
    wait_for_denoising(zb.jobs)
    assert bpy.ops.zss.cancel() == {"FINISHED"}
    poll_until_idle(zb.jobs, timeout=60)
    task = zb.jobs.job_task()
    assert task.cancelled() and task.message.startswith("Cancelled") and task.error == ""
    assert imported(bpy) == ([], [], [])

    clip_settings.steps = 2
    assert bpy.ops.zss.generate() == {"FINISHED"}
    poll_until_idle(zb.jobs)
    succeeded(zb.jobs)
    assert len(imported(bpy)[0]) == 1


def test_killed_worker_reports_error_and_restarts(zb, clip_settings):
    import bpy

    clip_settings.steps = 200
    assert bpy.ops.zss.generate() == {"FINISHED"}
    wait_for_denoising(zb.jobs)
    old_pid = zb.jobs.client().process.pid
    os.kill(old_pid, signal.SIGKILL if sys.platform != "win32" else signal.SIGTERM)
    poll_until_idle(zb.jobs, timeout=60)
    task = zb.jobs.job_task()
    assert task.failed() and "stopped unexpectedly" in task.error
    assert task.hint  # what to do, and the worker's last log lines
    assert imported(bpy) == ([], [], [])

    clip_settings.steps = 2
    assert bpy.ops.zss.generate() == {"FINISHED"}
    assert zb.jobs.client().process.pid != old_pid  # restarted on demand
    poll_until_idle(zb.jobs)
    succeeded(zb.jobs)
    assert len(imported(bpy)[0]) == 1


def test_loop_tile_and_prompt_travel_end_to_end(zb, clip_settings, prefs):
    """The worker accepts what the panel builds: a looped, tileable clip travelling between prompts."""
    import json

    import bpy

    scene = bpy.context.scene
    clip_settings.frame_start = 1
    clip_settings.loop = True
    clip_settings.tile = "XY"
    scene.frame_current = 5
    assert bpy.ops.zss.prompt_key_add() == {"FINISHED"}
    clip_settings.prompt_keys[0].prompt = "a mossy stone wall"
    assert bpy.ops.zss.generate() == {"FINISHED"}
    job_id = zb.jobs.running_job().job["id"]
    poll_until_idle(zb.jobs)
    succeeded(zb.jobs)
    (material,), _strips, _images = imported(bpy)
    assert material.node_tree.nodes["ZS² Clip"].extension == "REPEAT" and "ZS² Tiling" in material.node_tree.nodes
    with open(os.path.join(prefs.output_dir, job_id, "job.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    text = json.dumps(manifest)
    assert '"loop": true' in text and '"tile_x": true' in text and "a mossy stone wall" in text
    assert zb.preferences.recent_models(prefs)[0] == "tiny"


def test_download_offline_fails_fast_with_a_hint(zb, prefs):
    """Online access is off in these tests, so the worker runs with HF_HUB_OFFLINE=1: a model that is
    not cached fails at once instead of trying the network."""
    assert zb.jobs.worker_env()["HF_HUB_OFFLINE"] == "1"
    zb.jobs.start_download(prefs, "nobody-zss/not-a-model", "download-test-1")
    started = time.monotonic()
    poll_until_idle(zb.jobs, timeout=120)
    task = zb.jobs.download_task()
    assert task.failed() and task.error.startswith("Could not download 'nobody-zss/not-a-model'")
    assert "online access" in task.hint
    assert time.monotonic() - started < 60


def test_progress_shows_every_stage_with_the_time_left(zb, clip_settings):
    """Bug 9: progress said "Loading model 0/30" and never showed decoding. A real job's events, fed
    through poll(), now read: loading model, encoding prompt, sampling k/N (with the time left),
    decoding f/F, writing."""
    import bpy

    clip_settings.steps = 4
    assert bpy.ops.zss.generate() == {"FINISHED"}
    seen = []
    poll_until_idle(zb.jobs, seen=seen)
    succeeded(zb.jobs)
    assert "Loading model…" in seen, seen
    assert "Encoding prompt…" in seen, seen
    sampling = [m for m in seen if m.startswith("Sampling ")]
    assert sampling and all("/4" in m for m in sampling), seen
    assert any(m.endswith("s left") for m in sampling), seen  # the estimate, once sampling started
    assert any(m.startswith("Decoding frame ") and "/8" in m for m in seen), seen
    assert any(m.startswith("Writing frames") for m in seen), seen
    order = [
        next(i for i, m in enumerate(seen) if m.startswith(prefix))
        for prefix in ("Encoding", "Sampling", "Decoding", "Writing", "Done")
    ]
    assert order == sorted(order), seen


def test_five_regenerations_replace_the_clip_in_place(zb, clip_settings):
    """Bug 8: Regenerate / Vary Seed piled up .001, .002 … copies. The material, its image and the strip
    are updated in place: after 5 regenerations the counts are the same and the image shows the newest
    job's frames."""
    import bpy

    clip_settings.frames = 4
    clip_settings.target = "BOTH"
    assert bpy.ops.zss.generate() == {"FINISHED"}
    poll_until_idle(zb.jobs)
    succeeded(zb.jobs)
    cube = bpy.data.objects["Cube"]
    bpy.context.view_layer.objects.active = cube
    (material,), (_strip,), (image,) = imported(bpy)
    counts = (len(bpy.data.materials), len(bpy.data.images), len(imported(bpy)[1]))
    for n in range(5):
        operator = bpy.ops.zss.regenerate if n % 2 else bpy.ops.zss.vary_seed
        assert operator() == {"FINISHED"}
        job_id = zb.jobs.running_job().id
        poll_until_idle(zb.jobs)
        succeeded(zb.jobs)
        assert (len(bpy.data.materials), len(bpy.data.images), len(imported(bpy)[1])) == counts
        materials, strips, images = imported(bpy)
        assert materials == [material] and images == [image] and cube.active_material == material
        assert material["zss_job_id"] == image["zss_job_id"] == strips[0]["zss_job_id"] == job_id
        assert job_id in bpy.path.abspath(image.filepath)  # the newest job's frames
        assert job_id in bpy.path.abspath(strips[0].directory)
        assert not [d for d in bpy.data.materials if d.name.startswith(material.name + ".")]
