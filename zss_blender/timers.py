"""The two bits of UI plumbing every poller needs: a persistent timer and a redraw of some areas.

Callers pass the same function object to ``start`` and ``stop`` (Blender compares identity).
"""

import bpy


def start(callback, interval):
    """Register ``callback`` as a persistent timer unless it already is."""
    if not bpy.app.timers.is_registered(callback):
        bpy.app.timers.register(callback, first_interval=interval, persistent=True)


def stop(callback):
    if bpy.app.timers.is_registered(callback):
        bpy.app.timers.unregister(callback)


def redraw(area_types):
    """Tag every open area of the given types for redraw (none exist in background mode)."""
    for wm in bpy.data.window_managers:
        for window in wm.windows:
            for area in window.screen.areas if window.screen else ():
                if area.type in area_types:
                    area.tag_redraw()
