"""Restyle in real bpy: the scene render and sequencer strips become the job's init frames.

What Generate would send is captured (no worker); the source frames it wrote are checked on disk: their
count, their size, and which source frame each one shows (every source frame has its own colour and a
stripe whose width is its index). A fake result folder goes through the add-on's own import path.
The last test runs the real generator (it needs a worker that takes `init`: the engine side of issue 17).
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.blender

WIDTH, HEIGHT = 96, 72  # the generation size
SOURCE_W, SOURCE_H = 80, 60  # the source frames: same aspect, another size (read at the generation size)
RENDER_X, RENDER_Y = 320, 240  # the scene's render resolution: a strip's fit and transform are in it


def red_of(index):
    return 20 + 20 * index


def stripe_of(index, width=SOURCE_W):
    """Width in pixels of the green stripe on the left of source frame `index`."""
    return round((index + 1) * 8 * width / SOURCE_W)


def source_frame(index):
    image = np.zeros((SOURCE_H, SOURCE_W, 3), np.uint8)
    image[..., 0] = red_of(index)
    image[:, : stripe_of(index), 1] = 255
    return image


def which_frame(path):
    """(index by colour, stripe width) of a written init frame, after checking its size."""
    image = Image.open(path)
    assert image.size == (WIDTH, HEIGHT), path
    pixels = np.asarray(image.convert("RGB")).astype(int)
    red = pixels[HEIGHT // 2, WIDTH - 4, 0]
    stripe = int((pixels[HEIGHT // 2, :, 1] > 128).sum())
    return round((red - 20) / 20), stripe


@pytest.fixture
def sent(zb, prefs, monkeypatch):
    """Capture what Generate would send instead of starting a worker; the job keeps its staging folder."""
    plans = []
    monkeypatch.setattr(zb.jobs, "ensure_client", lambda prefs: None)
    monkeypatch.setattr(zb.jobs, "submit", lambda plan, staging: (plans.append(plan), staging.hand_over()))
    return plans


@pytest.fixture
def settings(zb, prefs):
    import bpy

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = RENDER_X, RENDER_Y, 100
    s = scene.zss
    s.prompt = "an oil painting"
    s.width, s.height = WIDTH, HEIGHT
    s.steps = 2
    return s


def image_strip(bpy, tmp_path, channel, start, count=6, name="Source"):
    folder = tmp_path / name
    folder.mkdir()
    paths = []
    for i in range(count):
        path = folder / f"src_{i:03d}.png"
        Image.fromarray(source_frame(i)).save(path)
        paths.append(str(path))
    scene = bpy.context.scene
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = strips_of(editor)
    strip = strips.new_image(name, paths[0], channel, start, fit_method="FIT")
    for path in paths[1:]:
        strip.elements.append(os.path.basename(path))
    return strip


def strips_of(editor):
    from zss_ext.zss_blender import compat

    return compat.top_level_strips(editor)


def render_state(bpy, scene):
    render, view = scene.render, scene.view_settings
    return {
        "engine": render.engine,
        "size": (render.resolution_x, render.resolution_y, render.resolution_percentage),
        "format": (render.image_settings.file_format, render.image_settings.color_mode),
        "filepath": render.filepath,
        "use_sequencer": render.use_sequencer,
        "use_compositing": render.use_compositing,
        "film_transparent": render.film_transparent,
        "stamp": render.use_stamp,
        "view": (view.view_transform, view.look, view.exposure),
        "frame": scene.frame_current,
        "mutes": sorted((s.name, s.mute) for s in strips_of(scene.sequence_editor)) if scene.sequence_editor else [],
        "active": scene.sequence_editor.active_strip.name
        if scene.sequence_editor and scene.sequence_editor.active_strip
        else "",
        "images": sorted(i.name for i in bpy.data.images),
    }


def test_scene_render_writes_frames_and_restores_settings(zb, settings, sent):
    import bpy

    scene = bpy.context.scene
    cube = bpy.data.objects["Cube"]
    for frame, x in ((1, -2.0), (4, 2.0)):  # moves left to right across the camera's view
        cube.location.x = x
        cube.keyframe_insert("location", frame=frame)
    scene.frame_start, scene.frame_end = 1, 4
    render = scene.render
    render.engine = "CYCLES"
    render.resolution_percentage = 50
    render.image_settings.file_format = "JPEG"
    render.filepath = "/tmp/user-output-"
    render.use_stamp = True
    scene.view_settings.view_transform = "AgX"
    scene.frame_set(3)
    settings.restyle_source = "SCENE"
    before = render_state(bpy, scene)

    assert bpy.ops.zss.generate() == {"FINISHED"}

    assert render_state(bpy, scene) == before
    (plan,) = sent
    job = plan.job
    assert job["frames"] == 4 and job["strength"] == pytest.approx(0.6)
    assert len(job["init"]) == 4 and plan.targets.frame_start == 1
    assert [os.path.basename(p) for p in job["init"]] == [f"init_{i:04d}.png" for i in range(1, 5)]
    centres = []
    for path in job["init"]:
        image = Image.open(path)
        assert image.size == (WIDTH, HEIGHT)
        gray = np.asarray(image.convert("L")).astype(int)
        background = np.median(gray[0])
        cols = np.nonzero((np.abs(gray - background) > 8).any(axis=0))[0]
        assert cols.size, f"the cube is not in {path}"
        centres.append(cols.mean())
    assert centres == sorted(centres) and centres[-1] - centres[0] > WIDTH / 4  # frame i shows frame i


def test_scene_render_with_depth_gives_init_and_depth_of_each_frame(zb, settings, sent):
    import bpy

    bpy.context.scene.frame_start, bpy.context.scene.frame_end = 1, 3
    settings.restyle_source = "SCENE"
    settings.use_depth = True
    settings.strength = 0.4

    assert bpy.ops.zss.generate() == {"FINISHED"}

    (plan,) = sent
    job = plan.job
    assert len(job["init"]) == len(job["control"]["images"]) == job["frames"] == 3
    assert job["strength"] == pytest.approx(0.4)
    assert {os.path.dirname(p) for p in job["init"] + job["control"]["images"]} == {plan.staging_folder}
    assert all(Image.open(p).size == (WIDTH, HEIGHT) for p in job["init"] + job["control"]["images"])
    assert not zb.checks.job_problems(job)


def test_image_strip_frames_as_shown_with_offsets(zb, settings, sent, tmp_path):
    import bpy

    scene = bpy.context.scene
    source = image_strip(bpy, tmp_path, channel=2, start=10)
    source.frame_offset_start, source.frame_offset_end = 1, 1  # shows source frames 1…4 at 11…14
    cover = image_strip(bpy, tmp_path, channel=3, start=8, count=10, name="Cover")  # hides it when rendered
    scene.sequence_editor.active_strip = source
    settings.restyle_source = "STRIP"
    settings.frames, settings.frame_start = 20, 1  # ignored: the strip gives the range
    scene.render.use_sequencer = False
    before = render_state(bpy, scene)

    assert bpy.ops.zss.generate() == {"FINISHED"}

    assert render_state(bpy, scene) == before and not cover.mute
    (plan,) = sent
    job = plan.job
    assert job["frames"] == 4 and len(job["init"]) == 4 and job["strength"] == pytest.approx(0.6)
    assert plan.targets.frame_start == 11 and plan.targets.source_strip == source.name
    found = [which_frame(p) for p in job["init"]]
    assert [index for index, _ in found] == [1, 2, 3, 4]
    for (_, stripe), i in zip(found, range(1, 5)):
        assert abs(stripe - stripe_of(i, WIDTH)) <= 1, (i, stripe)  # scaled 80 → 320 → 96 pixels


def make_movie(path, count):
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = SOURCE_W, SOURCE_H, "yuv420p"
        stream.options = {"qp": "0"}  # lossless luma; chroma keeps 4:2:0
        for i in range(count):
            for packet in stream.encode(av.VideoFrame.from_ndarray(source_frame(i), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_movie_strip_frames(zb, settings, sent, tmp_path):
    import bpy

    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    movie = tmp_path / "source.mp4"
    make_movie(movie, 8)
    strips = strips_of(scene.sequence_editor_create())
    source = strips.new_movie("Movie", str(movie), 1, 5, fit_method="FIT")
    source.frame_offset_start = 2  # shows movie frames 2…7 at 7…12
    scene.sequence_editor.active_strip = source
    settings.restyle_source = "STRIP"

    assert bpy.ops.zss.generate() == {"FINISHED"}

    (plan,) = sent
    job = plan.job
    assert job["frames"] == 6 and len(job["init"]) == 6 and plan.targets.frame_start == 7
    found = [which_frame(p) for p in job["init"]]
    assert [index for index, _ in found] == list(range(2, 8))
    for (_, stripe), i in zip(found, range(2, 8)):
        assert abs(stripe - stripe_of(i, WIDTH)) <= 2, (i, stripe)  # chroma subsampling blurs the edge


def fake_result(plan, count):
    """What the worker leaves in the job folder: frame_0001.png … at the job's size."""
    os.makedirs(plan.job_dir)
    frames = []
    for i in range(count):
        path = os.path.join(plan.job_dir, f"frame_{i + 1:04d}.png")
        Image.new("RGB", (WIDTH, HEIGHT), (0, 0, 40 * i)).save(path)
        frames.append(path)
    return frames


