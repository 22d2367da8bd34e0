"""Blender extension entry point: the repository root is the extension, the add-on lives in zss_blender.

zss_blender imports bpy, so it is imported only when Blender calls register()/unregister(): importing
this package (pytest does, because the repository root is a package) must work where no bpy is
installed, e.g. on a GPU server that runs only the engine and its tests.
"""


def register():
    from . import zss_blender

    zss_blender.register()


def unregister():
    from . import zss_blender

    zss_blender.unregister()
