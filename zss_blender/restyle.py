"""Restyle sources: the frames a video-to-video job starts from (the protocol job's `init`).

Two sources, both written as init_0001.png … into the job's staging folder at the generation size:
- SCENE: the frame range rendered from the scene camera with Workbench (the fastest engine; it renders
  headless in bpy through EGL, also on software GL: ~10 ms a 64² frame, ~0.35 s a 512×288 one on 2 busy
  cores, after ~1.3 s of GL set-up per process). The depth maps of the same camera come from depth.py
  when Depth Control is on.
- STRIP: the active image-sequence or movie strip of the scene's sequencer, read by rendering the
  sequencer with every other strip muted. Blender itself then decodes the movie (its own FFmpeg) and
  applies the strip's offsets, holds, speed, transform and fit exactly as the preview shows them. The
  sequencer is rendered at the render resolution scaled down by a whole percentage — the strip's
  transform is in pixels of the render resolution, so a smaller resolution_x/y would crop it — and
  the result is scaled to the generation size.

Both renders use the Standard view transform so the model sees the source's own colours (AgX or Filmic
would wash them out). Every setting changed (engine, resolution, output format, colour management,
mutes, the current frame) is put back afterwards with depth.Overrides, also when a render fails.
"""

import math
import os

import bpy

from . import compat, depth

SOURCE_ITEMS = (
    ("NONE", "None", "Text to video: no source frames"),
    (
        "SCENE",
        "Scene Render",
        "Restyle the frame range rendered from the scene camera (Workbench, at the generation size)",
    ),
    (
        "STRIP",
        "Selected Strip",
        "Restyle the active image-sequence or movie strip of this scene's sequencer (its length and start)",
    ),
)
STRIP_TYPES = ("IMAGE", "MOVIE")
FRAME_NAME = "init_{:04d}.png"


class RestyleError(RuntimeError):
    """Reading the restyle source failed; the message says what to do."""


def source_strip(scene):
    """The active strip of scene's sequencer, or None."""
    editor = scene.sequence_editor
    return editor.active_strip if editor is not None else None


def strip_problem(scene):
    """Why the active strip cannot be restyled ("what is wrong"), or None."""
    strip = source_strip(scene)
    if strip is None:
        return f"Restyle is set to Selected Strip but no strip is selected in the sequencer of '{scene.name}'"
    if strip.type not in STRIP_TYPES:
        return f"The active strip '{strip.name}' is a {strip.type.lower()} strip, not an image sequence or a movie"
    if strip not in list(compat.top_level_strips(scene.sequence_editor)):
        return f"The active strip '{strip.name}' is inside a meta strip"
    return None


def strip_range(strip):
    """(first scene frame, frame count) of a strip as the timeline shows it (offsets applied)."""
    return round(strip.frame_final_start), round(strip.frame_final_duration)


def _neutral_output(ov, scene):
    """PNG, 8-bit RGB, no stamp, Standard view transform: the frames keep the source's colours."""
    render = scene.render
    for attr, value in (
        ("resolution_percentage", 100),
        ("pixel_aspect_x", 1.0),
        ("pixel_aspect_y", 1.0),
        ("use_border", False),
        ("use_compositing", False),
        ("use_multiview", False),
        ("use_stamp", False),
        ("film_transparent", False),
        ("use_file_extension", True),
        ("use_overwrite", True),
        ("use_placeholder", False),
    ):
        ov.set(render, attr, value)
    depth.set_image_format(ov, render.image_settings, "IMAGE", "PNG", "RGB", "8")
    view = scene.view_settings
    for attr, value in (
        ("view_transform", "Standard"),
        ("look", "None"),
        ("exposure", 0.0),
        ("gamma", 1.0),
        ("use_curve_mapping", False),
    ):
        ov.set(view, attr, value)
    if compat.HAS_WHITE_BALANCE:
        ov.set(view, "use_white_balance", False)


def _render_frames(ov, scene, view_layer, frames, paths):
    """Render scene frame frames[i] to paths[i]; raises RestyleError when a file is missing."""
    missing = depth.render_stills(ov, scene, view_layer, frames, paths)
    if missing is not None:
        frame, path = missing
        raise RestyleError(
            f"The render wrote no image for frame {frame} ({path}) — check the console for render "
            "errors and that the folder is writable"
        )


