"""Scene.zss + preferences → a protocol job dict (docs/protocol.md).

The one place that resolves the "auto" settings (frames = 0, width/height = 0, chunk = -1), evaluates
keyframed λ/μ, turns the prompt schedule's scene frames into clip indices, and decides where the output
goes, so validation, depth rendering and the job agree on the numbers.
"""

import os
import secrets
import time

import bpy

from . import animation

MAX_FRAMES = 1024  # protocol.MAX_LIST
MIN_SIZE, MAX_SIZE = 64, 2048
STAGING = ".staging"  # depth maps are rendered here, outside the job folder the worker creates


def frame_range(settings, scene):
    """(first frame, frame count): the scene range when settings.frames is 0."""
    if settings.frames == 0:
        return scene.frame_start, scene.frame_end - scene.frame_start + 1
    return settings.frame_start, settings.frames


def _snap(value):
    """Down to a multiple of 8, at least MIN_SIZE."""
    return max(MIN_SIZE, int(value / 8 + 1e-6) * 8)


def resolution(settings, scene, max_resolution):
    """(width, height): explicit values as set; 0 follows the render aspect, capped by max_resolution."""
    render = scene.render
    render_w = render.resolution_x * render.resolution_percentage / 100
    render_h = render.resolution_y * render.resolution_percentage / 100
    width, height = settings.width, settings.height
    if width and height:
        return width, height
    if width:
        return width, min(MAX_SIZE, _snap(width * render_h / render_w))
    if height:
        return min(MAX_SIZE, _snap(height * render_w / render_h)), height
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


DEFAULT_MODEL = "builtin:textures"  # shipped inside the add-on's zss_core: works offline
DEFAULT_CONTROLNETS = {"builtin:textures": "builtin:textures-depth", "tiny": "tiny"}


def model_setting(prefs):
    """The model preference, or the built-in texture model when none is configured."""
    return prefs.model.strip() or DEFAULT_MODEL


def controlnet_setting(prefs):
    """The depth ControlNet preference, or the built-in model's own one ("" when there is none)."""
    return prefs.controlnet_model.strip() or DEFAULT_CONTROLNETS.get(model_setting(prefs), "")


def model_reference(text):
    """Model preference: a local path made absolute, or a hub id / 'tiny' passed through."""
    path = user_path(text)
    return os.path.abspath(path) if os.path.exists(path) else path


def output_root(prefs):
    """//zss next to a saved .blend, else the preferences' folder; "" when neither exists."""
    if bpy.data.filepath:
        return os.path.normpath(bpy.path.abspath("//zss"))
    folder = prefs.output_dir.strip()
    if not folder or folder.startswith("//"):  # relative to a .blend that has no folder yet
        return ""
    return os.path.abspath(os.path.expanduser(folder))


def new_job_id(root):
    """Timestamp + random suffix; never the name of an existing job or staging folder."""
    while True:
        job_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        if not os.path.exists(os.path.join(root, job_id)) and \
                not os.path.exists(staging_dir(root, job_id)):
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


def build(scene, prefs, job_id, root, control_images=None, overrides=None):
    """The protocol job dict. With depth on and no control_images yet, control is left out
    (controlnet_model is kept) so the job can be validated before rendering depth.

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
    }
    if settings.use_depth:
        job["controlnet_model"] = model_reference(controlnet_setting(prefs))
        if control_images is not None:
            job["control"] = {"type": "depth", "images": list(control_images), "scale": settings.control_scale}
    job.update(overrides or {})
    return job
