"""Operators: generate (plan → validate → check the generator → depth → send → return at once), cancel,
check, open, seeds, the prompt schedule, and the generator environment (set up / repair / rebuild /
cancel, download, recent models).

Generate never waits for the model: it sends the job and returns {'FINISHED'}; jobs.poll (a timer)
follows the job and imports the result. Setting up the generator likewise returns at once;
environment.poll follows it. Operators only call other modules' functions; they write no module's state.
"""

import json
import os
import random
import time

import bpy

from ..zss_core import client as generator_client
from ..zss_core import defaults, presets
from . import (
    checks,
    compat,
    depth,
    environment,
    family,
    hints,
    importers,
    jobs,
    jobspec,
    preferences,
    restyle,
    staging,
)

SEED_MAX = 2**31 - 1  # IntProperty range
VALIDATION_ID = "validation"  # the job id of a plan that is only validated (nothing is written)


def _selected_mesh_names(context):
    return [o.name for o in (getattr(context, "selected_objects", None) or []) if o.type == "MESH"]


def plan_problems(scene, prefs, plan):
    """Every reason the plan cannot be sent, as (field, message) pairs; [] when it can go."""
    found = checks.problems(scene, prefs)
    covered = {field for field, _ in found} | checks.server_fields(prefs)
    return found + checks.job_problems(plan.job, covered=covered)


def validation_problems(context, overrides=None):
    """Every reason Generate would refuse, as (field, message) pairs; [] when it can go."""
    try:
        prefs = preferences.get(context)
    except LookupError as e:
        return [("addon", hints.message("addon", str(e).split(" — ")[0]))]
    plan = jobspec.plan(context, prefs, (), overrides=overrides, job_id=VALIDATION_ID)
    return plan_problems(context.scene, prefs, plan)


def _refuse(operator, messages):
    for message in messages:
        operator.report({"ERROR"}, message)
    return {"CANCELLED"}


def start_generation(context, operator, overrides=None, replace=None, scene=None, variants=None):
    """The body of zss.generate (also of Regenerate / Vary Seed, which replace the clip `replace` and may
    name the 3D scene a plate strip was made for, and of the operators that queue several jobs at once).

    variants: one (object names, job field overrides) pair per job to send; default one job for the
    selected meshes. A job sent while others run waits in the generator's queue.
    """
    try:
        prefs = preferences.get(context)
    except LookupError as e:
        return _refuse(operator, [hints.message("addon", str(e).split(" — ")[0])])
    scene = scene or context.scene
    here = scene == context.scene
    found = checks.problems(scene, prefs)
    if any(field == "output_dir" for field, _ in found):  # no folder to plan the job in
        return _refuse(operator, [message for _field, message in found])
    if variants is None:
        variants = [(_selected_mesh_names(context) if here else (), {})]
    plans = [
        jobspec.plan(
            context if here else scene,
            prefs,
            names,
            overrides={**(overrides or {}), **extra},
            replace=replace,
        )
        for names, extra in variants
    ]
    found += checks.job_problems(plans[0].job, covered={field for field, _ in found} | checks.server_fields(prefs))
    if found:
        return _refuse(operator, [message for _field, message in found])
    problem = None if preferences.uses_server(prefs) else environment.generator_problem(prefs)
    if problem:
        return _refuse(operator, [problem])
    view_layer = context.view_layer if here else scene.view_layers[0]
    for plan in plans:
        refused = _send(operator, prefs, scene, view_layer, plan)
        if refused:
            return refused
    job = plans[0].job
    ids = ", ".join(plan.id for plan in plans)
    count = f"{len(plans)} clips of " if len(plans) > 1 else ""
    operator.report({"INFO"}, f"Generating {count}{job['frames']} frames at {job['width']}×{job['height']} (job {ids})")
    return {"FINISHED"}


