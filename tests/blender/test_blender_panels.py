"""Panels cannot draw headless, so draw them into a recording stand-in for UILayout that checks every
property and operator they name exists."""

import pytest

pytestmark = pytest.mark.blender


class Layout:
    """Records what a draw function asks for; fails on unknown properties or operators."""

    def __init__(self, log):
        self.log = log

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)

    def _child(self, *args, **kwargs):
        return Layout(self.log)

    column = row = box = split = _child

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        self.log.append(("prop", name))

    def operator(self, idname, **kwargs):
        import bpy

        category, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, category), name) and getattr(getattr(bpy.ops, category), name).idname()
        assert kwargs.get("icon_value", 0) >= 0
        self.log.append(("operator", idname))

    def label(self, text="", **kwargs):
        self.log.append(("label", text))

    def progress(self, factor=0.0, type='BAR', text=""):
        assert 0.0 <= factor <= 1.0
        self.log.append(("progress", text))

    def separator(self, **kwargs):
        pass


def draw(zb):
    import bpy

    log = []
    zb.panels.draw_zss(Layout(log), bpy.context)
    return log


def test_idle_panel(zb, prefs):
    log = draw(zb)
    assert ("operator", "zss.generate") in log and ("operator", "zss.cancel") not in log
    assert ("prop", "lam") in log and ("prop", "mu") in log and ("prop", "prompt") in log
    assert any(kind == "label" and "frames from" in text for kind, text in log)  # resolved auto values
    assert zb.icons.loaded() == {"zss", "generate"}  # icon ids are 0 headless: no icon system


def test_running_and_error_panel(zb, prefs, monkeypatch):
    state = zb.jobs.state
    monkeypatch.setattr(zb.jobs, "is_running", lambda: True)
    state.fraction, state.status = 0.4, "Denoising 4/10"
    log = draw(zb)
    assert ("operator", "zss.cancel") in log and ("progress", "Denoising 4/10") in log
    monkeypatch.setattr(zb.jobs, "is_running", lambda: False)
    state.error, state.hint = "The generator process stopped unexpectedly", "line one\nline two"
    log = draw(zb)
    assert ("label", "The generator process stopped unexpectedly") in log and ("label", "line two") in log


def test_preferences_draw(zb, prefs):
    log = []
    holder = type("Holder", (), {})()  # AddonPreferences.layout only exists while Blender draws
    holder.layout = Layout(log)
    for name in prefs.bl_rna.properties.keys():
        if name not in ("rna_type", "bl_idname"):
            setattr(holder, name, getattr(prefs, name))
    holder.bl_rna = prefs.bl_rna
    type(prefs).draw(holder, None)
    assert ("prop", "python_path") in log and ("operator", "zss.check_generator") in log