def import_result(zb, plan):
    import bpy
    from zss_ext.zss_core import protocol

    frames = fake_result(plan, plan.job["frames"])
    done = protocol.Done(
        id=plan.id,
        frames=frames,
        video=None,
        contact_sheet=None,
        manifest=os.path.join(plan.job_dir, "job.json"),
        seconds=1.0,
        model_load_seconds=0.0,
    )
    return zb.jobs._import_clip(plan, bpy.data.scenes[plan.targets.scene_name], done, plan.job_dir)


def test_result_strip_sits_above_its_source_and_regenerates_from_it(zb, settings, sent, tmp_path):
    import bpy

    scene = bpy.context.scene
    source = image_strip(bpy, tmp_path, channel=2, start=10)
    source.frame_offset_start = 1
    scene.sequence_editor.active_strip = source
    settings.restyle_source = "STRIP"
    settings.target = "BOTH"
    settings.strength = 0.7
    assert bpy.ops.zss.generate() == {"FINISHED"}
    (plan,) = sent

    notes = import_result(zb, plan)

    assert notes == []  # next to its source, not in a plates scene
    (result,) = [s for s in strips_of(scene.sequence_editor) if "zss_job_id" in s]
    assert result.channel == source.channel + 1
    assert (result.frame_final_start, result.frame_final_duration) == (11, 5)
    assert (source.frame_final_start, source.frame_final_duration) == (11, 5)
    assert result["zss_restyle_source"] == "STRIP" and result["zss_restyle_strip"] == source.name
    record = json.loads(result["zss_job"])
    assert record["strength"] == pytest.approx(0.7) and "init" not in record  # staging paths are not kept
    material = next(m for m in bpy.data.materials if "zss_job_id" in m)
    assert material["zss_restyle_source"] == "STRIP"

    # Regenerate from the result strip: the source strip is read again, the result replaced in place.
    settings.restyle_source, settings.strength = "NONE", 1.0
    scene.sequence_editor.active_strip = result
    bpy.data.objects["Cube"].active_material = None
    assert bpy.ops.zss.regenerate() == {"FINISHED"}
    again = sent[-1]
    assert again.targets.replace.strip == result.name and again.targets.source_strip == source.name
    assert again.job["strength"] == pytest.approx(0.7) and len(again.job["init"]) == 5
    assert [which_frame(p)[0] for p in again.job["init"]] == [1, 2, 3, 4, 5]
    import_result(zb, again)
    (replaced,) = [s for s in strips_of(scene.sequence_editor) if "zss_job_id" in s]
    assert replaced.channel == source.channel + 1 and replaced.frame_final_start == 11
    assert replaced["zss_job_id"] == again.id