def _send(operator, prefs, scene, view_layer, plan):
    """Write the plan's restyle source frames and depth maps into its own staging folder and send it;
    None when sent, else the operator's {'CANCELLED'} after reporting why."""
    with staging.folder(plan) as folder:
        if plan.restyle is not None:
            try:
                plan = plan.with_init(restyle.read_source(scene, view_layer, plan.restyle))
            except (restyle.RestyleError, depth.DepthError, RuntimeError, OSError) as e:
                return _refuse(operator, [hints.message("restyle", f"Reading the restyle source failed: {e}")])
        if plan.depth is not None:
            try:
                images, _near_far = depth.render_depth_maps(
                    scene,
                    view_layer,
                    plan.depth.frame_start,
                    plan.depth.count,
                    plan.depth.width,
                    plan.depth.height,
                    folder.path,
                )
            except (depth.DepthError, RuntimeError, OSError) as e:  # bpy.ops.render raises RuntimeError
                return _refuse(operator, [hints.message("depth", f"Rendering depth maps failed: {e}")])
            plan = plan.with_control(images)
        if plan.depth is not None or plan.restyle is not None:  # the job now names the written files
            late = checks.job_problems(plan.job, covered=checks.server_fields(prefs))
            if late:
                return _refuse(operator, [message for _field, message in late])
        try:
            jobs.ensure_client(prefs)
            jobs.submit(plan, folder)
        except (generator_client.WorkerStartError, generator_client.WorkerNotRunning) as e:
            return _start_failed(operator, e)
    return None


def _start_failed(operator, error):
    """Report that the generator process could not be started (with what to do) and cancel."""
    operator.report({"ERROR"}, hints.message("worker_start", f"Could not start the generator: {error}"))
    return {"CANCELLED"}


class ZSS_OT_generate(bpy.types.Operator):
    """Generate a coherent clip for the frame range and import it when done"""

    bl_idname = "zss.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}

    def execute(self, context):
        return start_generation(context, self)


class ZSS_OT_generate_each(bpy.types.Operator):
    """Queue one clip per selected mesh, each imported onto its own object"""

    bl_idname = "zss.generate_each"
    bl_label = "Generate for Each Selected Object"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if not _selected_mesh_names(context):
            cls.poll_message_set("Select one or more mesh objects")
            return False
        return True

    def execute(self, context):
        names = _selected_mesh_names(context)
        if not names:
            self.report({"ERROR"}, "No mesh object is selected — select one or more meshes in the 3D View")
            return {"CANCELLED"}
        return start_generation(context, self, variants=[((name,), {}) for name in names])


SEED_ITEMS = (
    ("CONSECUTIVE", "Consecutive", "The scene's seed, then seed + 1, seed + 2, …"),
    ("RANDOM", "Random", "A new random seed for each clip"),
)


def variation_seeds(seed, count, mode, rng=random):
    """count distinct seeds: seed, seed+1, … (wrapping at SEED_MAX), or random ones."""
    if mode == "CONSECUTIVE":
        return [(seed + i) % (SEED_MAX + 1) for i in range(count)]
    seeds = []
    while len(seeds) < count:
        value = rng.randint(0, SEED_MAX)
        if value not in seeds:
            seeds.append(value)
    return seeds


class ZSS_OT_generate_variations(bpy.types.Operator):
    """Queue several clips that differ only in their seed; each is imported as its own material / strip"""

    bl_idname = "zss.generate_variations"
    bl_label = "Seed Variations"
    bl_options = {"REGISTER"}

    count: bpy.props.IntProperty(name="Clips", default=4, min=2, max=16, description="How many clips to queue")
    seeds: bpy.props.EnumProperty(name="Seeds", items=SEED_ITEMS, default="CONSECUTIVE")

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        names = _selected_mesh_names(context)
        seeds = variation_seeds(context.scene.zss.seed, self.count, self.seeds)
        return start_generation(context, self, variants=[(names, {"seed": seed}) for seed in seeds])


class ZSS_OT_cancel(bpy.types.Operator):
    """Stop the running clip (within one denoising step); nothing is imported. Queued clips go on"""

    bl_idname = "zss.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return jobs.is_running()

    def execute(self, context):
        jobs.cancel()
        return {"FINISHED"}


