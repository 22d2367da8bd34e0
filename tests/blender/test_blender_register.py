"""Disabling the add-on removes everything it registered (timer and worker included); enabling restores it."""

import pytest

pytestmark = pytest.mark.blender

NAMES = ("ZSS_OT_generate", "ZSS_OT_cancel", "ZSS_OT_check_generator", "ZSS_OT_open_output",
         "ZSS_OT_randomize_seed", "ZSS_OT_regenerate", "ZSS_OT_vary_seed", "ZSS_OT_setup_generator",
         "ZSS_OT_setup_cancel", "ZSS_OT_download_model", "ZSS_OT_use_recent_model", "ZSS_OT_report",
         "ZSS_OT_prompt_key_add", "ZSS_OT_prompt_key_remove", "ZSS_OT_prompt_key_move", "ZSS_UL_prompt_keys",
         "ZSS_MT_recent_models", "ZSS_PT_main", "ZSS_PT_sequencer")


def test_disable_and_enable_again(zb, addon):
    import addon_utils
    import bpy

    jobs = zb.jobs
    environment = zb.environment
    jobs.start_timer()
    environment._start_timer()
    assert bpy.app.timers.is_registered(jobs.poll) and bpy.app.timers.is_registered(environment.poll)
    addon_utils.disable(addon.__name__, default_set=True)
    try:
        assert not hasattr(bpy.types.Scene, "zss")
        assert not [name for name in NAMES if hasattr(bpy.types, name)]
        assert not bpy.app.timers.is_registered(jobs.poll)
        assert not bpy.app.timers.is_registered(environment.poll)
        assert jobs.client() is None and not zb.icons.loaded()
        assert not zb.properties.ZSSSceneSettings.is_registered and not zb.properties.ZSSPromptKey.is_registered
        assert not zb.preferences.ZSSPreferences.is_registered
    finally:
        addon_utils.enable(addon.__name__, default_set=True)
    assert all(hasattr(bpy.types, name) for name in NAMES)
    assert bpy.context.scene.zss.steps == 30 and zb.preferences.ZSSPreferences.is_registered
