"""Scene.zss + preferences → one immutable JobPlan: the protocol job, its depth frames, its import targets.

The one place that resolves the "auto" settings (frames = 0, width/height = 0, chunk = -1), evaluates
keyframed λ/μ, turns the prompt schedule's scene frames into clip indices, and decides where the output
goes. plan() reads the scene once; validation, depth rendering, submit, import and Regenerate all read
that plan (depth images are added with JobPlan.with_control, which builds a new plan).
"""

import dataclasses
import os
import re
import secrets
import time

import bpy

from ..zss_core import defaults, presets
from . import animation, preferences, restyle

STAGING = ".staging"  # depth maps and restyle sources are written here, outside the job folder the worker creates
DEFAULT_FOLDER = "//zss"  # clips of a saved .blend go next to it unless Output Folder is //-relative


def frame_range(settings, scene):
    """(first frame, frame count): the scene range when settings.frames is 0; a restyled strip's own
    range (its start and length on the timeline) when Restyle is Selected Strip and one is selected."""
    if settings.restyle_source == "STRIP" and restyle.strip_problem(scene) is None:
        return restyle.strip_range(restyle.source_strip(scene))
    if settings.frames == 0:
        return scene.frame_start, scene.frame_end - scene.frame_start + 1
    return settings.frame_start, settings.frames


def _snap(value):
    """Down to a multiple of 8, at least the smallest size."""
    step = defaults.SIZE_MULTIPLE
    return max(defaults.MIN_SIZE, int(value / step + 1e-6) * step)


def resolution(settings, scene, max_resolution):
    """(width, height): explicit values as set; 0 follows the render aspect, capped by max_resolution."""
    render = scene.render
    render_w = render.resolution_x * render.resolution_percentage / 100
    render_h = render.resolution_y * render.resolution_percentage / 100
    width, height = settings.width, settings.height
    if width and height:
        return width, height
    if width:
        return width, min(defaults.MAX_SIZE, _snap(width * render_h / render_w))
    if height:
        return min(defaults.MAX_SIZE, _snap(height * render_w / render_h)), height
    scale = min(1.0, max_resolution / max(render_w, render_h))
    return _snap(render_w * scale), _snap(render_h * scale)


def user_path(text):
    """A path typed in a preference: //-relative to the .blend, ~ expanded; other text unchanged."""
    text = text.strip()
    if text.startswith("//"):
        return os.path.normpath(bpy.path.abspath(text))
    if text.startswith("~"):
        return os.path.expanduser(text)
    return text


def model_setting(prefs):
    """The model preference, or the built-in texture model when none is configured."""
    return prefs.model.strip() or defaults.DEFAULT_MODEL


def controlnet_setting(prefs):
    """The depth ControlNet preference, or the built-in model's own one ("" when there is none)."""
    return prefs.controlnet_model.strip() or defaults.default_controlnet(model_setting(prefs))


def model_name(prefs):
    """The model sent to a server: its name from the server's models.toml (no path is resolved here)."""
    return prefs.model.strip() or preferences.SERVER_DEFAULT_MODEL


def model_reference(text):
    """Model preference: a local path made absolute, or a hub id / 'tiny' passed through."""
    path = user_path(text)
    return os.path.abspath(path) if os.path.exists(path) else path


def draft_lora_setting(settings, prefs):
    """The Draft LoRA preference (a path made absolute, or a hub id) when the preset takes it, else ""."""
    preset = presets.PRESETS.get(settings.preset.lower())
    if preset is None or not preset.lora or not prefs.draft_lora.strip():
        return ""
    return model_reference(prefs.draft_lora)


def output_root(prefs):
    """Where job folders go; "" when there is nowhere (output_problem says why).

    A saved .blend: the Output Folder when it is //-relative (resolved against the .blend), else //zss
    next to it. An unsaved file: the Output Folder when it is absolute (a //-relative one has no .blend
    to be relative to yet).
    """
    folder = prefs.output_dir.strip()
    relative = folder.startswith("//")
    if bpy.data.filepath:
        return os.path.normpath(bpy.path.abspath(folder if relative else DEFAULT_FOLDER))
    if not folder or relative:
        return ""
    return os.path.abspath(os.path.expanduser(folder))


def output_problem(prefs):
    """Why output_root is "": (hints key, what is wrong), or None when there is a folder."""
    if output_root(prefs):
        return None
    folder = prefs.output_dir.strip()
    if folder.startswith("//"):
        return "output_relative", f"The Output Folder {folder} is relative to the .blend file, which is not saved"
    return "output_dir", "The .blend file is not saved and no output folder is set"


def new_job_id(root):
    """Timestamp + random suffix; never the name of an existing job or staging folder."""
    while True:
        job_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        if not os.path.exists(os.path.join(root, job_id)) and not os.path.exists(staging_dir(root, job_id)):
            return job_id


def staging_dir(root, job_id):
    return os.path.join(root, STAGING, job_id)


def scene_fps(scene):
    return min(240.0, max(1.0, scene.render.fps / scene.render.fps_base))


