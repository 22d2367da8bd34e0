"""ZS² Video Textures: registration only; each module does one job (see README ▸ Layout).

Blender never imports torch: the generator runs in its own Python, started by jobs.py through
zss_core.client. The registered classes are each module's CLASSES, in registration order.
"""

import atexit

import bpy

from . import environment, icons, jobs, live_preview, operators, panels, properties

CLASSES = (*properties.CLASSES, *operators.CLASSES, *panels.CLASSES)


def register():
    icons.load()
    live_preview.load()
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    properties.register()
    atexit.register(jobs.stop_worker)  # Blender quitting must not leave the generator running
    atexit.register(environment.stop_process)  # nor a half-done setup (pip) behind


def unregister():
    atexit.unregister(environment.stop_process)
    atexit.unregister(jobs.stop_worker)
    environment.shutdown()  # setup timer and process
    jobs.shutdown()  # timer and worker
    properties.unregister()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    live_preview.unload()
    icons.unload()
