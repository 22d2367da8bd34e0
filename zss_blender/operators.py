"""Operators: generate (validate → depth → send → return at once), cancel, check, open, seeds, and the
prompt schedule's list (add / remove / move).

Generate never waits for the model: it sends the job and returns {'FINISHED'}; jobs.poll (a timer)
follows the job and imports the result.
"""

import json
import os
import random

import bpy

from ..zss_core import client as worker_client
from . import checks, depth, importers, jobs, jobspec, preferences

SEED_MAX = 2**31 - 1  # IntProperty range


def validation_problems(context, overrides=None):
    """Every reason Generate would refuse, as (field, message) pairs; [] when it can go."""
    scene = context.scene
    try:
        prefs = preferences.get(context)
    except LookupError as e:
        return [("addon", str(e))]
    found = checks.problems(scene, prefs)
    root = jobspec.output_root(prefs) or ""
    job = jobspec.build(scene, prefs, "validation", root, overrides=overrides)
    return found + checks.job_problems(job, covered={field for field, _ in found})


def _selected_mesh_names(context):
    return [o.name for o in (getattr(context, "selected_objects", None) or []) if o.type == 'MESH']


def start_generation(context, operator, overrides=None):
    """The body of zss.generate (also used by regenerate / vary seed)."""
    found = validation_problems(context, overrides)
    if found:
        for _field, message in found:
            operator.report({'ERROR'}, message)
        return {'CANCELLED'}

    scene = context.scene
    settings = scene.zss
    prefs = preferences.get(context)
    root = jobspec.output_root(prefs)
    job_id = jobspec.new_job_id(root)
    staging = jobspec.staging_dir(root, job_id)
    job = jobspec.build(scene, prefs, job_id, root, overrides=overrides)
    frame_start, count = jobspec.frame_range(settings, scene)

    if settings.use_depth:
        try:
            images, _near_far = depth.render_depth_maps(scene, context.view_layer, frame_start, count,
                                                        job["width"], job["height"], staging)
        except (depth.DepthError, RuntimeError, OSError) as e:  # bpy.ops.render raises RuntimeError
            jobs.remove_staging(staging)
            operator.report({'ERROR'}, f"Rendering depth maps failed: {e} — fix the scene or turn Depth Control off")
            return {'CANCELLED'}
        job = jobspec.build(scene, prefs, job_id, root, control_images=images, overrides=overrides)
        late = checks.job_problems(job)
        if late:
            jobs.remove_staging(staging)
            for _field, message in late:
                operator.report({'ERROR'}, message)
            return {'CANCELLED'}

    running = jobs.Running(
        job=job, blend_file=bpy.data.filepath, scene_name=scene.name,
        collection_name=context.collection.name if getattr(context, "collection", None) else "",
        object_names=_selected_mesh_names(context), frame_start=frame_start, target=settings.target,
        use_emission=settings.use_emission, use_movie=prefs.strip_source == 'MOVIE', staging=staging)
    python = jobspec.user_path(prefs.python_path)
    try:
        jobs.ensure_worker(python)
        jobs.submit(job, running)
    except (worker_client.WorkerStartError, worker_client.WorkerNotRunning) as e:
        jobs.remove_staging(staging)
        operator.report({'ERROR'}, f"Could not start the generator: {e} — check {checks.PREFS} ▸ Generator Python "
                                   "and press Check Generator")
        return {'CANCELLED'}
    operator.report({'INFO'}, f"Generating {count} frames at {job['width']}×{job['height']} (job {job_id})")
    return {'FINISHED'}


class ZSS_OT_generate(bpy.types.Operator):
    """Generate a coherent clip for the frame range and import it when done"""

    bl_idname = "zss.generate"
    bl_label = "Generate"
    bl_options = {'REGISTER'}

    def execute(self, context):
        return start_generation(context, self)


class ZSS_OT_cancel(bpy.types.Operator):
    """Stop the running clip (within one denoising step); nothing is imported"""

    bl_idname = "zss.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return jobs.is_running()

    def execute(self, context):
        jobs.cancel()
        return {'FINISHED'}


