"""Sidebar panels (3D View and Sequencer) sharing one draw function; drawing only, no logic."""

import bpy

from . import icons, jobs, jobspec, preferences


def _progress(layout, fraction, text):
    if hasattr(layout, "progress"):  # Blender 4.0+
        layout.progress(factor=fraction, type='BAR', text=text)
    else:
        layout.label(text=f"{text} ({fraction:.0%})")


def _resolved(layout, scene, settings):
    """Show what 'auto' frames and size resolve to."""
    frame_start, count = jobspec.frame_range(settings, scene)
    try:
        max_res = preferences.get().max_resolution
    except LookupError:
        max_res = 768
    width, height = jobspec.resolution(settings, scene, max_res)
    layout.label(text=f"{count} frames from {frame_start}, {width}×{height}", icon='INFO')


def draw_zss(layout, context):
    """The whole ZS² UI: prompt, settings, generate/cancel, progress, last error, output."""
    scene = context.scene
    settings = scene.zss
    state = jobs.state

    col = layout.column()
    col.label(text="Prompt")
    col.prop(settings, "prompt", text="")
    col.label(text="Negative Prompt")
    col.prop(settings, "negative_prompt", text="")

    col = layout.column(align=True)
    col.use_property_split = True
    col.use_property_decorate = True  # λ/μ show their keyframe dot
    col.prop(settings, "frames")
    if settings.frames:
        col.prop(settings, "frame_start")
    col.prop(settings, "width")
    col.prop(settings, "height")
    _resolved(layout, scene, settings)

    col = layout.column(align=True)
    col.use_property_split = True
    col.prop(settings, "steps")
    col.prop(settings, "guidance")
    row = col.row(align=True)
    row.prop(settings, "seed")
    row.operator("zss.randomize_seed", text="", icon='FILE_REFRESH')
    col.prop(settings, "lam")
    col.prop(settings, "mu")
    col.prop(settings, "noise")
    col.prop(settings, "chunk")

    col = layout.column(align=True)
    col.use_property_split = True
    col.prop(settings, "use_depth")
    sub = col.column(align=True)
    sub.active = settings.use_depth
    sub.prop(settings, "control_scale")
    col.prop(settings, "target")
    if settings.target in {'MATERIAL', 'BOTH'}:
        col.prop(settings, "use_emission")

    row = layout.row(align=True)
    row.scale_y = 1.4
    if jobs.is_running():
        row.operator("zss.cancel", icon='CANCEL')
    else:
        row.operator("zss.generate", icon_value=icons.icon("generate"))
    row = layout.row(align=True)
    row.operator("zss.regenerate", icon='FILE_REFRESH')
    row.operator("zss.vary_seed", icon='MOD_NOISE')

    if jobs.is_running():
        _progress(layout, state.fraction, state.status or "Working…")
    elif state.status and not state.error:
        layout.label(text=state.status, icon='CHECKMARK')
    if state.error:
        box = layout.box()
        box.alert = True
        box.label(text=state.error, icon='ERROR')
        for line in state.hint.splitlines()[:6]:
            box.label(text=line)
    layout.operator("zss.open_output", icon='FILE_FOLDER')


class _ZSSPanel:
    bl_region_type = 'UI'
    bl_category = "ZS²"
    bl_label = "ZS² Video"

    def draw_header(self, context):
        self.layout.label(text="", icon_value=icons.icon("zss"))

    def draw(self, context):
        draw_zss(self.layout, context)


class ZSS_PT_main(_ZSSPanel, bpy.types.Panel):
    bl_idname = "ZSS_PT_main"
    bl_space_type = 'VIEW_3D'


class ZSS_PT_sequencer(_ZSSPanel, bpy.types.Panel):
    bl_idname = "ZSS_PT_sequencer"
    bl_space_type = 'SEQUENCE_EDITOR'


CLASSES = (ZSS_PT_main, ZSS_PT_sequencer)
