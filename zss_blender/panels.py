"""Sidebar panels (3D View and Sequencer) sharing one draw function, the prompt schedule list, the
recent models menu and the add-on preferences' layout; drawing only, no logic.

The panels read the tasks of jobs.py and environment.py and never write them. The registered
AddonPreferences class is made here from preferences.Properties plus this module's drawing, so
preferences.py needs no UI (and the import graph has no cycle).
"""

import bpy

from ..zss_core import defaults, presets
from . import environment, family, icons, jobs, jobspec, live_preview, preferences, restyle


def _progress(layout, fraction, text):
    layout.progress(factor=fraction, type="BAR", text=text)


def _status(layout, task, hint_lines=6, working="Working…"):
    """A task's progress bar while it runs, else its last message; its error and hint in red."""
    if task is None:
        return
    if task.running():
        _progress(layout, task.progress, task.message or working)
    elif task.message and not task.error:
        layout.label(text=task.message, icon="CHECKMARK" if task.status == "done" else "INFO")
    if task.error:
        alert = layout.column()
        alert.alert = True
        alert.label(text=task.error, icon="ERROR")
        for line in task.hint.splitlines()[:hint_lines]:
            alert.label(text=line)


def _resolved(layout, scene, settings):
    """Show what 'auto' frames and size resolve to."""
    frame_start, count = jobspec.frame_range(settings, scene)
    try:
        max_res = preferences.get().max_resolution
    except LookupError:
        max_res = 768
    width, height = jobspec.resolution(settings, scene, max_res)
    layout.label(text=f"{count} frames from {frame_start}, {width}×{height}", icon="INFO")


def _family_size(layout, context, settings):
    """The size the model was made for (its family's, read once per model: family.py caches it) and,
    when the clip is far from it, a warning with the button that sets it."""
    try:
        prefs = preferences.get(context)
    except LookupError:
        return
    found = family.model_family(prefs)
    if found is None or found.size is None:
        return
    size = found.size
    layout.label(text=f"{found.label} model: made for {size}×{size}", icon="INFO")
    width, height = jobspec.resolution(settings, context.scene, prefs.max_resolution)
    if found.far_from(width, height):
        row = layout.row(align=True)
        row.alert = True
        row.label(text=f"{width}×{height} is far from it", icon="ERROR")
        row.operator("zss.use_family_size", text=f"Use {size}×{size}")


def _draft_lora(context):
    """The Draft LoRA preference ("" when unset or the add-on's preferences are not there)."""
    try:
        return preferences.get(context).draft_lora.strip()
    except LookupError:
        return ""


def draw_zss(layout, context):
    """The whole ZS² UI: prompt, settings, generate/cancel, progress, last error, output."""
    scene = context.scene
    settings = scene.zss

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
    _family_size(layout, context, settings)
    _resolved(layout, scene, settings)
    _restyle(layout, scene, settings)

    col = layout.column(align=True)
    col.use_property_split = True
    col.prop(settings, "preset")
    preset = presets.PRESETS.get(settings.preset.lower())
    if preset is not None:
        col.label(text=f"{preset.label}: {preset.summary()}", icon="INFO")
        if preset.lora and not _draft_lora(context):
            col.label(text="No Draft LoRA set (Preferences): the model must be an LCM model", icon="ERROR")
    sub = col.column(align=True)
    sub.active = preset is None  # the preset replaces them
    sub.prop(settings, "steps")
    sub.prop(settings, "guidance")
    row = col.row(align=True)
    row.prop(settings, "seed")
    row.operator("zss.randomize_seed", text="", icon="FILE_REFRESH")
    col.prop(settings, "lam")
    col.prop(settings, "mu")
    col.prop(settings, "noise")
    col.prop(settings, "cache_interval")
    col.prop(settings, "chunk")
    if settings.chunk < 0:
        col.label(text="Chunk: Auto (what fits the GPU)", icon="INFO")

    _loop_tile_schedule(layout, settings)
    _loras(layout, settings)

    col = layout.column(align=True)
    col.use_property_split = True
    col.prop(settings, "use_depth")
    sub = col.column(align=True)
    sub.active = settings.use_depth
    sub.prop(settings, "control_scale")
    col.prop(settings, "target")
    if settings.target in {"MATERIAL", "BOTH"}:
        col.prop(settings, "use_emission")

    row = layout.row(align=True)
    row.scale_y = 1.4
    row.operator("zss.generate", text="Queue" if jobs.is_running() else "Generate", icon_value=icons.icon("generate"))
    if jobs.is_running():
        row.operator("zss.cancel", icon="CANCEL")
    row = layout.row(align=True)
    row.operator("zss.regenerate", icon="FILE_REFRESH")
    row.operator("zss.vary_seed", icon="MOD_NOISE")
    row = layout.row(align=True)
    row.operator("zss.generate_each", text="Each Selected", icon="OBJECT_DATA")
    row.operator("zss.generate_variations", text="Seed Variations", icon="SEQ_STRIP_DUPLICATE")

    task = jobs.job_task()
    _connection(layout)
    _queue(layout, jobs.job_tasks())
    _status(layout, task)
    _live_preview(layout)
    if task is not None and task.status == "done":
        for note in task.result["notes"]:
            layout.label(text=note, icon="INFO")
    layout.operator("zss.open_output", icon="FILE_FOLDER")


