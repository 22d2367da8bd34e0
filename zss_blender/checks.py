"""Everything that would make a Generate fail, found before anything is rendered or sent.

Each problem is (field, "what is wrong — what to do"); the "what to do" half comes from hints.FIXES
(the README's troubleshooting table). The add-on's own checks speak in terms of Blender settings;
protocol.validate_job then checks the built job, and its problems are reported too unless one of ours
already covers the same field.
"""

import os

from ..zss_core import defaults, protocol
from . import hints, jobspec, preferences, restyle

SNIPPET = 30  # characters of a prompt quoted in a message


def python_problem(text):
    """Why the generator Python preference is unusable, or None."""
    path = jobspec.user_path(text)
    if not path:
        return hints.message("python", "No generator Python is set")
    if not os.path.isfile(path):
        return hints.message("python", f"The generator Python {path} does not exist")
    if not os.access(path, os.X_OK):
        return hints.message("python", f"The generator Python {path} is not executable")
    return None


def server_problem(prefs):
    """Why the server preferences cannot work, or None (whether it answers, Check Server tells)."""
    if not prefs.server_url.strip():
        return hints.message("server_url", "No server URL is set")
    if not prefs.server_url.strip().startswith(("http://", "https://")):
        return hints.message("server_url", f"The server URL {prefs.server_url.strip()} does not start with https://")
    return None


def server_fields(prefs):
    """Job fields a server fills in itself (its model name brings the ControlNet): not checked here."""
    return {"controlnet_model"} if preferences.uses_server(prefs) else set()


def _quote(text):
    text = " ".join(text.split())
    return "“" + (text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…") + "”"


def prompt_key_problems(settings, frame_start, count):
    """The schedule rows that cannot be sent: outside the clip, empty, or two at one frame."""
    found = []
    last = frame_start + count - 1
    seen = {}
    for number, key in enumerate(settings.prompt_keys, start=1):
        if not frame_start <= key.frame <= last:
            found.append(
                (
                    "prompts",
                    hints.message(
                        "prompt_key_outside",
                        f"Prompt key {number} (frame {key.frame}, {_quote(key.prompt)}) is outside "
                        f"the clip (frames {frame_start}–{last})",
                    ),
                )
            )
        if not key.prompt.strip():
            found.append(
                (
                    "prompts",
                    hints.message("prompt_key_empty", f"Prompt key {number} (frame {key.frame}) has an empty prompt"),
                )
            )
        if key.frame in seen:
            found.append(
                (
                    "prompts",
                    hints.message(
                        "prompt_key_duplicate",
                        f"Prompt keys {seen[key.frame]} and {number} are both at frame {key.frame}",
                    ),
                )
            )
        seen.setdefault(key.frame, number)
    return found


def lora_problems(settings, server=False):
    """LoRA rows that cannot be sent: no file, a missing file, or not a .safetensors file (a folder holding
    one is fine). With a server the rows are LoRA names, which the server checks."""
    found = []
    for number, row in enumerate(settings.loras, start=1):
        text = row.filepath.strip()
        if not text:
            found.append(("loras", hints.message("lora_missing", f"LoRA {number} has no file")))
            continue
        if server or jobspec.is_hub_id(text):  # the server's LoRA name, or a hub id the generator fetches
            continue
        path = jobspec.user_path(text)
        if not os.path.exists(path):
            found.append(("loras", hints.message("lora_missing", f"LoRA {number}: {path} does not exist")))
        elif not os.path.isdir(path) and not path.lower().endswith(".safetensors"):
            found.append(
                (
                    "loras",
                    hints.message("lora_file", f"LoRA {number}: {os.path.basename(path)} is not a .safetensors file"),
                )
            )
    return found


def restyle_problems(scene, settings, camera_reported=False):
    """What stops the Restyle source from being read: no usable strip, no camera, depth with a strip."""
    if settings.restyle_source == "STRIP":
        found = []
        what = restyle.strip_problem(scene)
        if what:
            found.append(("restyle_source", hints.message("restyle_strip", what)))
        if settings.use_depth:
            found.append(
                (
                    "use_depth",
                    hints.message("restyle_depth", "Depth Control renders the 3D scene, not the selected strip"),
                )
            )
        return found
    if settings.restyle_source == "SCENE" and scene.camera is None and not camera_reported:
        return [
            (
                "camera",
                hints.message("restyle_camera", "Restyle from Scene Render needs a camera, but the scene has none"),
            )
        ]
    return []


def problems(scene, prefs):
    """The add-on's own checks of scene.zss and the preferences."""
    settings = scene.zss
    found = []
    if not settings.prompt.strip():
        found.append(("prompt", hints.message("prompt", "The prompt is empty")))
    server = preferences.uses_server(prefs)
    message = server_problem(prefs) if server else python_problem(prefs.python_path)
    if message:
        found.append(("server_url" if server else "python", message))
    if settings.use_depth:
        if scene.camera is None:
            found.append(("camera", hints.message("camera", "Depth Control is on but the scene has no active camera")))
        if not server and not jobspec.controlnet_setting(prefs):  # a server's model names its own
            found.append(
                ("controlnet_model", hints.message("controlnet_model", "Depth Control needs a depth ControlNet"))
            )
    found.extend(restyle_problems(scene, settings, camera_reported=any(f == "camera" for f, _ in found)))
    output = jobspec.output_problem(prefs)
    if output is not None:
        key, what = output
        found.append(("output_dir", hints.message(key, what)))
    frame_start, count = jobspec.frame_range(settings, scene)
    if not 1 <= count <= defaults.MAX_FRAMES:
        found.append(
            ("frames", hints.message("frames", f"The clip would have {count} frames (from frame {frame_start})"))
        )
    for name in ("width", "height"):
        value = getattr(settings, name)
        if value and (value % defaults.SIZE_MULTIPLE or value < defaults.MIN_SIZE):
            found.append(
                (
                    name,
                    hints.message(
                        "size",
                        f"{name.capitalize()} {value} is not a multiple of "
                        f"{defaults.SIZE_MULTIPLE} from {defaults.MIN_SIZE} to "
                        f"{defaults.MAX_SIZE}",
                    ),
                )
            )
    found.extend(prompt_key_problems(settings, frame_start, count))
    found.extend(lora_problems(settings, server))
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
        messages.append((problem.field, hints.message("job", f"The job is invalid: {problem.message}")))
    return messages