def _format_bytes(value):
    return f"{value / 2**30:.1f} GiB" if value else "?"


def ready_summary(ready):
    """One line about the generator: versions, device, GPU memory."""
    versions = ready.versions or {}
    parts = [f"{name} {versions[name]}" for name in ("python", "torch", "diffusers", "transformers", "zss")
             if versions.get(name)]
    memory = ""
    if ready.gpu_total_bytes:
        memory = f", GPU memory {_format_bytes(ready.gpu_free_bytes)} free of {_format_bytes(ready.gpu_total_bytes)}"
    return f"Generator ready on {ready.device} ({ready.dtype}){memory}: {', '.join(parts)}"


class ZSS_OT_check_generator(bpy.types.Operator):
    """Start the generator (if needed) and show its versions, device and GPU memory"""

    bl_idname = "zss.check_generator"
    bl_label = "Check Generator"

    timeout: bpy.props.FloatProperty(default=120.0, min=1.0, options={'SKIP_SAVE', 'HIDDEN'})

    def execute(self, context):
        try:
            prefs = preferences.get(context)
        except LookupError as e:
            self.report({'ERROR'}, str(e))
            return {'CANCELLED'}
        if jobs.is_running():  # never restart the worker under a running job
            ready = jobs.state.ready
            self.report({'INFO'}, ready_summary(ready) if ready else "The generator is busy starting a clip")
            return {'FINISHED'}
        problem = checks.python_problem(prefs.python_path)
        if problem:
            self.report({'ERROR'}, problem)
            return {'CANCELLED'}
        try:
            ready = jobs.wait_ready(jobspec.user_path(prefs.python_path), timeout=self.timeout)
        except worker_client.WorkerStartError as e:
            self.report({'ERROR'}, f"{e} — check that {checks.PREFS} ▸ Generator Python has torch and diffusers "
                                   "installed (see the system console for the log)")
            return {'CANCELLED'}
        jobs.state.status = ready_summary(ready)
        self.report({'INFO'}, jobs.state.status)
        return {'FINISHED'}


class ZSS_OT_open_output(bpy.types.Operator):
    """Open the last clip's folder (or the output folder) in the file browser"""

    bl_idname = "zss.open_output"
    bl_label = "Open Output Folder"

    def execute(self, context):
        folder = jobs.state.output_dir
        if not folder or not os.path.isdir(folder):
            folder = jobspec.output_root(preferences.get(context))
        if not folder or not os.path.isdir(folder):
            self.report({'ERROR'}, "There is no output folder yet — generate a clip first")
            return {'CANCELLED'}
        bpy.ops.wm.path_open(filepath=folder)
        return {'FINISHED'}


class ZSS_OT_randomize_seed(bpy.types.Operator):
    """Pick a new random seed"""

    bl_idname = "zss.randomize_seed"
    bl_label = "Randomize Seed"
    bl_options = {'REGISTER', 'UNDO'}

    def execute(self, context):
        context.scene.zss.seed = random.randint(0, SEED_MAX)
        return {'FINISHED'}


def _active_key(settings):
    index = settings.prompt_key_index
    return index if 0 <= index < len(settings.prompt_keys) else None


class ZSS_OT_prompt_key_add(bpy.types.Operator):
    """Add a prompt at the current frame (prompt travel: the clip moves towards it)"""

    bl_idname = "zss.prompt_key_add"
    bl_label = "Add Prompt Key"
    bl_options = {'REGISTER', 'UNDO'}

    def execute(self, context):
        scene = context.scene
        settings = scene.zss
        key = settings.prompt_keys.add()
        key.frame = scene.frame_current
        key.prompt = settings.prompt
        settings.prompt_key_index = len(settings.prompt_keys) - 1
        return {'FINISHED'}


class ZSS_OT_prompt_key_remove(bpy.types.Operator):
    """Remove the selected prompt key"""

    bl_idname = "zss.prompt_key_remove"
    bl_label = "Remove Prompt Key"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return _active_key(context.scene.zss) is not None

    def execute(self, context):
        settings = context.scene.zss
        index = _active_key(settings)
        if index is None:
            return {'CANCELLED'}
        settings.prompt_keys.remove(index)
        settings.prompt_key_index = max(0, min(index, len(settings.prompt_keys) - 1))
        return {'FINISHED'}