RESTYLE_STRIP_NOTE = "Import As Strip or Both puts the result above the source strip"


def _restyle(layout, scene, settings):
    """Restyle source and strength; for a strip source, which strip (or why none can be used)."""
    col = layout.column(align=True)
    col.use_property_split = True
    col.prop(settings, "restyle_source")
    if settings.restyle_source == "NONE":
        return
    col.prop(settings, "strength", slider=True)
    if settings.restyle_source != "STRIP":
        return
    problem = restyle.strip_problem(scene)
    if problem:
        alert = layout.column()
        alert.alert = True
        alert.label(text=problem, icon="ERROR")
        return
    strip = restyle.source_strip(scene)
    start, count = restyle.strip_range(strip)
    layout.label(text=f"Strip '{strip.name}': {count} frames from {start}", icon="SEQUENCE")
    if settings.target == "MATERIAL":
        layout.label(text=RESTYLE_STRIP_NOTE, icon="INFO")


PREVIEW_SCALE = 8.0  # the live preview's size in the panel, in icon units


def _live_preview(layout):
    """The running job's latest preview (the generator's `preview` events), while it runs."""
    shown, image = live_preview.shown(), live_preview.image()
    if shown is None or image is None or not jobs.is_running():
        return
    box = layout.box()
    box.label(text=f"Preview: frame {shown.frame + 1}, step {shown.step}/{shown.steps}", icon="IMAGE_DATA")
    box.template_icon(icon_value=image.icon_id, scale=PREVIEW_SCALE)


STATE_ICONS = {"pending": "TIME", "running": "PLAY", "done": "CHECKMARK", "failed": "ERROR", "cancelled": "X"}


def _queue(layout, queued):
    """The queue, while it holds more than one job: each job's id, state and a cancel button."""
    if len(queued) < 2:
        return
    box = layout.box()
    box.label(text=f"Queue ({sum(task.running() for task in queued)} of {len(queued)} to go)", icon="PRESET")
    for task in queued:
        row = box.row(align=True)
        text = f"{task.id}: {task.message or task.status}"
        if task.running():
            _progress(row, task.progress, text)
            row.operator("zss.cancel_job", text="", icon="X").job_id = task.id
        else:
            row.label(text=text, icon=STATE_ICONS[task.status])


def _connection(layout):
    """ "Server unreachable, retrying" while the generator's connection is down."""
    problem = jobs.connection_problem()
    if problem:
        alert = layout.column()
        alert.alert = True
        alert.label(text=problem, icon="URL")


LOOP_SCHEDULE_NOTE = "The schedule wraps: the last prompt blends back into the first"


def _section(layout, idname, title, default_closed=True):
    """A collapsible section (a layout panel); None when collapsed."""
    header, body = layout.panel(idname, default_closed=default_closed)
    header.label(text=title)
    return body


def _loop_tile_schedule(layout, settings):
    body = _section(
        layout,
        "zss_loop_tile_schedule",
        "Loop, Tiling, Prompt Travel",
        default_closed=not (settings.loop or settings.tile != "NONE" or len(settings.prompt_keys)),
    )
    if body is None:
        return
    col = body.column(align=True)
    col.use_property_split = True
    col.prop(settings, "loop")
    if settings.loop and len(settings.prompt_keys):
        col.label(text=LOOP_SCHEDULE_NOTE, icon="INFO")
    col.prop(settings, "tile")
    body.label(text="Prompt Schedule (empty: the Prompt for every frame)")
    row = body.row()
    row.template_list("ZSS_UL_prompt_keys", "", settings, "prompt_keys", settings, "prompt_key_index", rows=3)
    side = row.column(align=True)
    side.operator("zss.prompt_key_add", text="", icon="ADD")
    side.operator("zss.prompt_key_remove", text="", icon="REMOVE")
    side.separator()
    side.operator("zss.prompt_key_move", text="", icon="TRIA_UP").direction = "UP"
    side.operator("zss.prompt_key_move", text="", icon="TRIA_DOWN").direction = "DOWN"
    if len(settings.prompt_keys):
        col = body.column()
        col.use_property_split = True
        col.prop(settings, "prompt_interpolation")


