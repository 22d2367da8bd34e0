"""Blender extension entry point: the repository root is the extension, the add-on lives in zss_blender."""

from .zss_blender import register, unregister  # noqa: F401
