"""The live preview of the running job: the latest `preview` event's PNG, for the panel to show.

The generator writes a small PNG every few denoising steps (zss_core/previews.py) and sends a `preview`
event naming it. jobs.poll() hands each one to `show`, which loads the file into a preview collection
(bpy.utils.previews: no datablock in the .blend, nothing left in a saved file) under one key, replacing
the previous picture; the panel draws it with `template_icon`. Loading happens once per event, never
while drawing, so a poll without a new preview costs nothing here. `unload` (unregister) removes the
collection.
"""

import dataclasses

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


def show(event):
    """Load the PNG a `preview` event names as the panel's picture; True when it changed.

    The previous picture is released first (a collection key is loaded once); force_reload makes
    Blender read the file again even if a picture of that path was loaded before.
    """
    global _shown
    if _collection is None:
        return False
    if KEY in _collection:
        del _collection[KEY]
    _collection.load(KEY, event.path, "IMAGE", force_reload=True)
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