def per_frame(scene, name, frame_start, count, lo, hi):
    """λ or μ for each frame of the clip (a float when not keyframed or constant)."""
    return animation.per_frame_values(scene, f"zss.{name}", getattr(scene.zss, name), frame_start, count, lo, hi)


def chunk_value(chunk):
    """Scene.zss.chunk → the job's chunk: -1 → "auto", 0 → None (all at once), N → N."""
    if chunk < 0:
        return "auto"
    return chunk or None


def chunk_setting(value):
    """A job's chunk back to Scene.zss.chunk (regenerate)."""
    if value == "auto":
        return -1
    return int(value or 0)


def prompt_keys(settings, frame_start):
    """The schedule rows as the job's prompts (0-based clip frames, sorted), or None when empty.

    Rows outside the clip give out-of-range indices here; checks.prompt_key_problems reports them.
    """
    keys = [{"frame": key.frame - frame_start, "prompt": key.prompt} for key in settings.prompt_keys]
    return sorted(keys, key=lambda k: k["frame"]) or None


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_hub_id(text):
    """'owner/name' that is no file or folder here and no .safetensors name: a Hugging Face hub id, which
    the generator takes from its cache (or downloads)."""
    return (
        bool(HUB_ID.fullmatch(text))
        and not text.lower().endswith(".safetensors")
        and not os.path.exists(user_path(text))
    )


def lora_list(settings, server=False, skip=""):
    """The LoRA rows as the job's loras (None when there are none): absolute paths with // resolved, hub
    ids as they are, or, for a server, the LoRA names as typed (the server maps its own names to files).

    skip: the preset's draft LoRA, which presets.expand appends itself (a row with it, as Regenerate of a
    draft clip leaves, would list it twice)."""
    rows = []
    for row in settings.loras:
        text = row.filepath.strip()
        path = text if server or not text or is_hub_id(text) else os.path.abspath(user_path(text))
        if skip and path == skip:
            continue
        rows.append({"path": path, "weight": row.weight})
    return rows or None


def build(scene, prefs, job_id, root, overrides=None):
    """The protocol job dict (plan() calls it once per job). With depth on, control is left out
    (controlnet_model is kept) until JobPlan.with_control adds the rendered maps.

    overrides replace computed fields (regenerate uses it for the stored per-frame λ/μ).
    """
    settings = scene.zss
    frame_start, count = frame_range(settings, scene)
    width, height = resolution(settings, scene, prefs.max_resolution)
    job = {
        "id": job_id,
        "prompt": settings.prompt,
        "negative_prompt": settings.negative_prompt,
        "frames": count,
        "width": width,
        "height": height,
        "steps": settings.steps,
        "guidance": settings.guidance,
        "seed": settings.seed,
        "lam": per_frame(scene, "lam", frame_start, count, 0.0, float("inf")),
        "mu": per_frame(scene, "mu", frame_start, count, 0.0, 1.0),
        "noise": settings.noise.lower(),
        "model": model_reference(model_setting(prefs)),
        "chunk": chunk_value(settings.chunk),
        "device": prefs.device.lower(),
        "dtype": prefs.precision.lower(),
        "output_dir": root,
        "fps": scene_fps(scene),
        "loop": settings.loop,
        "tile_x": settings.tile in {"X", "XY"},
        "tile_y": settings.tile in {"Y", "XY"},
        "prompts": prompt_keys(settings, frame_start),
        "prompt_interpolation": settings.prompt_interpolation.lower(),
        "allow_pickle": prefs.allow_pickle,
        "attention_slicing": prefs.attention_slicing,
        "vae_tiling": prefs.vae_tiling,
        "cpu_offload": prefs.cpu_offload,
        "cache_interval": settings.cache_interval,
        "fast": prefs.fast_gpu,
    }
    loras = lora_list(settings, preferences.uses_server(prefs), skip=draft_lora_setting(settings, prefs))
    if loras:  # left out without rows: the protocol's default (none), as before LoRAs existed
        job["loras"] = loras
    if settings.use_depth:
        job["controlnet_model"] = model_reference(controlnet_setting(prefs))
    job = presets.expand(job, settings.preset.lower(), draft_lora=draft_lora_setting(settings, prefs))
    job.update(overrides or {})
    if preferences.uses_server(prefs):  # the server resolves the name (and its ControlNet) itself
        pinned = (overrides or {}).get("model")  # Regenerate: the clip's model, when this server has it
        job["model"] = pinned if pinned in preferences.server_model_names(prefs) else model_name(prefs)
        job.pop("controlnet_model", None)
        job["allow_pickle"] = False
    return job


@dataclasses.dataclass(frozen=True)
class DepthFrames:
    """The depth maps a plan needs: scene frames frame_start … frame_start+count-1 at width × height."""

    frame_start: int
    count: int
    width: int
    height: int
    folder: str  # the staging folder (staging.folder(plan) owns it)
    scale: float  # the ControlNet's conditioning scale


