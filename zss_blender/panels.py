"""Sidebar panels (3D View and Sequencer) sharing one draw function, and the prompt schedule list;
drawing only, no logic."""

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

    _loop_tile_schedule(layout, settings)

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


def _section(layout, idname, title, default_closed=True):
    """A collapsible section (layout panels, Blender 4.1+), else a plain box; None when collapsed."""
    if hasattr(layout, "panel"):
        header, body = layout.panel(idname, default_closed=default_closed)
        header.label(text=title)
        return body
    box = layout.box()
    box.label(text=title)
    return box


def _loop_tile_schedule(layout, settings):
    body = _section(layout, "zss_loop_tile_schedule", "Loop, Tiling, Prompt Travel",
                    default_closed=not (settings.loop or settings.tile != 'NONE' or len(settings.prompt_keys)))
    if body is None:
        return
    col = body.column(align=True)
    col.use_property_split = True
    col.prop(settings, "loop")
    col.prop(settings, "tile")
    body.label(text="Prompt Schedule (empty: the Prompt for every frame)")
    row = body.row()
    row.template_list("ZSS_UL_prompt_keys", "", settings, "prompt_keys", settings, "prompt_key_index", rows=3)
    side = row.column(align=True)
    side.operator("zss.prompt_key_add", text="", icon='ADD')
    side.operator("zss.prompt_key_remove", text="", icon='REMOVE')
    side.separator()
    side.operator("zss.prompt_key_move", text="", icon='TRIA_UP').direction = 'UP'
    side.operator("zss.prompt_key_move", text="", icon='TRIA_DOWN').direction = 'DOWN'
    if len(settings.prompt_keys):
        col = body.column()
        col.use_property_split = True
        col.prop(settings, "prompt_interpolation")


class ZSS_UL_prompt_keys(bpy.types.UIList):
    """Prompt schedule rows: scene frame, prompt."""

    bl_idname = "ZSS_UL_prompt_keys"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.split(factor=0.25, align=True)
        row.prop(item, "frame", text="", emboss=False)
        row.prop(item, "prompt", text="", emboss=False)


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


CLASSES = (ZSS_UL_prompt_keys, ZSS_PT_main, ZSS_PT_sequencer)
