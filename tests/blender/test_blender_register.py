"""Disabling the add-on removes everything it registered (timers and worker included); enabling restores it.

The classes come from the add-on itself (zss_blender.CLASSES, built from each module's CLASSES), so a
class added to a module is checked without touching this test.
"""

import pytest

pytestmark = pytest.mark.blender


def test_every_module_class_is_registered(zb):
    import inspect

    import bpy

    listed = set(zb.CLASSES)
    for module in (zb.properties, zb.operators, zb.panels):
        assert set(module.CLASSES) <= listed
        defined = {
            cls
            for _name, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == module.__name__
            and issubclass(cls, bpy.types.bpy_struct)
            and hasattr(cls, "bl_rna")
            and not cls.__name__.startswith("_")
        }
        assert defined <= listed, f"{module.__name__} defines classes it does not register: {defined - listed}"
    assert all(cls.is_registered for cls in zb.CLASSES)


def test_disable_and_enable_again(zb, addon):
    import addon_utils
    import bpy

    jobs = zb.jobs
    environment = zb.environment
    names = [cls.__name__ for cls in zb.CLASSES if cls.__name__.startswith("ZSS_")]  # UI types: in bpy.types
    assert "ZSS_OT_generate" in names and "ZSS_PT_main" in names and len(names) >= 19
    jobs.start_timer()
    environment.start_timer()
    assert bpy.app.timers.is_registered(jobs.poll) and bpy.app.timers.is_registered(environment.poll)
    addon_utils.disable(addon.__name__, default_set=True)
    try:
        assert not hasattr(bpy.types.Scene, "zss")
        assert not [cls for cls in zb.CLASSES if cls.is_registered]
        assert not [name for name in names if hasattr(bpy.types, name)]
        assert not bpy.app.timers.is_registered(jobs.poll)
        assert not bpy.app.timers.is_registered(environment.poll)
        assert jobs.client() is None and not zb.icons.loaded()
    finally:
        addon_utils.enable(addon.__name__, default_set=True)
    assert all(cls.is_registered for cls in zb.CLASSES)
    assert all(hasattr(bpy.types, name) for name in names)
    assert bpy.context.scene.zss.steps == 30 and zb.preferences.get().bl_rna.properties.get("python_path")