class ZSS_OT_prompt_key_move(bpy.types.Operator):
    """Move the selected prompt key up or down in the list (its frame decides when it plays)"""

    bl_idname = "zss.prompt_key_move"
    bl_label = "Move Prompt Key"
    bl_options = {'REGISTER', 'UNDO'}

    direction: bpy.props.EnumProperty(items=(('UP', "Up", ""), ('DOWN', "Down", "")), default='UP')

    @classmethod
    def poll(cls, context):
        return _active_key(context.scene.zss) is not None

    def execute(self, context):
        settings = context.scene.zss
        index = _active_key(settings)
        target = index - 1 if self.direction == 'UP' else index + 1
        if index is None or not 0 <= target < len(settings.prompt_keys):
            return {'CANCELLED'}
        settings.prompt_keys.move(index, target)
        settings.prompt_key_index = target
        return {'FINISHED'}


class ZSS_OT_open_output(bpy.types.Operator):
    """Open the last clip's folder (or the output folder) in the file browser"""

    bl_idname = "zss.open_output"
    bl_label = "Open Output Folder"

    def execute(self, context):
        folder = jobs.state.output_dir
        if not folder or not os.path.isdir(folder):
            folder = jobspec.output_root(preferences.get(context))
        if not folder or not os.path.isdir(folder):
            self.report({'ERROR'}, hints.message("no_output", "There is no output folder yet"))
            return {'CANCELLED'}
        bpy.ops.wm.path_open(filepath=folder)
        return {'FINISHED'}


class ZSS_OT_randomize_seed(bpy.types.Operator):
    """Pick a new random seed"""

    bl_idname = "zss.randomize_seed"
    bl_label = "Randomize Seed"
    bl_options = {'REGISTER', 'UNDO'}

    def execute(self, context):
        context.scene.zss.seed = random.randint(0, SEED_MAX)
        return {'FINISHED'}


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

    in_sequencer = getattr(context.space_data, "type", "") == 'SEQUENCE_EDITOR'
    order = (from_strip, from_object) if in_sequencer else (from_object, from_strip)
    for find in order:
        source = find()
        if source is not None:
            return source
    return None


def apply_stored(scene, source, seed=None):
    """Copy a stored clip's settings into scene.zss; returns the job overrides that pin the exact
    per-frame λ/μ and models it was made with."""
    job = json.loads(source["zss_job"])
    settings = scene.zss
    settings.prompt = job["prompt"]
    settings.negative_prompt = job.get("negative_prompt", "")
    settings.frames = job["frames"]
    settings.frame_start = int(source.get("zss_frame_start", settings.frame_start))
    settings.width, settings.height = job["width"], job["height"]
    settings.steps = job["steps"]
    settings.guidance = job["guidance"]
    settings.noise = job["noise"].upper()
    settings.chunk = job.get("chunk") or 0
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
    settings.use_depth = job.get("control_scale") is not None
    if settings.use_depth:
        settings.control_scale = job["control_scale"]
    overrides = {"lam": job["lam"], "mu": job["mu"], "model": job["model"]}
    if job.get("controlnet_model"):
        overrides["controlnet_model"] = job["controlnet_model"]
    return overrides


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
            self.report({'ERROR'}, "No ZS² clip is selected — select an object with a ZS² material or a ZS² strip")
            return {'CANCELLED'}
        overrides = apply_stored(context.scene, source, seed=self.new_seed(source.get("zss_seed", 0)))
        return start_generation(context, self, overrides=overrides)


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


CLASSES = (ZSS_OT_generate, ZSS_OT_cancel, ZSS_OT_check_generator, ZSS_OT_open_output, ZSS_OT_randomize_seed,
           ZSS_OT_regenerate, ZSS_OT_vary_seed, ZSS_OT_prompt_key_add, ZSS_OT_prompt_key_remove,
           ZSS_OT_prompt_key_move)