class ZSS_OT_cancel_job(bpy.types.Operator):
    """Stop this clip, or take it off the queue; nothing is imported"""

    bl_idname = "zss.cancel_job"
    bl_label = "Cancel Clip"
    bl_options = {"INTERNAL"}

    job_id: bpy.props.StringProperty(name="Job", options={"SKIP_SAVE"})

    def execute(self, context):
        if not jobs.cancel(self.job_id):
            self.report({"WARNING"}, f"Clip {self.job_id} is not running or queued any more")
            return {"CANCELLED"}
        return {"FINISHED"}


class ZSS_OT_check_generator(bpy.types.Operator):
    """Check the generator environment (every package it needs imports), start the generator and show its
    versions, device and GPU memory"""

    bl_idname = "zss.check_generator"
    bl_label = "Check Generator"

    timeout: bpy.props.FloatProperty(default=120.0, min=1.0, options={"SKIP_SAVE", "HIDDEN"})

    def execute(self, context):
        try:
            prefs = preferences.get(context)
        except LookupError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        if jobs.is_running() or jobs.download_running():  # never restart the worker under a running task
            ready = jobs.ready()
            self.report(
                {"INFO"}, jobs.ready_summary(ready) if ready else "The generator is busy starting a clip or download"
            )
            return {"FINISHED"}
        problem = checks.python_problem(prefs.python_path)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        python = jobspec.user_path(prefs.python_path)
        c = jobs.client()
        warm = c is not None and c.is_alive() and c.ready is not None and c.python_executable == python
        if not warm:  # a running generator proves its environment; otherwise check it first
            health = environment.check(prefs, python, timeout=max(self.timeout, 1.0))
            if not health.get("ok"):
                jobs.stop_worker()
                self.report({"ERROR"}, environment.health_problem(health))
                return {"CANCELLED"}
        try:
            ready = jobs.ensure_client(prefs).wait_ready(timeout=self.timeout)
        except generator_client.WorkerStartError as e:
            self.report({"ERROR"}, hints.message("worker_start", str(e)))
            return {"CANCELLED"}
        self.report({"INFO"}, jobs.ready_summary(ready))
        return {"FINISHED"}


class ZSS_OT_check_server(bpy.types.Operator):
    """Connect to the server in the preferences: show its version, GPUs and models (the Model field then
    offers their names)"""

    bl_idname = "zss.check_server"
    bl_label = "Check Server"

    timeout: bpy.props.FloatProperty(default=15.0, min=1.0, options={"SKIP_SAVE", "HIDDEN"})

    def execute(self, context):
        try:
            prefs = preferences.get(context)
        except LookupError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        problem = checks.server_problem(prefs)
        if not preferences.uses_server(prefs):
            problem = "Generator is set to This Computer — set it to A Server first, or press Check Generator"
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        try:
            summary = jobs.server_summary(*jobs.check_server(prefs, timeout=self.timeout))
        except generator_client.WorkerStartError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, summary)
        return {"FINISHED"}