def _restoring(scene, label, body):
    """Run body(ov) and put every setting and the current frame back, also on error."""
    frame_before, subframe_before = scene.frame_current, scene.frame_subframe
    ov = depth.Overrides(after=label)
    try:
        return body(ov)
    finally:
        try:
            ov.restore()
        finally:
            scene.frame_set(frame_before, subframe=subframe_before)


def render_scene(scene, view_layer, frame_start, count, width, height, out_dir):
    """Render frames frame_start … +count-1 from the scene camera with Workbench at width × height into
    out_dir (init_0001.png …); returns the paths. The user's settings are restored afterwards."""
    if scene.camera is None:
        raise RestyleError("The scene has no active camera — add one (or set Scene ▸ Camera) to restyle its render")
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, FRAME_NAME.format(i + 1)) for i in range(count)]

    def body(ov):
        render = scene.render
        ov.set(render, "engine", "BLENDER_WORKBENCH")
        ov.set(render, "use_sequencer", False)  # the 3D scene, not what its sequencer holds
        ov.set(render, "resolution_x", width)
        ov.set(render, "resolution_y", height)
        _neutral_output(ov, scene)
        _render_frames(ov, scene, view_layer, range(frame_start, frame_start + count), paths)
        return paths

    return _restoring(scene, "rendering the scene for Restyle", body)


def read_strip(scene, view_layer, strip, width, height, out_dir):
    """The strip's frames as shown (its whole length on the timeline) at width × height in out_dir
    (init_0001.png …); returns the paths. Mutes, settings and the frame are restored afterwards."""
    problem = strip_problem(scene)
    if problem or source_strip(scene) != strip:
        raise RestyleError((problem or f"'{strip.name}' is not the active strip") + " — select the strip to restyle")
    os.makedirs(out_dir, exist_ok=True)
    frame_start, count = strip_range(strip)
    paths = [os.path.join(out_dir, FRAME_NAME.format(i + 1)) for i in range(count)]
    raws = [os.path.join(out_dir, f"raw_{i + 1:04d}.png") for i in range(count)]

    def body(ov):
        render = scene.render
        editor = scene.sequence_editor
        for other in compat.top_level_strips(editor):
            ov.set(other, "mute", other != strip)
        channels = getattr(editor, "channels", None)  # channel mute (3.5+)
        if channels is not None and strip.channel < len(channels):
            ov.set(channels[strip.channel], "mute", False)
        ov.set(render, "use_sequencer", True)
        _neutral_output(ov, scene)
        full_x, full_y = render.resolution_x, render.resolution_y
        percentage = math.ceil(100 * max(width / full_x, height / full_y))
        ov.set(render, "resolution_percentage", max(1, min(100, percentage)))
        _render_frames(ov, scene, view_layer, range(frame_start, frame_start + count), raws)
        for raw, path in zip(raws, paths):
            _scaled_copy(raw, path, width, height)
        return paths

    return _restoring(scene, "reading the strip for Restyle", body)


def _scaled_copy(raw, path, width, height):
    """raw resized to width × height as an 8-bit PNG at path (Blender's own image scaling); raw removed."""
    image = bpy.data.images.load(raw, check_existing=False)
    try:
        if tuple(image.size) != (width, height):
            image.scale(width, height)
        image.filepath_raw = path
        image.file_format = "PNG"
        image.save()
    finally:
        bpy.data.images.remove(image)
    os.remove(raw)
    if not os.path.isfile(path):
        raise RestyleError(f"Could not write {path} — check that the output folder is writable")


def read_source(scene, view_layer, frames):
    """The plan's source frames (jobspec.RestyleFrames) written into its staging folder; returns paths."""
    if frames.source == "SCENE":
        return render_scene(
            scene, view_layer, frames.frame_start, frames.count, frames.width, frames.height, frames.folder
        )
    strip = compat.top_level_strips(scene.sequence_editor).get(frames.strip_name) if scene.sequence_editor else None
    if strip is None:
        raise RestyleError(f"The strip '{frames.strip_name}' is gone — select the strip to restyle")
    return read_strip(scene, view_layer, strip, frames.width, frames.height, frames.folder)