@dataclasses.dataclass(frozen=True)
class RestyleFrames:
    """The source frames a restyle plan needs (restyle.read_source writes them into folder)."""

    source: str  # SCENE (rendered from the camera) or STRIP (the sequencer strip strip_name)
    frame_start: int  # the scene frame of the first source frame
    count: int
    width: int
    height: int
    folder: str  # the staging folder (staging.folder(plan) owns it)
    strength: float  # the job's strength once the frames are there (with_init)
    strip_name: str = ""


@dataclasses.dataclass(frozen=True)
class Replace:
    """Regenerate / Vary Seed: the earlier clip's datablocks, updated in place instead of copied."""

    material: str = ""  # the ZS² material (its image is reloaded onto the new frames)
    strip: str = ""  # the ZS² strip (in the plates scene, or in the scene itself)


@dataclasses.dataclass(frozen=True)
class ImportTargets:
    """Where the finished clip goes: read from the scene when the job is planned, not when it ends."""

    blend_file: str  # the .blend the job was planned in ("" unsaved): nothing is imported into another one
    scene_name: str
    collection_name: str
    object_names: tuple  # mesh objects that get the material (a new plane when none)
    target: str  # MATERIAL, STRIP or BOTH
    use_emission: bool
    use_movie: bool  # a strip from the MP4 instead of the PNG frames
    frame_start: int  # the scene frame of the clip's first frame
    strip_placement: str = "PLATES"  # PLATES ("<scene> · plates" edit scene) or SCENE (this scene's sequencer)
    mapping: str = "CAMERA"  # CAMERA (a depth clip projected from camera_name) or UV
    camera_name: str = ""  # the camera the depth frames were rendered from ("" without depth)
    replace: Replace = Replace()  # Regenerate / Vary Seed: what is replaced in place
    restyle_source: str = "NONE"  # NONE, SCENE or STRIP: stored on the clip for Regenerate
    source_strip: str = ""  # STRIP: the restyled strip; the result strip goes on a channel above it


@dataclasses.dataclass(frozen=True)
class JobPlan:
    """One job, planned once: the protocol job (a dict, as sent), its depth frames, its import targets."""

    job: dict
    depth: DepthFrames | None
    targets: ImportTargets
    restyle: RestyleFrames | None = None

    @property
    def id(self):
        return self.job["id"]

    @property
    def job_dir(self):
        """The folder the worker creates for this job."""
        return os.path.join(self.job["output_dir"], self.job["id"])

    def with_control(self, images):
        """A new plan whose job conditions on the rendered depth maps."""
        job = {**self.job, "control": {"type": "depth", "images": list(images), "scale": self.depth.scale}}
        return dataclasses.replace(self, job=job)

    def with_init(self, images):
        """A new plan whose job restyles the written source frames (init) at the plan's strength."""
        job = {**self.job, "init": list(images), "strength": self.restyle.strength}
        return dataclasses.replace(self, job=job)

    @property
    def staging_folder(self):
        """Where depth maps and source frames are written before sending; "" when nothing is."""
        needed = self.depth or self.restyle
        return needed.folder if needed is not None else ""


def plan(context, prefs, object_names=(), overrides=None, replace=None, job_id=None):
    """Read the scene once into a JobPlan. `context` is a bpy context or a scene.

    object_names: the mesh objects the material goes on. overrides replace computed job fields
    (Regenerate pins the stored per-frame λ/μ and models); replace names the clip Regenerate replaces.
    job_id: a fixed id (validation before anything is written); by default a new unique one.
    """
    scene = getattr(context, "scene", context)
    collection = getattr(context, "collection", None)
    settings = scene.zss
    root = output_root(prefs)
    job_id = job_id or new_job_id(root)
    job = build(scene, prefs, job_id, root, overrides=overrides)
    frame_start, count = frame_range(settings, scene)
    depth = None
    if settings.use_depth:
        depth = DepthFrames(
            frame_start, count, job["width"], job["height"], staging_dir(root, job_id), settings.control_scale
        )
    source, strip_name = None, ""
    if settings.restyle_source != "NONE":
        strip = restyle.source_strip(scene) if settings.restyle_source == "STRIP" else None
        strip_name = strip.name if strip is not None else ""
        source = RestyleFrames(
            settings.restyle_source,
            frame_start,
            count,
            job["width"],
            job["height"],
            staging_dir(root, job_id),
            settings.strength,
            strip_name,
        )
    targets = ImportTargets(
        blend_file=bpy.data.filepath,
        scene_name=scene.name,
        collection_name=collection.name if collection is not None else "",
        object_names=tuple(object_names),
        target=settings.target,
        use_emission=settings.use_emission,
        use_movie=prefs.strip_source == "MOVIE",
        frame_start=frame_start,
        strip_placement=settings.strip_placement,
        mapping=settings.mapping,
        camera_name=scene.camera.name if depth and scene.camera else "",
        replace=replace or Replace(),
        restyle_source=settings.restyle_source,
        source_strip=strip_name,
    )
    return JobPlan(job=job, depth=depth, targets=targets, restyle=source)