class ZSS_OT_setup_generator(bpy.types.Operator):
    """Create (or repair) the generator environment — torch, diffusers and friends — in the add-on's
    folder, then point Generator Python at it. Downloads about 2–5 GB; runs in the background"""

    bl_idname = "zss.setup_generator"
    bl_label = "Set Up Generator"

    rebuild: bpy.props.BoolProperty(
        name="Rebuild",
        default=False,
        options={"SKIP_SAVE"},
        description="Delete the add-on's environment and install it again from scratch",
    )
    repair: bpy.props.BoolProperty(
        name="Repair",
        default=False,
        options={"SKIP_SAVE"},
        description="Install what is missing into the environment Generator Python belongs to",
    )

    def invoke(self, context, event):
        if self.rebuild:
            return context.window_manager.invoke_confirm(self, event)
        return self.execute(context)

    def execute(self, context):
        try:
            prefs = preferences.get(context)
            folder = environment.start(prefs, rebuild=self.rebuild, repair=self.repair)
        except (LookupError, environment.SetupRefused) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Setting up the generator in {folder} (progress in the add-on's preferences)")
        return {"FINISHED"}


class ZSS_OT_setup_cancel(bpy.types.Operator):
    """Stop setting up the generator (what was installed is kept; Set Up continues from there)"""

    bl_idname = "zss.setup_cancel"
    bl_label = "Cancel Setup"

    @classmethod
    def poll(cls, context):
        return environment.state.busy

    def execute(self, context):
        environment.cancel()
        return {"FINISHED"}


class ZSS_OT_download_model(bpy.types.Operator):
    """Download the hub model named in Model into the local cache now (the generator loads it from there,
    also with online access off later)"""

    bl_idname = "zss.download_model"
    bl_label = "Download"

    @classmethod
    def poll(cls, context):
        try:
            server = preferences.uses_server(preferences.get(context))
        except LookupError:
            server = False
        if server:
            cls.poll_message_set("The server has its own models (Check Server lists them)")
            return False
        if not preferences.online_access():
            cls.poll_message_set("Online access is off (Preferences ▸ System ▸ Network)")
            return False
        if jobs.download_running():
            cls.poll_message_set("A download is running")
            return False
        return True

    def execute(self, context):
        try:
            prefs = preferences.get(context)
        except LookupError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        model = prefs.model.strip()
        if not preferences.online_access():
            self.report({"ERROR"}, hints.message("download_offline", "Downloads are disabled: online access is off"))
            return {"CANCELLED"}
        if not preferences.is_hub_id(model):
            self.report({"ERROR"}, hints.message("download_not_hub", f"“{model}” is not a hub id"))
            return {"CANCELLED"}
        problem = checks.python_problem(prefs.python_path)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        task_id = "download-" + time.strftime("%Y%m%d-%H%M%S") + f"-{random.randrange(16**6):06x}"
        try:
            jobs.start_download(prefs, model, task_id)
        except (generator_client.WorkerStartError, generator_client.WorkerNotRunning) as e:
            return _start_failed(self, e)
        self.report({"INFO"}, f"Downloading {model} (progress in the add-on's preferences)")
        return {"FINISHED"}


class ZSS_OT_use_recent_model(bpy.types.Operator):
    """Use this model again"""

    bl_idname = "zss.use_recent_model"
    bl_label = "Use Recent Model"
    bl_options = {"INTERNAL"}

    model: bpy.props.StringProperty(name="Model", options={"SKIP_SAVE"})

    def execute(self, context):
        if not self.model:
            return {"CANCELLED"}
        preferences.get(context).model = self.model
        return {"FINISHED"}


class ZSS_OT_report(bpy.types.Operator):
    """Show a message in the status bar (used by the add-on's timers, which have no operator)"""

    bl_idname = "zss.report"
    bl_label = "ZS² Report"
    bl_options = {"INTERNAL"}

    kind: bpy.props.EnumProperty(
        items=(("INFO", "Info", ""), ("WARNING", "Warning", ""), ("ERROR", "Error", "")),
        default="INFO",
        options={"SKIP_SAVE"},
    )
    message: bpy.props.StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        self.report({self.kind}, self.message)
        return {"FINISHED"}


def _active_key(settings):
    index = settings.prompt_key_index
    return index if 0 <= index < len(settings.prompt_keys) else None


class ZSS_OT_prompt_key_add(bpy.types.Operator):
    """Add a prompt at the current frame (prompt travel: the clip moves towards it)"""

    bl_idname = "zss.prompt_key_add"
    bl_label = "Add Prompt Key"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        settings = scene.zss
        key = settings.prompt_keys.add()
        key.frame = scene.frame_current
        key.prompt = settings.prompt
        settings.prompt_key_index = len(settings.prompt_keys) - 1
        return {"FINISHED"}


class ZSS_OT_prompt_key_remove(bpy.types.Operator):
    """Remove the selected prompt key"""

    bl_idname = "zss.prompt_key_remove"
    bl_label = "Remove Prompt Key"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _active_key(context.scene.zss) is not None

    def execute(self, context):
        settings = context.scene.zss
        index = _active_key(settings)
        if index is None:
            return {"CANCELLED"}
        settings.prompt_keys.remove(index)
        settings.prompt_key_index = max(0, min(index, len(settings.prompt_keys) - 1))
        return {"FINISHED"}


class ZSS_OT_lora_add(bpy.types.Operator):
    """Add a LoRA (.safetensors) to the clip: a style or character on top of the model, weight 1"""

    bl_idname = "zss.lora_add"
    bl_label = "Add LoRA"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(
        name="LoRA File", subtype="FILE_PATH", options={"SKIP_SAVE", *compat.BLEND_RELATIVE_PATH}
    )
    filter_glob: bpy.props.StringProperty(default="*.safetensors", options={"HIDDEN"})  # the file browser's filter

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        settings = context.scene.zss
        path = self.filepath.strip()
        if path and not os.path.isdir(jobspec.user_path(path)) and not path.lower().endswith(".safetensors"):
            self.report(
                {"ERROR"}, hints.message("lora_file", f"LoRA: {os.path.basename(path)} is not a .safetensors file")
            )
            return {"CANCELLED"}
        row = settings.loras.add()
        row.filepath = path
        settings.lora_index = len(settings.loras) - 1
        return {"FINISHED"}


class ZSS_OT_lora_remove(bpy.types.Operator):
    """Remove the selected LoRA from the clip"""

    bl_idname = "zss.lora_remove"
    bl_label = "Remove LoRA"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return 0 <= context.scene.zss.lora_index < len(context.scene.zss.loras)

    def execute(self, context):
        settings = context.scene.zss
        index = settings.lora_index
        if not 0 <= index < len(settings.loras):
            return {"CANCELLED"}
        settings.loras.remove(index)
        settings.lora_index = max(0, min(index, len(settings.loras) - 1))
        return {"FINISHED"}


class ZSS_OT_prompt_key_move(bpy.types.Operator):
    """Move the selected prompt key up or down in the list (its frame decides when it plays)"""

    bl_idname = "zss.prompt_key_move"
    bl_label = "Move Prompt Key"
    bl_options = {"REGISTER", "UNDO"}

    direction: bpy.props.EnumProperty(items=(("UP", "Up", ""), ("DOWN", "Down", "")), default="UP")

    @classmethod
    def poll(cls, context):
        return _active_key(context.scene.zss) is not None

    def execute(self, context):
        settings = context.scene.zss
        index = _active_key(settings)
        if index is None:
            return {"CANCELLED"}
        target = index - 1 if self.direction == "UP" else index + 1
        if not 0 <= target < len(settings.prompt_keys):
            return {"CANCELLED"}
        settings.prompt_keys.move(index, target)
        settings.prompt_key_index = target
        return {"FINISHED"}


class ZSS_OT_open_output(bpy.types.Operator):
    """Open the last clip's folder (or the output folder) in the file browser"""

    bl_idname = "zss.open_output"
    bl_label = "Open Output Folder"

    def execute(self, context):
        task = jobs.job_task()
        folder = task.result["output_dir"] if task is not None else ""
        if not folder or not os.path.isdir(folder):
            folder = jobspec.output_root(preferences.get(context))
        if not folder or not os.path.isdir(folder):
            self.report({"ERROR"}, hints.message("no_output", "There is no output folder yet"))
            return {"CANCELLED"}
        bpy.ops.wm.path_open(filepath=folder)
        return {"FINISHED"}


class ZSS_OT_randomize_seed(bpy.types.Operator):
    """Pick a new random seed"""

    bl_idname = "zss.randomize_seed"
    bl_label = "Randomize Seed"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        context.scene.zss.seed = random.randint(0, SEED_MAX)
        return {"FINISHED"}


class ZSS_OT_use_family_size(bpy.types.Operator):
    """Set Width and Height to the size the model was made for (SDXL 1024×1024, SD 1.x 512×512, …)"""

    bl_idname = "zss.use_family_size"
    bl_label = "Use the Model's Size"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        try:
            found = family.model_family(preferences.get(context))
        except LookupError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if found is None or found.size is None:
            self.report(
                {"ERROR"},
                "The model's size is not known before it loads (a hub id, a server model or an unreadable "
                "file): set Width and Height by hand",
            )
            return {"CANCELLED"}
        settings = context.scene.zss
        settings.width = settings.height = found.size
        return {"FINISHED"}


def stored_source(context):
    """The datablock or strip holding a clip's parameters: the active strip in the sequencer, else the
    active object's material (or its clip image); None when there is none."""

    def from_strip():
        editor = context.scene.sequence_editor
        strip = editor.active_strip if editor else None
        return strip if strip is not None and "zss_job" in strip else None

    def from_object():
        material = getattr(context.object, "active_material", None) if context.object else None
        if material is None:
            return None
        if "zss_job" in material:
            return material
        for node in material.node_tree.nodes if material.node_tree else ():
            image = getattr(node, "image", None)
            if image is not None and "zss_job" in image:
                return image
        return None

    in_sequencer = getattr(context.space_data, "type", "") == "SEQUENCE_EDITOR"
    order = (from_strip, from_object) if in_sequencer else (from_object, from_strip)
    for find in order:
        source = find()
        if source is not None:
            return source
    return None


def _all_strips():
    for scene in bpy.data.scenes:
        editor = scene.sequence_editor
        if editor is not None:
            yield from compat.all_strips(editor)


def replace_target(source):
    """The stored clip's material and strip (found by its job id): Regenerate / Vary Seed replace them in
    place instead of piling up copies."""
    job_id = source.get("zss_job_id")
    material = next((m.name for m in bpy.data.materials if m.get("zss_job_id") == job_id), "")
    strip = next((s.name for s in _all_strips() if s.get("zss_job_id") == job_id), "")
    return jobspec.Replace(material=material, strip=strip)


def _style_loras(job):
    """A stored job's LoRAs as the panel's rows: without the draft LoRA, which a preset that takes one
    appended last (presets.expand) and adds again from the preferences. The clip itself is regenerated
    with every LoRA it had (apply_stored pins them)."""
    loras = list(job.get("loras") or ())
    preset = presets.PRESETS.get(presets.matching(job))
    return loras[:-1] if preset is not None and preset.lora and loras else loras


def apply_stored(scene, source, seed=None):
    """Copy a stored clip's settings into scene.zss; returns the job overrides that pin the exact
    per-frame λ/μ and models it was made with."""
    job = json.loads(source["zss_job"])
    _apply_restyle(scene, source, job)  # first: a missing source strip changes nothing else
    settings = scene.zss
    settings.prompt = job["prompt"]
    settings.negative_prompt = job.get("negative_prompt", "")
    settings.frames = job["frames"]
    settings.frame_start = int(source.get("zss_frame_start", settings.frame_start))
    settings.width, settings.height = job["width"], job["height"]
    settings.steps = job["steps"]
    settings.guidance = job["guidance"]
    settings.noise = job["noise"].upper()
    settings.chunk = jobspec.chunk_setting(job.get("chunk"))
    settings.cache_interval = int(job.get("cache_interval", 1))
    settings.seed = job["seed"] if seed is None else seed
    settings.loop = bool(job.get("loop"))
    settings.tile = importers.tile_setting(job)
    settings.prompt_interpolation = job.get("prompt_interpolation", "linear").upper()
    settings.prompt_keys.clear()
    for key in job.get("prompts") or ():
        row = settings.prompt_keys.add()
        row.frame = settings.frame_start + int(key["frame"])
        row.prompt = key["prompt"]
    settings.prompt_key_index = 0
    settings.loras.clear()
    for lora in _style_loras(job):
        row = settings.loras.add()
        row.filepath, row.weight = lora["path"], float(lora.get("weight", 1.0))
    settings.lora_index = 0
    settings.use_depth = job.get("control_scale") is not None
    if settings.use_depth:
        settings.control_scale = job["control_scale"]
    overrides = {"lam": job["lam"], "mu": job["mu"], "model": job["model"]}
    if job.get("controlnet_model"):
        overrides["controlnet_model"] = job["controlnet_model"]
    # A preset was expanded into the stored job: the panel shows it again (so the next Generate is alike), and
    # the clip's scheduler and LoRAs are pinned (they replace what the preset and the preferences would give).
    settings.preset = presets.matching(job).upper()
    overrides["scheduler"] = job.get("scheduler", defaults.SCHEDULERS[0])
    if job.get("loras"):
        overrides["loras"] = job["loras"]
    return overrides


def _apply_restyle(scene, source, job):
    """A restyled clip's source and strength back into scene.zss; a strip source becomes the active strip
    again (the one Generate restyles). Raises LookupError, changing nothing, when that strip is gone."""
    kind = source.get("zss_restyle_source", "NONE")  # NONE for clips made before Restyle existed
    strip = None
    if kind == "STRIP":
        name = source.get("zss_restyle_strip", "")
        editor = scene.sequence_editor
        strip = compat.top_level_strips(editor).get(name) if editor is not None and name else None
        if strip is None:
            raise LookupError(
                hints.message("restyle_gone", f"The strip '{name}' this clip restyled is gone from '{scene.name}'")
            )
        editor.active_strip = strip
    settings = scene.zss
    settings.restyle_source = kind
    if kind != "NONE":
        settings.strength = float(job.get("strength", settings.strength))


class _StoredClipOperator:
    @classmethod
    def poll(cls, context):
        if stored_source(context) is None:
            cls.poll_message_set("Select an object with a ZS² material or a ZS² strip")
            return False
        return True

    def new_seed(self, job_seed):
        return None

    def execute(self, context):
        source = stored_source(context)
        if source is None:
            self.report({"ERROR"}, hints.message("no_clip", "No ZS² clip is selected"))
            return {"CANCELLED"}
        scene = bpy.data.scenes.get(source.get("zss_scene", "")) or context.scene  # a plate's 3D scene
        try:
            overrides = apply_stored(scene, source, seed=self.new_seed(source.get("zss_seed", 0)))
        except LookupError as e:  # a restyled strip that is gone
            return _refuse(self, [str(e)])
        return start_generation(context, self, overrides=overrides, replace=replace_target(source), scene=scene)


class ZSS_OT_regenerate(_StoredClipOperator, bpy.types.Operator):
    """Generate the selected clip again with its stored settings (depth is re-rendered)"""

    bl_idname = "zss.regenerate"
    bl_label = "Regenerate"


class ZSS_OT_vary_seed(_StoredClipOperator, bpy.types.Operator):
    """Generate a variation of the selected clip: same settings, new seed"""

    bl_idname = "zss.vary_seed"
    bl_label = "Vary Seed"

    def new_seed(self, job_seed):
        seed = random.randint(0, SEED_MAX)
        return seed if seed != job_seed else (seed + 1) % (SEED_MAX + 1)


CLASSES = (
    ZSS_OT_generate,
    ZSS_OT_generate_each,
    ZSS_OT_generate_variations,
    ZSS_OT_cancel,
    ZSS_OT_cancel_job,
    ZSS_OT_check_generator,
    ZSS_OT_check_server,
    ZSS_OT_open_output,
    ZSS_OT_randomize_seed,
    ZSS_OT_use_family_size,
    ZSS_OT_regenerate,
    ZSS_OT_vary_seed,
    ZSS_OT_setup_generator,
    ZSS_OT_setup_cancel,
    ZSS_OT_download_model,
    ZSS_OT_use_recent_model,
    ZSS_OT_report,
    ZSS_OT_prompt_key_add,
    ZSS_OT_prompt_key_remove,
    ZSS_OT_prompt_key_move,
    ZSS_OT_lora_add,
    ZSS_OT_lora_remove,
)
