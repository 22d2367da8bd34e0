"""Panels cannot draw headless, so draw them into a recording stand-in for UILayout that checks every
property and operator they name exists."""

import pytest

pytestmark = pytest.mark.blender


class OperatorProperties:
    """What layout.operator returns: setting a property the operator does not have fails."""

    def __init__(self, idname, log):
        import bpy

        category, name = idname.split(".")
        object.__setattr__(self, "_rna", getattr(getattr(bpy.ops, category), name).get_rna_type())
        object.__setattr__(self, "_log", log)
        object.__setattr__(self, "_idname", idname)

    def __setattr__(self, name, value):
        assert name in self._rna.properties, f"{self._idname} has no property {name!r}"
        self._log.append(("operator_prop", self._idname, name, value))


class Layout:
    """Records what a draw function asks for; fails on unknown properties, operators, lists or menus."""

    def __init__(self, log, open_panels=True):
        self.log = log
        self.open_panels = open_panels

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)

    def _child(self, *args, **kwargs):
        return Layout(self.log, self.open_panels)

    column = row = box = split = _child

    def panel(self, idname, default_closed=False):
        self.log.append(("panel", idname))
        return Layout(self.log, self.open_panels), (Layout(self.log, self.open_panels) if self.open_panels else None)

    def template_list(self, list_type, list_id, data, propname, active_data, active_propname, **kwargs):
        import bpy

        assert hasattr(bpy.types, list_type), f"no UIList {list_type}"
        assert propname in data.bl_rna.properties and active_propname in active_data.bl_rna.properties
        self.log.append(("list", list_type, propname))

    def menu(self, menu, **kwargs):
        import bpy

        assert hasattr(bpy.types, menu), f"no menu {menu}"
        self.log.append(("menu", menu))

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        self.log.append(("prop", name))

    def operator(self, idname, **kwargs):
        import bpy

        category, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, category), name) and getattr(getattr(bpy.ops, category), name).idname()
        assert kwargs.get("icon_value", 0) >= 0
        self.log.append(("operator", idname))
        return OperatorProperties(idname, self.log)

    def label(self, text="", **kwargs):
        self.log.append(("label", text))

    def progress(self, factor=0.0, type="BAR", text=""):
        assert 0.0 <= factor <= 1.0
        self.log.append(("progress", text))

    def separator(self, **kwargs):
        pass

    def template_icon(self, icon_value=0, scale=1.0):
        import bpy

        parameters = bpy.types.UILayout.bl_rna.functions["template_icon"].parameters
        assert {"icon_value", "scale"} <= set(parameters.keys()) and icon_value >= 0 and scale > 0
        self.log.append(("template_icon", scale))


def draw(zb):
    import bpy

    log = []
    zb.panels.draw_zss(Layout(log), bpy.context)
    return log


def draw_preferences(zb, prefs):
    log = []
    holder = type("Holder", (), {})()  # AddonPreferences.layout only exists while Blender draws
    holder.layout = Layout(log)
    for name in prefs.bl_rna.properties.keys():  # noqa: SIM118 (an RNA collection, not a dict)
        if name not in ("rna_type", "bl_idname"):
            setattr(holder, name, getattr(prefs, name))
    holder.bl_rna = prefs.bl_rna
    type(prefs).draw(holder, None)
    return log


def test_idle_panel(zb, prefs):
    log = draw(zb)
    assert ("operator", "zss.generate") in log and ("operator", "zss.cancel") not in log
    assert ("prop", "lam") in log and ("prop", "mu") in log and ("prop", "prompt") in log
    assert any(kind == "label" and "frames from" in text for kind, text in log)  # resolved auto values
    assert zb.icons.loaded() == {"zss", "generate"}  # icon ids are 0 headless: no icon system


def test_running_and_error_panel(zb, prefs, monkeypatch):
    task = zb.tasks.Task("job", id="j")
    task.update("Sampling 4/10, about 12 s left", 0.4)
    monkeypatch.setattr(zb.jobs, "job_task", lambda: task)
    monkeypatch.setattr(zb.jobs, "is_running", lambda: True)
    log = draw(zb)
    assert ("operator", "zss.cancel") in log and ("progress", "Sampling 4/10, about 12 s left") in log
    monkeypatch.setattr(zb.jobs, "is_running", lambda: False)
    task.fail("The generator process stopped unexpectedly", "line one\nline two")
    log = draw(zb)
    assert ("label", "The generator process stopped unexpectedly") in log and ("label", "line two") in log
    assert not any(kind == "progress" for kind, *_ in log)


