"""Live previews in the panel (issue 15 §4), with the real generator (tiny model, CPU): the job's
`preview` events replace the panel's picture while it runs, the picture goes when the job ends, and
unregistering the add-on removes the preview collection."""

import os
import time

import pytest
from test_blender_e2e import poll_until_idle, pytestmark  # noqa: F401  (same skips as e2e)
from test_blender_panels import draw

PREVIEW_EVERY = 5  # the job's default (protocol.PREVIEW_EVERY): the add-on sends no preview_every


@pytest.fixture
def previewed_clip(zb, prefs):
    import bpy

    settings = bpy.context.scene.zss
    settings.prompt = "a red brick wall"
    settings.frames = 3
    settings.width = settings.height = 64
    settings.steps = 3 * PREVIEW_EVERY  # previews after steps 5, 10 and 15
    settings.target = "MATERIAL"
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj.name == "Cube")
    assert zb.environment.generator_problem(prefs) is None
    return settings


def test_a_running_job_shows_its_latest_preview_and_unregister_removes_it(zb, previewed_clip, addon):
    import addon_utils
    import bpy

    live = zb.live_preview
    assert live.loaded() and live.shown() is None
    assert not [entry for entry in draw(zb) if entry[0] == "template_icon"]
    assert bpy.ops.zss.generate() == {"FINISHED"}
    job_dir = zb.jobs.running_job().job_dir

    seen = []

    def first_preview():
        shown = live.shown()
        if shown is not None and (not seen or seen[-1] != shown.step):
            seen.append(shown.step)
        return shown is not None

    started = time.perf_counter()
    poll_until_idle(zb.jobs, until=first_preview)
    assert zb.jobs.is_running(), "the job ended before its first preview reached the panel"
    shown, image = live.shown(), live.image()
    assert shown.step % PREVIEW_EVERY == 0 and shown.steps == 3 * PREVIEW_EVERY and shown.frame == 1
    assert shown.path == os.path.join(job_dir, "previews", f"step_{shown.step:04d}.png")
    assert tuple(image.image_size) == (64, 64)  # the PNG was loaded (headless too: icon ids stay 0)
    log = draw(zb)
    assert ("template_icon", zb.panels.PREVIEW_SCALE) in log
    assert ("label", f"Preview: frame 2, step {shown.step}/{3 * PREVIEW_EVERY}") in log

    # Later previews replace the picture; polls stay cheap (loading happens once per event).
    longest = poll_until_idle(zb.jobs, until=lambda: first_preview() and live.shown().step == 3 * PREVIEW_EVERY)
    assert seen[-1] == 3 * PREVIEW_EVERY and seen == sorted(seen), seen
    assert tuple(live.image().image_size) == (64, 64) and longest < 1.0
    poll_until_idle(zb.jobs)
    assert zb.jobs.job_task().status == "done", zb.jobs.job_task().error
    assert live.shown() is None and live.image() is None  # the job ended: its picture went
    assert not [entry for entry in draw(zb) if entry[0] == "template_icon"]
    assert sorted(os.listdir(os.path.join(job_dir, "previews"))) == ["step_0005.png", "step_0010.png", "step_0015.png"]
    assert time.perf_counter() - started < 240

    addon_utils.disable(addon.__name__, default_set=True)
    try:
        assert not live.loaded() and live.shown() is None and live.image() is None
    finally:
        addon_utils.enable(addon.__name__, default_set=True)
    assert live.loaded()


def test_each_preview_replaces_the_picture(zb, tmp_path):
    """A new event's PNG replaces the picture, also when a file is overwritten under the same path."""
    from PIL import Image
    from zss_ext.zss_core import protocol

    def event(path, step):
        return protocol.Preview(id="j", step=step, steps=10, frame=0, path=str(path), width=0, height=0)

    live = zb.live_preview
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (64, 64), (255, 0, 0)).save(first)
    Image.new("RGB", (32, 16), (0, 0, 255)).save(second)
    assert live.show(event(first, 5)) and tuple(live.image().image_size) == (64, 64)
    assert live.show(event(second, 10)) and tuple(live.image().image_size) == (32, 16)
    assert tuple(live.image().image_pixels_float[:4]) == (0.0, 0.0, 1.0, 1.0)  # blue, opaque
    assert live.shown().step == 10 and live.shown().path == str(second)
    Image.new("RGB", (48, 24), (0, 255, 0)).save(second)  # a server's re-download under the same name
    assert live.show(event(second, 10)) and tuple(live.image().image_size) == (48, 24)
    assert not live.show(event(tmp_path / "gone.png", 11))  # unreadable: the picture stays
    assert live.shown().step == 10 and tuple(live.image().image_size) == (48, 24)
    big = tmp_path / "big.png"
    Image.new("RGB", (256, 256), (9, 9, 9)).save(big)
    started = time.perf_counter()
    assert live.show(event(big, 15))
    assert time.perf_counter() - started < 0.1  # once per event, not per poll (measured: 2–7 ms warm)
    live.clear("another-job")
    assert live.shown() is not None  # only its own job's end clears it
    live.clear("j")
    assert live.shown() is None and live.image() is None
