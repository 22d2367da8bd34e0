"""Every error the add-on can show, with what to do about it — the README's troubleshooting table.

Messages are "what is wrong — what to do": the add-on builds the second half from FIXES (its own
checks) or WORKER_FIXES (the generator's error codes, used when the generator sends no hint of its
own). markdown_table() renders both for the README (tests keep the README in step with this file).
"""

PREFS = "Edit ▸ Preferences ▸ Add-ons ▸ ZS² Video Textures"
NETWORK = "Edit ▸ Preferences ▸ System ▸ Network ▸ Allow Online Access"

# key → (what the message starts with, what to do). The order is the README's.
FIXES = {
    "addon": ("The ZS² add-on … is not enabled", "Enable it in Edit ▸ Preferences ▸ Add-ons (or Get Extensions)"),
    "prompt": ("The prompt is empty", "Describe the clip in the ZS² panel's Prompt field"),
    "python": (
        "No generator Python is set / … does not exist / … is not executable",
        f"Press Set Up Generator in {PREFS}, or point Generator Python at the python of an environment "
        "made with `zss setup-env DIR` (DIR/bin/python, DIR\\Scripts\\python.exe on Windows)",
    ),
    "camera": (
        "Depth Control is on but the scene has no active camera",
        "Add a camera and make it active (Ctrl Numpad 0), or turn Depth Control off",
    ),
    "controlnet_model": (
        "Depth Control needs a depth ControlNet",
        f"Set {PREFS} ▸ Depth ControlNet (e.g. lllyasviel/sd-controlnet-depth), or turn Depth Control off",
    ),
    "output_dir": (
        "The .blend file is not saved and no output folder is set",
        f"Save the file (clips go to //zss/ next to it) or set {PREFS} ▸ Output Folder",
    ),
    "output_relative": (
        "The Output Folder //… is relative to the .blend file, which is not saved",
        "Save the .blend first or use an absolute folder",
    ),
    "frames": (
        "The clip would have N frames",
        "ZS² makes 1 to 1024 frames: set Frames in the ZS² panel or the scene's frame range",
    ),
    "size": (
        "Width/Height N is not a multiple of 8",
        "Change it in the ZS² panel, or set 0 to follow the render resolution",
    ),
    "prompt_key_outside": (
        "Prompt key N (frame F, …) is outside the clip",
        "Move the key into the clip's frame range or remove it (Prompt Schedule list)",
    ),
    "prompt_key_empty": ("Prompt key N (frame F) has an empty prompt", "Type a prompt for it or remove the key"),
    "prompt_key_duplicate": ("Prompt keys N and M are both at frame F", "Give each key its own frame, or remove one"),
    "lora_missing": (
        "LoRA N has no file / LoRA N: … does not exist",
        "Choose the file again in the ZS² panel's LoRAs list, or remove the row",
    ),
    "lora_file": (
        "LoRA N: … is not a .safetensors file",
        "LoRAs load from .safetensors only: choose the LoRA's .safetensors file",
    ),
    "job": ("The job is invalid: …", f"Fix the named setting in the ZS² panel or {PREFS}"),
    "depth": ("Rendering depth maps failed", "Fix the scene (camera, Cycles available) or turn Depth Control off"),
    "restyle_strip": (
        "Restyle is set to Selected Strip but no strip is selected / the active strip … is not an image "
        "sequence or a movie / … is inside a meta strip",
        "Click an image-sequence or movie strip in the Sequencer (outside meta strips) to make it active, or "
        "set Restyle to Scene Render or None",
    ),
    "restyle_camera": (
        "Restyle from Scene Render needs a camera, but the scene has none",
        "Add a camera and make it active (Ctrl Numpad 0), or set Restyle to Selected Strip or None",
    ),
    "restyle_depth": (
        "Depth Control renders the 3D scene, not the selected strip",
        "Turn Depth Control off to restyle a strip, or set Restyle to Scene Render",
    ),
    "restyle": (
        "Reading the restyle source failed",
        "Check the strip's files (or the scene's camera) and the render errors in the console, or set Restyle to None",
    ),
    "restyle_gone": (
        "The strip … this clip restyled is gone",
        "Select the strip to restyle in the Sequencer and press Generate (Restyle: Selected Strip)",
    ),
    "generator_missing": (
        "The generator Python … cannot run the generator: missing torch, …",
        f"Press Set Up Generator in {PREFS} (it installs what is missing), or point Generator "
        "Python at an environment made with `zss setup-env DIR`",
    ),
    "worker_start": (
        "Could not start the generator / The generator exited during start-up",
        f"Press Check Generator in {PREFS}: it names what is missing and offers Repair",
    ),
    "environment": (
        "The generator environment is not usable: missing …",
        f"Press Repair (installs what is missing) or Rebuild (starts over) in {PREFS}",
    ),
    "setup_offline": (
        "Online access is off, so the generator cannot be installed",
        f"Turn on {NETWORK}, or make the environment yourself with `zss setup-env DIR` and set Generator Python",
    ),
    "setup_failed": (
        "Setting up the generator failed",
        "Read the log lines below it; check the network, then press Repair. For another torch "
        "build set Torch Override or Extra pip Arguments (e.g. --index-url …)",
    ),
    "setup_running": ("The generator is already being set up", "Wait for it, or press Cancel next to its progress bar"),
    "setup_busy": ("A clip or download is running", "Wait for it to finish (or cancel it), then set up the generator"),
    "download_restart": ("The download stopped because the generator was restarted", "Press Download again"),
    "download_offline": (
        "Downloads are disabled: online access is off",
        f"Turn on {NETWORK}, or download the model elsewhere and set Model to its folder or .safetensors file",
    ),
    "download_not_hub": (
        "… is not a hub id",
        "Download takes a Hugging Face id like stable-diffusion-v1-5/stable-diffusion-v1-5; "
        "local folders and files need no download",
    ),
    "no_output": ("There is no output folder yet", "Generate a clip first"),
    "no_clip": ("No ZS² clip is selected", "Select an object with a ZS² material, or a ZS² strip in the sequencer"),
    "blend_closed": (
        "The clip finished, but the .blend file or scene it was made for is no longer open",
        "Nothing was imported; import the frames from the job folder shown",
    ),
    "import": (
        "The clip finished, but importing it failed",
        "The frames are in the job folder shown; see the system console for details",
    ),
    "server_url": (
        "No server URL is set / … does not start with https://",
        f"Set {PREFS} ▸ Server URL to the address of `zss serve` (e.g. https://gpu-box:7860), then press Check Server",
    ),
    "not_running": ("The generator is not running", "Generate again to restart it"),
    "disabled": ("The add-on was disabled while a clip was being generated", "Generate again after enabling it"),
}