def test_result_strip_skips_a_busy_channel_above_the_source(zb, settings, sent, tmp_path):
    import bpy

    scene = bpy.context.scene
    source = image_strip(bpy, tmp_path, channel=1, start=1, count=4)
    image_strip(bpy, tmp_path, channel=2, start=3, count=2, name="Busy")  # overlaps the source's range
    scene.sequence_editor.active_strip = source
    settings.restyle_source = "STRIP"
    settings.target = "STRIP"
    assert bpy.ops.zss.generate() == {"FINISHED"}

    import_result(zb, sent[0])

    (result,) = [s for s in strips_of(scene.sequence_editor) if "zss_job_id" in s]
    assert result.channel == 3 and (result.frame_final_start, result.frame_final_duration) == (1, 4)


def problems(zb):
    import bpy

    return zb.operators.validation_problems(bpy.context)


def test_errors_name_what_to_do(zb, settings, prefs, sent, tmp_path):
    import bpy

    scene = bpy.context.scene
    settings.restyle_source = "STRIP"
    (field, message), *_ = problems(zb)
    assert field == "restyle_source" and "no strip is selected" in message and "Click an image-sequence" in message
    with pytest.raises(RuntimeError, match="no strip is selected"):  # bpy.ops raises on a reported error
        bpy.ops.zss.generate()
    assert not sent

    strips = strips_of(scene.sequence_editor_create())
    other = strips.new_scene("Shot", scene, 1, 1)
    scene.sequence_editor.active_strip = other
    assert next(m for f, m in problems(zb) if f == "restyle_source").startswith(
        "The active strip 'Shot' is a scene strip, not an image sequence or a movie —"
    )

    scene.sequence_editor.active_strip = image_strip(bpy, tmp_path, channel=2, start=1)
    assert not problems(zb)
    settings.use_depth = True
    assert [f for f, _ in problems(zb)] == ["use_depth"]

    settings.use_depth = False
    prefs.generator, prefs.server_url = "SERVER", "https://gpu-box:7860"
    assert not problems(zb)  # a server receives the source frames with the job (RemoteClient inlines them)
    prefs.generator = "LOCAL"

    settings.restyle_source = "SCENE"
    scene.camera = None
    (field, message), *_ = problems(zb)
    assert field == "camera" and "Restyle from Scene Render needs a camera" in message
    with pytest.raises(RuntimeError, match="needs a camera"):
        bpy.ops.zss.generate()
    assert not sent


