"""The live preview of the running job: the latest `preview` event's PNG, for the panel to show.

The generator writes a small PNG every few denoising steps (zss_core/previews.py) and sends a `preview`
event naming it. jobs.poll() hands each one to `show`, which copies the PNG's pixels into an image of a
preview collection (bpy.utils.previews: no datablock in the .blend, nothing left in a saved file),
replacing the previous picture; the panel draws it with `template_icon`. Loading happens once per event,
never while drawing, so a poll without a new preview costs nothing here. `unload` (unregister) removes
the collection.

The pixels are copied rather than loaded with `collection.load(path)`: that goes through Blender's
thumbnail cache, which writes a thumbnail of every preview into the user's ~/.cache/thumbnails and
keys it on the file's modification time in whole seconds (a file rewritten within a second shows stale).
"""

import array
import dataclasses
import sys

import bpy
import bpy.utils.previews

KEY = "latest"

_collection = None  # the ImagePreviewCollection while the add-on is registered
_shown = None  # the Shown of the picture in the collection, or None


@dataclasses.dataclass(frozen=True)
class Shown:
    """What the panel's preview is: which job, after which step, from which file."""

    job_id: str
    step: int
    steps: int
    frame: int
    path: str


def load():
    """Create the preview collection (register)."""
    global _collection
    if _collection is None:
        _collection = bpy.utils.previews.new()


def unload():
    """Remove the preview collection and forget the picture (unregister)."""
    global _collection, _shown
    if _collection is not None:
        bpy.utils.previews.remove(_collection)
    _collection, _shown = None, None


def read_pixels(path):
    """(width, height, RGBA floats bottom-up) of an image file, read through a temporary image datablock
    that is removed at once. Raises RuntimeError when Blender cannot read the file."""
    image = bpy.data.images.load(path, check_existing=False)
    try:
        width, height = image.size
        pixels = array.array("f", bytes(4 * 4 * width * height))
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return width, height, pixels


def show(event):
    """Make the PNG a `preview` event names the panel's picture; True when it changed, False when there
    is no collection (unregistered) or the file cannot be read (a later preview follows)."""
    global _shown
    if _collection is None:
        return False
    try:
        width, height, pixels = read_pixels(event.path)
    except RuntimeError as e:  # gone or cut short: the picture stays as it was
        print(f"ZS²: cannot read the preview {event.path}: {e}", file=sys.stderr)
        return False
    preview = _collection.get(KEY) or _collection.new(KEY)
    preview.image_size = preview.icon_size = (width, height)
    preview.image_pixels_float.foreach_set(pixels)
    preview.icon_pixels_float.foreach_set(pixels)
    _shown = Shown(event.id, event.step, event.steps, event.frame, event.path)
    return True


def clear(job_id=None):
    """Forget the picture (of `job_id` only, when given): its job ended."""
    global _shown
    if _shown is None or (job_id is not None and _shown.job_id != job_id):
        return
    if _collection is not None and KEY in _collection:
        del _collection[KEY]
    _shown = None


def shown():
    """The Shown of the current picture, or None."""
    return _shown


def image():
    """The ImagePreview of the current picture (icon_id for the panel, image_size), or None."""
    if _shown is None or _collection is None:
        return None
    return _collection.get(KEY)


def loaded():
    """Whether the preview collection exists (between register and unregister)."""
    return _collection is not None
