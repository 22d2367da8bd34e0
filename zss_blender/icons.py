"""The add-on's own icons (icons/*.png), loaded once into a preview collection."""

import os

import bpy
import bpy.utils.previews

ICON_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "icons")
NAMES = ("zss", "generate")

_previews = None


def load():
    global _previews
    if _previews is not None:
        return
    _previews = bpy.utils.previews.new()
    for name in NAMES:
        path = os.path.join(ICON_DIR, name + ".png")
        if os.path.isfile(path):
            _previews.load(name, path, "IMAGE")


def unload():
    global _previews
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None


def icon(name):
    """icon_value for layout calls; 0 (no icon) if it is missing."""
    if _previews is None or name not in _previews:
        return 0
    return _previews[name].icon_id


def loaded():
    """Names of the icons that loaded (for tests: icon ids stay 0 in background mode)."""
    return set(_previews.keys()) if _previews is not None else set()