def test_panel_shows_the_source_and_its_range(zb, settings, tmp_path):
    import bpy
    from test_blender_panels import draw

    log = draw(zb)
    assert ("prop", "restyle_source") in log and ("prop", "strength") not in log  # None: text to video
    settings.restyle_source = "STRIP"
    log = draw(zb)
    assert ("prop", "strength") in log
    assert any(
        kind == "label" and text.startswith("Restyle is set to Selected Strip but no strip") for kind, text in log
    )
    source = image_strip(bpy, tmp_path, channel=2, start=10)
    source.frame_offset_start = 1
    bpy.context.scene.sequence_editor.active_strip = source
    log = draw(zb)
    assert ("label", "Strip 'Source': 5 frames from 11") in log
    assert ("label", f"5 frames from 11, {WIDTH}×{HEIGHT}") in log  # the clip's range is the strip's
    assert ("label", zb.panels.RESTYLE_STRIP_NOTE) in log  # Import As is Material
    settings.target = "STRIP"
    assert ("label", zb.panels.RESTYLE_STRIP_NOTE) not in draw(zb)


def test_regenerate_refuses_when_the_source_strip_is_gone(zb, settings, sent, tmp_path):
    import bpy

    scene = bpy.context.scene
    source = image_strip(bpy, tmp_path, channel=1, start=1, count=3)
    scene.sequence_editor.active_strip = source
    settings.restyle_source = "STRIP"
    settings.target = "STRIP"
    assert bpy.ops.zss.generate() == {"FINISHED"}
    import_result(zb, sent[0])
    result = next(s for s in strips_of(scene.sequence_editor) if "zss_job_id" in s)
    strips_of(scene.sequence_editor).remove(source)
    scene.sequence_editor.active_strip = result
    bpy.data.objects["Cube"].active_material = None
    settings.restyle_source, settings.strength = "SCENE", 0.3

    with pytest.raises(RuntimeError, match="The strip 'Source' this clip restyled is gone"):
        bpy.ops.zss.regenerate()
    assert len(sent) == 1 and settings.prompt == "an oil painting"
    assert (settings.restyle_source, settings.strength) == ("SCENE", pytest.approx(0.3))  # nothing changed


