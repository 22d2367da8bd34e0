"""Everything that would make a Generate fail, found before anything is rendered or sent.

Each problem is (field, "what is wrong — what to do"). The add-on's own checks speak in terms of
Blender settings; protocol.validate_job then checks the built job, and its problems are reported too
unless one of ours already covers the same field.
"""

import os

from ..zss_core import protocol
from . import jobs, jobspec

PREFS = "Edit ▸ Preferences ▸ Add-ons ▸ ZS² Video Textures"
SNIPPET = 30  # characters of a prompt quoted in a message


def python_problem(text):
    """Why the generator Python preference is unusable, or None."""
    path = jobspec.user_path(text)
    if not path:
        return (f"No generator Python is set — set {PREFS} ▸ Generator Python to the python executable "
                "of an environment with torch and diffusers")
    if not os.path.isfile(path):
        return (f"The generator Python {path} does not exist — fix {PREFS} ▸ Generator Python "
                "(for example <venv>/bin/python)")
    if not os.access(path, os.X_OK):
        return f"The generator Python {path} is not executable — point {PREFS} ▸ Generator Python at a python executable"
    return None


def _quote(text):
    text = " ".join(text.split())
    return "“" + (text if len(text) <= SNIPPET else text[:SNIPPET - 1] + "…") + "”"


def prompt_key_problems(settings, frame_start, count):
    """The schedule rows that cannot be sent: outside the clip, empty, or two at one frame."""
    found = []
    last = frame_start + count - 1
    seen = {}
    for number, key in enumerate(settings.prompt_keys, start=1):
        if not frame_start <= key.frame <= last:
            found.append(("prompts", f"Prompt key {number} (frame {key.frame}, {_quote(key.prompt)}) is outside the "
                                     f"clip (frames {frame_start}–{last}) — move the key into the clip's frame range "
                                     "or remove it (Prompt Schedule list)"))
        if not key.prompt.strip():
            found.append(("prompts", f"Prompt key {number} (frame {key.frame}) has an empty prompt — type a prompt "
                                     "for it or remove the key"))
        if key.frame in seen:
            found.append(("prompts", f"Prompt keys {seen[key.frame]} and {number} are both at frame {key.frame} — "
                                     "give each key its own frame, or remove one"))
        seen.setdefault(key.frame, number)
    return found


def problems(scene, prefs):
    """The add-on's own checks of scene.zss and the preferences."""
    settings = scene.zss
    found = []
    if jobs.is_running():
        found.append(("running", "A ZS² clip is already being generated — wait for it to finish or press Cancel"))
    if not settings.prompt.strip():
        found.append(("prompt", "The prompt is empty — describe the clip in the ZS² panel's Prompt field"))
    message = python_problem(prefs.python_path)
    if message:
        found.append(("python", message))
    if not prefs.model.strip():
        found.append(("model", f"No model is set — set {PREFS} ▸ Model to a Stable Diffusion 1.x folder, "
                               ".safetensors file or hub id"))
    if settings.use_depth:
        if scene.camera is None:
            found.append(("camera", "Depth Control is on but the scene has no active camera — add a camera "
                                    "and make it active (Ctrl Numpad 0), or turn Depth Control off"))
        if not prefs.controlnet_model.strip():
            found.append(("controlnet_model", f"Depth Control needs a depth ControlNet — set {PREFS} ▸ "
                                              "Depth ControlNet, or turn Depth Control off"))
    if not jobspec.output_root(prefs):
        found.append(("output_dir", "The .blend file is not saved and no output folder is set — save the file "
                                    f"(clips go to //zss/ next to it) or set {PREFS} ▸ Output Folder"))
    frame_start, count = jobspec.frame_range(settings, scene)
    if not 1 <= count <= jobspec.MAX_FRAMES:
        found.append(("frames", f"The clip would have {count} frames (from frame {frame_start}) — ZS² makes 1 to "
                                f"{jobspec.MAX_FRAMES}; set Frames in the ZS² panel or the scene's frame range"))
    for name in ("width", "height"):
        value = getattr(settings, name)
        if value and (value % 8 or value < jobspec.MIN_SIZE):
            found.append((name, f"{name.capitalize()} {value} is not a multiple of 8 from {jobspec.MIN_SIZE} to "
                                f"{jobspec.MAX_SIZE} — change it in the ZS² panel, or set 0 to follow the "
                                "render resolution"))
    found.extend(prompt_key_problems(settings, frame_start, count))
    return found


def _root_field(field):
    return field.split(".")[0].split("[")[0]


def job_problems(job, covered=()):
    """protocol.validate_job's problems as messages, minus fields our own checks already reported."""
    covered = set(covered)
    messages = []
    for problem in protocol.validate_job(job):
        if _root_field(problem.field) in covered:
            continue
        messages.append((problem.field, f"The job is invalid: {problem.message} — fix this setting in the ZS² "
                                        "panel or the add-on preferences"))
    return messages
