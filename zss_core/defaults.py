"""Facts the engine, the CLI and the Blender add-on share: limits, default models, the names of choices.

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
# Models trained / built at 64×64: their natural default frame size (others: 512×512).
SMALL_MODELS = ("builtin:textures", "tiny")

# Noise models of zss_core.noise, in the order the UI lists them.
NOISE_MODELS = ("dependency", "mixed", "progressive", "independent")
# How the dependency noise makes each frame (zss_core.noise): "exact" unbiased (default), "paper" the
# paper's search, "closest" the paper's random search with exact α (biased, the pre-issue-16 default).
SEARCHES = ("exact", "paper", "closest")
# Schedulers a job can name (zss_core.models maps them to diffusers classes).
SCHEDULERS = (
    "ddim",
    "euler",
    "euler_a",
    "dpmpp",
    "pndm",
    "lms",
    "unipc",
    "lcm",
    "tcd",
    "ddim-trailing",
    "euler-trailing",
)
# LCM and TCD pick their steps from a 50-step schedule (diffusers' original_inference_steps): no more.
FEW_STEP_SCHEDULERS = ("lcm", "tcd")
FEW_STEP_MAX_STEPS = 50
# How prompt-travel embeddings are blended between keys (zss_core.prompts).
PROMPT_INTERPOLATIONS = ("linear", "slerp")


def default_controlnet(model: str) -> str:
    """The depth ControlNet that goes with ``model`` when none is set ("" when there is none)."""
    return DEFAULT_CONTROLNETS.get(model, "")


def default_size(model: str) -> tuple[int, int]:
    """(width, height) a clip gets when none is asked for: the size ``model`` was made for."""
    return (64, 64) if model in SMALL_MODELS else (512, 512)