@pytest.mark.slow
def test_restyle_a_strip_end_to_end_with_the_generator(zb, settings, prefs, tmp_path):
    """Needs the engine side of issue 17: a worker that starts from the `init` frames. The restyled clip
    must differ from the text-to-video clip of the same seed (a worker that ignored init makes the same)."""
    import bpy
    from conftest import GENERATOR_PYTHON
    from test_blender_e2e import _has_torch, poll_until_idle, succeeded

    if not _has_torch(GENERATOR_PYTHON):
        pytest.skip(f"the generator Python {GENERATOR_PYTHON} has no torch (set ZSS_GENERATOR_PYTHON)")
    scene = bpy.context.scene
    source = image_strip(bpy, tmp_path, channel=1, start=5, count=4)
    scene.sequence_editor.active_strip = source
    settings.restyle_source = "STRIP"
    settings.target = "STRIP"
    settings.strength = 0.5
    settings.seed = 3
    assert zb.environment.generator_problem(prefs) is None

    assert bpy.ops.zss.generate() == {"FINISHED"}
    job = zb.jobs.running_job().job
    assert len(job["init"]) == 4 and job["strength"] == 0.5
    poll_until_idle(zb.jobs)
    succeeded(zb.jobs)

    (result,) = [s for s in strips_of(scene.sequence_editor) if "zss_job_id" in s]
    assert result.channel == 2 and (result.frame_final_start, result.frame_final_duration) == (5, 4)
    assert result["zss_restyle_strip"] == source.name
    restyled = clip_pixels(os.path.join(prefs.output_dir, job["id"]))

    settings.restyle_source = "NONE"  # the same clip from noise: same seed, size, frames
    settings.frames, settings.frame_start = 4, 5
    assert bpy.ops.zss.generate() == {"FINISHED"}
    plain = zb.jobs.running_job().job
    assert "init" not in plain and plain["seed"] == job["seed"]
    poll_until_idle(zb.jobs)
    succeeded(zb.jobs)
    from_noise = clip_pixels(os.path.join(prefs.output_dir, plain["id"]))
    assert restyled.shape == from_noise.shape == (4, HEIGHT, WIDTH, 3)
    assert np.abs(restyled - from_noise).mean() > 1.0, "the worker ignored the source frames (init)"


def clip_pixels(job_dir):
    names = sorted(n for n in os.listdir(job_dir) if n.startswith("frame_") and n.endswith(".png"))
    return np.stack([np.asarray(Image.open(os.path.join(job_dir, n)).convert("RGB")).astype(float) for n in names])