def _loras(layout, settings):
    body = _section(layout, "zss_loras", "LoRAs", default_closed=not len(settings.loras))
    if body is None:
        return
    row = body.row()
    row.template_list("ZSS_UL_loras", "", settings, "loras", settings, "lora_index", rows=2)
    side = row.column(align=True)
    side.operator("zss.lora_add", text="", icon="ADD")
    side.operator("zss.lora_remove", text="", icon="REMOVE")


class ZSS_UL_loras(bpy.types.UIList):
    """LoRA rows: file, weight."""

    bl_idname = "ZSS_UL_loras"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.split(factor=0.7, align=True)
        row.prop(item, "filepath", text="")
        row.prop(item, "weight", text="")


class ZSS_UL_prompt_keys(bpy.types.UIList):
    """Prompt schedule rows: scene frame, prompt."""

    bl_idname = "ZSS_UL_prompt_keys"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.split(factor=0.25, align=True)
        row.prop(item, "frame", text="", emboss=False)
        row.prop(item, "prompt", text="", emboss=False)


class ZSS_MT_recent_models(bpy.types.Menu):
    """Models that finished a clip, newest first"""

    bl_idname = "ZSS_MT_recent_models"
    bl_label = "Recent Models"

    def draw(self, context):
        models = preferences.recent_models(preferences.get(context))
        if not models:
            self.layout.label(text="No clip has finished yet")
        for model in models:
            self.layout.operator("zss.use_recent_model", text=model).model = model


def _setup_status(layout, setup):
    """Progress, the last log lines and the outcome of Set Up / Repair / Rebuild."""
    task = setup.task
    if task is None:
        return
    if task.running():
        row = layout.row(align=True)
        _progress(row, task.progress, task.message or "Working…")
        row.operator("zss.setup_cancel", text="", icon="CANCEL")
    elif task.message and not task.error:
        layout.label(text=task.message, icon="CHECKMARK" if task.status == "done" else "INFO")
    if task.error:
        box = layout.box()
        box.alert = True
        box.label(text=task.error, icon="ERROR")
    if setup.log and (task.running() or task.error):
        box = layout.box()
        col = box.column(align=True)
        col.scale_y = 0.7
        for line in setup.log:
            col.label(text=line)


def _server(box, prefs):
    """Generator: A Server — URL, token, certificate, Check Server and what the last check found."""
    col = box.column()
    col.prop(prefs, "server_url")
    col.prop(prefs, "server_token")
    if not prefs.server_token.strip():
        col.label(
            text=f"Empty: the {preferences.TOKEN_ENV} environment variable"
            + (" (set)" if preferences.server_token(prefs) else " (not set)"),
            icon="INFO",
        )
    col.prop(prefs, "server_cafile")
    box.operator("zss.check_server", icon="URL")
    status = jobs.server_status()
    names = preferences.server_model_names(prefs)
    if status:
        box.label(text=status, icon="CHECKMARK")
    elif names:
        box.label(text=f"Models on the server: {', '.join(names)}", icon="CHECKMARK")
    problem = jobs.connection_problem()
    if problem:
        alert = box.column()
        alert.alert = True
        alert.label(text=problem, icon="ERROR")


