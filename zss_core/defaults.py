"""Facts the engine, the CLI and the Blender add-on share: limits, default models, noise-model names.

Standard library only (Blender's Python imports it). Defined once here; protocol validation, the CLI's
argument parser and the add-on's properties and checks all read these names.
"""

# Limits a job must stay within (protocol validation enforces them; the add-on's properties mirror them).
MAX_FRAMES = 1024  # frames in one clip (also the longest list in a job)
MIN_SIZE = 64  # width / height in pixels, multiples of SIZE_MULTIPLE
MAX_SIZE = 2048
SIZE_MULTIPLE = 8
MAX_STEPS = 500
MAX_GUIDANCE = 50.0

# Default models: the built-in texture model ships inside zss_core and works offline.
DEFAULT_MODEL = "builtin:textures"
# The depth ControlNet that goes with a model when the user names none ("" when there is none).
DEFAULT_CONTROLNETS = {"builtin:textures": "builtin:textures-depth", "tiny": "tiny"}

# Noise models of zss_core.noise, in the order the UI lists them.
NOISE_MODELS = ("dependency", "mixed", "progressive", "independent")


def default_controlnet(model):
    """The depth ControlNet that goes with ``model`` when none is set ("" when there is none)."""
    return DEFAULT_CONTROLNETS.get(model, "")
