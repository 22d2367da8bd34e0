"""The plates scene: where a clip imported as a strip goes, so F12 in the 3D scene still renders 3D.

A strip in a scene's own sequencer makes that scene's render the sequencer's output (only the clip).
So by default a strip goes to an edit scene "<scene> · plates", created once per 3D scene and reused:
the clip strips (plates) sit on low channels and a Scene strip of the 3D scene sits above them with
Alpha Over, at the 3D scene's own frames (edit frame f shows 3D frame f). Rendering the plates scene
composites the 3D render over the generated background — where the 3D scene renders a transparent film
(Render ▸ Film ▸ Transparent). That is the 3D scene's setting and stays the user's choice:
placement_note() says where the clip went and, when the film is opaque, what to do. The plates scene follows the 3D scene's frame
range, frame rate, resolution and colour management at every import.

Runs from the job poller (a timer): data API only.
"""

import bpy

from . import compat

SUFFIX = " · plates"
OWNER_KEY = "zss_plates_of"  # custom property on the plates scene: the 3D scene it belongs to (an ID)
NAME_BYTES = 63  # Blender's datablock name limit (4.x) in UTF-8 bytes
F12_WARNING = "F12 here renders the sequencer: only the clip, not the 3D scene"  # panel, 'SCENE' placement

_FOLLOWED_RENDER = (
    "fps",
    "fps_base",
    "resolution_x",
    "resolution_y",
    "resolution_percentage",
    "pixel_aspect_x",
    "pixel_aspect_y",
)
_FOLLOWED_VIEW = ("view_transform", "look", "exposure", "gamma")


def free_channel(strips, frame_start, length, max_channel=128, lowest=1):
    """The lowest channel from `lowest` on with nothing overlapping [frame_start, frame_start + length)."""
    frame_end = frame_start + length
    busy = {s.channel for s in strips if s.frame_final_start < frame_end and s.frame_final_end > frame_start}
    for channel in range(lowest, max_channel + 1):
        if channel not in busy:
            return channel
    raise RuntimeError(
        f"All {max_channel} sequencer channels are busy at frames {frame_start}–{frame_end - 1} "
        "— free a channel or move strips, then import the clip from its folder"
    )


def plates_name(scene):
    """'<scene> · plates', the scene name shortened so the whole name fits a datablock name."""
    name = scene.name
    while name and len((name + SUFFIX).encode()) > NAME_BYTES:
        name = name[:-1]
    return name + SUFFIX


def find_plates_scene(scene):
    """The plates scene made for scene (found by its owner property, so renaming either keeps it)."""
    return next((s for s in bpy.data.scenes if s != scene and s.get(OWNER_KEY) == scene), None)


def owner_scene(scene):
    """The 3D scene a plates scene belongs to; any other scene is its own owner. A clip regenerated
    from a plate (the user is in the plates scene) is made for, and imported into, the 3D scene."""
    owner = scene.get(OWNER_KEY)
    return owner if isinstance(owner, bpy.types.Scene) else scene


def follow(scene, edit):
    """Give the plates scene the 3D scene's frame range, frame rate, resolution and colour management."""
    edit.frame_start, edit.frame_end = scene.frame_start, scene.frame_end
    for attr in _FOLLOWED_RENDER:
        setattr(edit.render, attr, getattr(scene.render, attr))
    for attr in _FOLLOWED_VIEW:
        setattr(edit.view_settings, attr, getattr(scene.view_settings, attr))
    edit.display_settings.display_device = scene.display_settings.display_device
    edit.render.use_sequencer = True


def plates_scene(scene):
    """The plates scene of scene: found or created (once), brought in step with scene."""
    edit = find_plates_scene(scene)
    if edit is None:
        edit = bpy.data.scenes.new(plates_name(scene))
        edit[OWNER_KEY] = scene
    follow(scene, edit)
    if edit.sequence_editor is None:
        edit.sequence_editor_create()
    return edit


def find_scene_strip(edit, scene):
    return next(
        (s for s in compat.top_level_strips(edit.sequence_editor) if s.type == "SCENE" and s.scene == scene), None
    )


def scene_strip_above(edit, scene, channel):
    """The Scene strip of scene in edit, Alpha Over, above `channel`, covering scene's frame range.

    Moved up (or made) when the plate about to go on `channel` would be at or above it; re-made when
    the 3D scene's frame range changed since it was made.
    """
    strips = compat.top_level_strips(edit.sequence_editor)
    strip = find_scene_strip(edit, scene)
    length = scene.frame_end - scene.frame_start + 1
    floor = channel  # the new scene strip goes above this and every other strip
    if strip is not None and (strip.frame_final_start, strip.frame_final_duration) != (scene.frame_start, length):
        floor = max(channel, strip.channel - 1)  # re-made no lower than it was
        strips.remove(strip)
        strip = None
    top = max([s.channel for s in strips if s != strip] + [floor]) + 1
    if strip is None:
        strip = strips.new_scene(scene.name, scene, top, scene.frame_start)
        strip.scene_input = "CAMERA"
    elif strip.channel <= channel:
        strip.channel = top
    strip.blend_type = "ALPHA_OVER"
    return strip


def placement_note(scene, edit):
    """Where the strip went and how to see it — the user is in scene, whose own sequencer stays empty;
    when scene renders an opaque background it would hide the clip, so the note says how to fix that."""
    where = f"The clip is in the scene '{edit.name}', under the render of '{scene.name}'"
    if scene.render.film_transparent:
        return where + ": render that scene to see the 3D scene over the clip"
    return (
        where + f"; '{scene.name}' renders an opaque background that covers the clip: turn on Render "
        "Properties ▸ Film ▸ Transparent there to see the clip behind the 3D render"
    )