def _generator(layout, prefs):
    setup = environment.state
    online = preferences.online_access()
    box = layout.box()
    box.label(text="Generator", icon="CONSOLE")
    box.prop(prefs, "generator", expand=True)
    if preferences.uses_server(prefs):
        _server(box, prefs)
        return
    col = box.column()
    col.prop(prefs, "python_path")
    row = box.row(align=True)
    sub = row.row(align=True)
    sub.enabled = online and not setup.busy
    sub.operator("zss.setup_generator", icon="IMPORT")
    row.operator("zss.check_generator", icon="CHECKMARK")
    if not online:
        box.label(text="Online access is off (Preferences ▸ System ▸ Network): Set Up cannot download", icon="INFO")
    if setup.broken and not setup.busy:
        alert = box.column()
        alert.alert = True
        alert.label(text=environment.health_problem(setup.health), icon="ERROR")
        row = box.row(align=True)
        row.enabled = online
        row.operator("zss.setup_generator", text="Repair", icon="TOOL_SETTINGS").repair = True
        row.operator("zss.setup_generator", text="Rebuild", icon="FILE_REFRESH").rebuild = True
    _setup_status(box, setup)
    options = _section(box, "zss_setup_options", "Setup Options")
    if options is not None:
        col = options.column()
        col.prop(prefs, "generator_dir")
        if not prefs.generator_dir.strip():
            col.label(text=f"Default: {environment.default_directory()}")
        col.prop(prefs, "setup_python")
        col.prop(prefs, "setup_torch_spec")
        col.prop(prefs, "setup_pip_args")


def _model(layout, prefs):
    online = preferences.online_access()
    box = layout.box()
    box.label(text="Model", icon="FILE_3D")
    row = box.row(align=True)
    row.prop(prefs, "model")
    row.menu("ZSS_MT_recent_models", text="", icon="TIME")
    if preferences.uses_server(prefs):  # a name from the server's models.toml; it brings its ControlNet
        if not prefs.model.strip():
            box.label(text=f"Empty: the server's {preferences.SERVER_DEFAULT_MODEL} model", icon="INFO")
        return
    if preferences.is_hub_id(prefs.model):
        row = box.row(align=True)
        row.enabled = online and not jobs.download_running()
        row.operator("zss.download_model", icon="IMPORT")
        if not online:
            box.label(text="Download needs online access (Preferences ▸ System ▸ Network)", icon="INFO")
    if not prefs.model.strip():
        box.label(text=f"Empty: the built-in texture model ({defaults.DEFAULT_MODEL})", icon="INFO")
    _status(box, jobs.download_task(), hint_lines=4, working="Downloading…")
    box.prop(prefs, "controlnet_model")
    if not prefs.controlnet_model.strip():
        builtin = jobspec.controlnet_setting(prefs)
        box.label(
            text=f"Empty: the model's own depth ControlNet ({builtin})"
            if builtin
            else "Empty: this model has no built-in depth ControlNet; set one for Depth Control",
            icon="INFO",
        )
    box.prop(prefs, "draft_lora")
    box.prop(prefs, "allow_pickle")


def draw_preferences(layout, prefs):
    """The add-on preferences: generator environment, model, memory, output."""
    layout.use_property_split = True
    _generator(layout, prefs)
    _model(layout, prefs)
    box = layout.box()
    box.label(text="Device and Memory", icon="MEMORY")
    col = box.column()
    col.prop(prefs, "device")
    col.prop(prefs, "precision")
    col.prop(prefs, "attention_slicing")
    col.prop(prefs, "vae_tiling")
    col.prop(prefs, "fast_gpu")
    col.prop(prefs, "cpu_offload")
    box = layout.box()
    box.label(text="Output", icon="FILE_FOLDER")
    col = box.column()
    col.prop(prefs, "output_dir")
    col.prop(prefs, "max_resolution")
    col.prop(prefs, "strip_source")


class ZSSPreferences(preferences.Properties, bpy.types.AddonPreferences):
    """The generator runs in its own Python (with torch): Blender's Python has none."""

    bl_idname = preferences.ADDON_ID

    def draw(self, context):
        draw_preferences(self.layout, self)


class _ZSSPanel:
    bl_region_type = "UI"
    bl_category = "ZS²"
    bl_label = "ZS² Video"

    def draw_header(self, context):
        self.layout.label(text="", icon_value=icons.icon("zss"))

    def draw(self, context):
        draw_zss(self.layout, context)


class ZSS_PT_main(_ZSSPanel, bpy.types.Panel):
    bl_idname = "ZSS_PT_main"
    bl_space_type = "VIEW_3D"


class ZSS_PT_sequencer(_ZSSPanel, bpy.types.Panel):
    bl_idname = "ZSS_PT_sequencer"
    bl_space_type = "SEQUENCE_EDITOR"


CLASSES = (ZSSPreferences, ZSS_UL_prompt_keys, ZSS_UL_loras, ZSS_MT_recent_models, ZSS_PT_main, ZSS_PT_sequencer)