# Generator error codes (docs/protocol.md) → (meaning, what to do).
WORKER_FIXES = {
    "bad_request": (
        "The generator rejected a setting",
        "The message names the setting: change it in the ZS² panel or the preferences",
    ),
    "unknown_job": ("The generator no longer knows the job", "It finished or the generator restarted: generate again"),
    "duplicate_job": ("A job with that id is already queued", "Generate again (each job gets a new id)"),
    "model_not_found": (
        "The model was not found",
        "Check Model: a diffusers folder, a .safetensors file or a hub id. With online access "
        "off a hub id must have been downloaded before (Download)",
    ),
    "model_load_failed": (
        "The model could not be loaded",
        "Its files are incomplete or damaged: download it again or pick another. Legacy "
        ".ckpt/.pt files need Allow Legacy Pickle Checkpoints",
    ),
    "model_incompatible": (
        "The model is not one ZS² can run",
        "ZS² runs SD 1.x, SD 2.x and SDXL text-to-image models, with a depth ControlNet of the same family; "
        "inpainting, InstructPix2Pix and SD 3 models do not work",
    ),
    "download_failed": (
        "Could not download the model",
        "Check the hub id's spelling and the network; gated models need their licence accepted "
        "on huggingface.co and a token (HF_TOKEN) in the generator's environment",
    ),
    "control_image_invalid": (
        "A depth map could not be read",
        "Generate again (depth is re-rendered), or turn Depth Control off",
    ),
    "output_exists": ("The job folder already exists", "Generate again (each job gets a new folder)"),
    "output_not_writable": (
        "The output folder is not writable",
        "Save the .blend in a folder you can write to, or set Output Folder in the preferences",
    ),
    "out_of_memory": (
        "The GPU ran out of memory",
        "Set Chunk to Auto or fewer frames, lower the size, or turn on Attention Slicing, VAE "
        "Tiling or CPU Offload in the preferences",
    ),
    "internal": (
        "The generator failed unexpectedly",
        "See the system console; report it with the job folder's job.json",
    ),
    "worker_died": (
        "The generator process stopped unexpectedly",
        "Often out of memory: see the log lines shown, then generate again (it restarts)",
    ),
    "worker_stalled": (
        "The generator stopped answering and was stopped",
        "Generate again (it restarts); frames written before it froze stay in the job folder. If it "
        "keeps happening, see the log lines shown (a GPU driver hang, memory swapping)",
    ),
}


def fix(key):
    """What to do for one of the add-on's own problems."""
    return FIXES[key][1]


def message(key, what):
    """'what is wrong — what to do'."""
    return f"{what} — {fix(key)}"


def worker_hint(code, hint=""):
    """The generator's own hint when it sent one, else ours for the code."""
    if hint and hint.strip():
        return hint
    entry = WORKER_FIXES.get(code)
    return entry[1] if entry else "See the system console for the generator's log"


def markdown_table():
    """The README's troubleshooting table (one row per message the add-on can show)."""
    lines = ["| You see | What to do |", "|---|---|"]
    for symptom, what in FIXES.values():
        lines.append(f"| {symptom} | {what} |")
    for code, (symptom, what) in WORKER_FIXES.items():
        lines.append(f"| {symptom} (`{code}`) | {what} |")
    return "\n".join(lines)
