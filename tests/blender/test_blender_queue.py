"""The job queue with the real local generator (tiny model, CPU): Generate while a job runs queues the
next one; "Generate for Each Selected Object" and "Seed Variations" queue several at once. The local
worker runs them one after another; poll() routes each event to its own job by id.
"""

import os
import time

import pytest
from test_blender_e2e import imported, poll_until_idle, pytestmark  # noqa: F401  (same skips as e2e)
from test_blender_panels import draw


@pytest.fixture
def small_clip(zb, prefs):
    """4 frames at 64², 2 steps: each job takes about a second once the worker is warm."""
    import bpy

    settings = bpy.context.scene.zss
    settings.prompt = "a red brick wall"
    settings.frames = 4
    settings.width = settings.height = 64
    settings.steps = 2
    settings.seed = 7
    settings.target = "MATERIAL"
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj.name == "Cube")
    assert zb.environment.generator_problem(prefs) is None
    return settings


def staging_left(prefs):
    """Folders still in the output's staging area once the background removals finished."""
    root = os.path.join(prefs.output_dir, ".staging")
    deadline = time.monotonic() + 10
    while os.path.isdir(root) and os.listdir(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    return os.listdir(root) if os.path.isdir(root) else []


def test_a_queue_of_three_with_one_cancelled(zb, small_clip, prefs):
    import bpy

    small_clip.use_depth = True  # each job owns its own staging folder of depth maps
    ids = []
    for seed in (1, 2, 3):
        small_clip.seed = seed
        assert bpy.ops.zss.generate() == {"FINISHED"}  # the 2nd and 3rd are queued, not refused
        ids.append(zb.jobs.running_jobs()[-1].id)
    assert [plan.id for plan in zb.jobs.running_jobs()] == ids and zb.jobs.running_job().id == ids[0]
    assert [task.id for task in zb.jobs.job_tasks()] == ids

    log = draw(zb)
    assert ("operator", "zss.generate") in log and ("operator", "zss.cancel") in log  # Queue and Cancel
    cancel_buttons = [entry[3] for entry in log if entry[:3] == ("operator_prop", "zss.cancel_job", "job_id")]
    assert cancel_buttons == ids  # one per queued job

    assert bpy.ops.zss.cancel_job(job_id=ids[1]) == {"FINISHED"}
    poll_until_idle(zb.jobs)
    states = [task.status for task in zb.jobs.job_tasks()]
    assert states == ["done", "cancelled", "done"], [(t.status, t.message, t.error) for t in zb.jobs.job_tasks()]
    assert not zb.jobs.is_running() and zb.jobs.running_job() is None
    assert zb.jobs.job_task().id == ids[2]  # the last one that ended

    materials = imported(bpy)[0]
    assert sorted(m["zss_job_id"] for m in materials) == sorted([ids[0], ids[2]])
    assert staging_left(prefs) == []

    log = draw(zb)  # the ended queue: each job's state, no cancel buttons, Generate again
    assert not [e for e in log if e[:2] == ("operator_prop", "zss.cancel_job")]
    assert ("operator", "zss.cancel") not in log
    labels = [text for kind, text, *_ in log if kind == "label"]
    assert any(text.startswith(ids[1]) and "Cancelled" in text for text in labels), labels
    assert sum(text.startswith((ids[0], ids[2])) and "Done" in text for text in labels) == 2, labels
    assert bpy.ops.zss.cancel_job(job_id=ids[0]) == {"CANCELLED"}  # ended: nothing to cancel


def test_generate_each_selected_object_gets_its_own_clip(zb, small_clip):
    import bpy

    bpy.ops.mesh.primitive_plane_add(location=(3, 0, 0))
    plane = bpy.context.active_object
    cube = bpy.data.objects["Cube"]
    cube.select_set(True)
    plane.select_set(True)
    assert bpy.ops.zss.generate_each() == {"FINISHED"}
    assert len(zb.jobs.running_jobs()) == 2
    poll_until_idle(zb.jobs)
    assert [task.status for task in zb.jobs.job_tasks()] == ["done", "done"]
    materials = imported(bpy)[0]
    assert len(materials) == 2
    assert cube.active_material in materials and plane.active_material in materials
    assert cube.active_material != plane.active_material
    assert cube.active_material["zss_job_id"] != plane.active_material["zss_job_id"]


def test_seed_variations_import_three_materials(zb, small_clip):
    import bpy

    assert bpy.ops.zss.generate_variations(count=3, seeds="CONSECUTIVE") == {"FINISHED"}
    assert [plan.job["seed"] for plan in zb.jobs.running_jobs()] == [7, 8, 9]
    poll_until_idle(zb.jobs)
    assert [task.status for task in zb.jobs.job_tasks()] == ["done"] * 3
    materials = imported(bpy)[0]
    assert sorted(m["zss_seed"] for m in materials) == [7, 8, 9]
    assert len({m.name for m in materials}) == 3

    seeds = zb.operators.variation_seeds(5, 4, "RANDOM")
    assert len(set(seeds)) == 4 and all(0 <= s <= zb.operators.SEED_MAX for s in seeds)
    assert zb.operators.variation_seeds(zb.operators.SEED_MAX, 2, "CONSECUTIVE") == [zb.operators.SEED_MAX, 0]