def test_schedule_section_and_notes(zb, prefs, monkeypatch):
    import bpy

    settings = bpy.context.scene.zss
    log = draw(zb)
    assert ("prop", "loop") in log and ("prop", "tile") in log
    assert ("list", "ZSS_UL_prompt_keys", "prompt_keys") in log
    assert ("operator_prop", "zss.prompt_key_move", "direction", "DOWN") in log
    assert ("prop", "prompt_interpolation") not in log  # only with keys
    bpy.ops.zss.prompt_key_add()
    task = zb.tasks.Task("job", id="j")
    task.finish(
        "Done in 1.0 s: 8 frames",
        result={"output_dir": "/x", "notes": ["Ran out of memory with 16 frames per chunk; finished with 8."]},
    )
    monkeypatch.setattr(zb.jobs, "job_task", lambda: task)
    log = draw(zb)
    assert ("prop", "prompt_interpolation") in log
    assert ("label", "Ran out of memory with 16 frames per chunk; finished with 8.") in log
    assert settings.chunk == -1 and any(k == "label" and "Auto" in t for k, t, *_ in log)

    # The list rows draw frame and prompt.
    rows = []
    zb.panels.ZSS_UL_prompt_keys.draw_item(
        None, bpy.context, Layout(rows), settings, settings.prompt_keys[0], 0, settings, "prompt_key_index", 0
    )
    assert rows == [("prop", "frame"), ("prop", "prompt")]


def test_preferences_draw(zb, prefs, monkeypatch):
    log = draw_preferences(zb, prefs)
    assert ("prop", "python_path") in log and ("operator", "zss.check_generator") in log
    assert ("operator", "zss.setup_generator") in log and ("menu", "ZSS_MT_recent_models") in log
    for name in (
        "allow_pickle",
        "attention_slicing",
        "vae_tiling",
        "cpu_offload",
        "generator_dir",
        "setup_python",
        "setup_torch_spec",
        "setup_pip_args",
    ):
        assert ("prop", name) in log, name
    assert ("operator", "zss.download_model") not in log  # 'tiny' is no hub id

    # A hub id offers Download; with online access off it explains why it cannot.
    prefs.model = "someone/some-model"
    monkeypatch.setattr(zb.preferences, "online_access", lambda: True)
    log = draw_preferences(zb, prefs)
    assert ("operator", "zss.download_model") in log
    monkeypatch.setattr(zb.preferences, "online_access", lambda: False)
    log = draw_preferences(zb, prefs)
    assert any(k == "label" and "Download needs online access" in t for k, t, *_ in log)

    # An empty Model and ControlNet say what they mean: the built-in models.
    prefs.model = prefs.controlnet_model = ""
    log = draw_preferences(zb, prefs)
    assert ("label", "Empty: the built-in texture model (builtin:textures)") in log
    assert ("label", "Empty: the model's own depth ControlNet (builtin:textures-depth)") in log

    # A broken environment offers Repair and Rebuild.
    zb.environment.state.health = {"ok": False, "missing": ["torch", "diffusers"], "problem": "x"}
    try:
        log = draw_preferences(zb, prefs)
    finally:
        zb.environment.state.__init__()
    assert ("operator_prop", "zss.setup_generator", "rebuild", True) in log
    assert any(k == "label" and "missing torch, diffusers" in t for k, t, *_ in log)


def test_recent_models_menu(zb, prefs):
    import bpy

    log = []
    menu = type("Menu", (), {})()
    menu.layout = Layout(log)
    zb.panels.ZSS_MT_recent_models.draw(menu, bpy.context)
    assert log == [("label", "No clip has finished yet")]
    for model in ("a/b", "/models/x.safetensors", "a/b"):
        zb.preferences.remember_model(prefs, model)
    log.clear()
    zb.panels.ZSS_MT_recent_models.draw(menu, bpy.context)
    assert [entry[3] for entry in log if entry[0] == "operator_prop"] == ["a/b", "/models/x.safetensors"]


def test_loop_with_a_schedule_says_it_wraps(zb, prefs):
    """Bug 5: a looping clip with a prompt schedule wraps its schedule too; the panel says so."""
    import bpy

    settings = bpy.context.scene.zss
    note = ("label", zb.panels.LOOP_SCHEDULE_NOTE)
    settings.loop = True
    assert note not in draw(zb)  # no schedule: nothing to wrap
    bpy.ops.zss.prompt_key_add()
    assert note in draw(zb)
    settings.loop = False
    assert note not in draw(zb)
    assert "last prompt blends back into the first" in zb.panels.LOOP_SCHEDULE_NOTE
