"""Add-on preferences: where the generator lives and what it loads (per machine, not per .blend).

The properties are a mixin (Properties); panels.ZSSPreferences adds the drawing and is the class
Blender registers, so this module imports no UI. online_access() is the one place that
reads Blender's "Allow Online Access" (tests replace it: bpy.app.online_access is read-only).
"""

import json
import os

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import compat

# The extension's package (the repository root in a checkout, bl_ext.<repo>.zs2_video when installed):
# Blender keys add-on preferences by it.
ADDON_ID = __package__.rpartition(".")[0] or __package__

DEVICE_ITEMS = (
    ("AUTO", "Auto", "CUDA if available, then Apple MPS, else CPU"),
    ("CPU", "CPU", "Run on the CPU (slow, but always works)"),
    ("CUDA", "CUDA", "NVIDIA GPU"),
    ("MPS", "MPS", "Apple Silicon GPU"),
)

PRECISION_ITEMS = (
    ("AUTO", "Auto", "float16 on GPUs, float32 on the CPU"),
    ("FLOAT32", "Float32", "Full precision"),
    ("FLOAT16", "Float16", "Half precision (GPU)"),
    ("BFLOAT16", "BFloat16", "Brain float (recent GPUs and CPUs)"),
)

# Output Folder may be //-relative (resolved against the saved .blend).
BLEND_RELATIVE = compat.BLEND_RELATIVE_PATH

RECENT_MODELS = 8  # distinct models remembered after a finished clip

GENERATOR_ITEMS = (
    ("LOCAL", "This Computer", "Run the generator here, in Generator Python (needs torch and a GPU or patience)"),
    ("SERVER", "A Server", "Send jobs to a ZS² server (`zss serve`) on a GPU machine; frames come back here"),
)
TOKEN_ENV = "ZSS_TOKEN"  # the server token from the environment when the preference is empty
SERVER_DEFAULT_MODEL = "textures"  # the model name every server offers without a models.toml

STRIP_SOURCE_ITEMS = (
    ("IMAGES", "Image Sequence", "Sequencer strip from the PNG frames (exact pixels)"),
    ("MOVIE", "Movie", "Sequencer strip from the MP4 (one file)"),
)


def _server_model_names(self, context, edit_text):
    """The Model field's suggestions in server mode: the names from the last Check Server."""
    return server_model_names(self) if self.generator == "SERVER" else []


class Properties:
    """The preferences' properties (per machine, not per .blend); panels.ZSSPreferences registers them."""

    generator: EnumProperty(name="Generator", items=GENERATOR_ITEMS, default="LOCAL")
    server_url: StringProperty(
        name="Server URL",
        description="The ZS² server, e.g. https://gpu-box.example:7860 or http://127.0.0.1:7860 (zss serve)",
    )
    server_token: StringProperty(
        name="Token",
        subtype="PASSWORD",
        description="The token the server's admin made with `zss token new`. Kept in Blender's user "
        f"preferences (userpref.blend), never in a .blend or a clip folder; empty: the {TOKEN_ENV} "
        "environment variable",
    )
    server_cafile: StringProperty(
        name="Certificate",
        subtype="FILE_PATH",
        description="Optional: the server's certificate (PEM) when it uses a self-signed one for HTTPS",
    )
    server_models: StringProperty(
        name="Server Models",
        default="[]",
        options={"HIDDEN"},
        description="JSON list of the models the server offered at the last Check Server",
    )

    python_path: StringProperty(
        name="Generator Python",
        subtype="FILE_PATH",
        description="Python executable of the environment with torch and diffusers "
        "(for example <venv>/bin/python or <venv>\\Scripts\\python.exe); Set Up Generator fills "
        "it in",
    )
    generator_dir: StringProperty(
        name="Environment Folder",
        subtype="DIR_PATH",
        description="Where Set Up Generator creates the generator environment; empty = the add-on's own user folder",
    )
    setup_python: StringProperty(
        name="Base Python",
        subtype="FILE_PATH",
        description="Python that creates the generator environment (3.10 or newer); empty = Blender's own Python",
    )
    setup_torch_spec: StringProperty(
        name="Torch Override",
        description="pip arguments for torch instead of the automatic choice (CUDA build with an NVIDIA "
        "GPU, else CPU), e.g. 'torch==2.5.1' or 'torch --index-url https://download.pytorch.org/whl/cu121'",
    )
    setup_pip_args: StringProperty(
        name="Extra pip Arguments",
        description="Added to every pip install of the setup, e.g. '--index-url URL' or '--proxy URL'",
    )
    model: StringProperty(
        name="Model",
        description="Stable Diffusion 1.x, 2.x or SDXL model: a diffusers folder, a .safetensors file, a hub id, "
        "'tiny' for the test model; empty: the built-in texture model (builtin:textures). With a server: "
        "one of the server's model names (Check Server lists them); empty: textures",
        search=_server_model_names,
    )
    draft_lora: StringProperty(
        name="Draft LoRA",
        subtype="FILE_PATH",
        description="The LCM-LoRA the Draft preset applies: a .safetensors file or a hub id for the model's "
        "family (e.g. latent-consistency/lcm-lora-sdv1-5); empty: the model must be an LCM model itself",
    )
    recent_models: StringProperty(
        name="Recent Models",
        default="[]",
        options={"HIDDEN"},
        description="JSON list of the last models that finished a clip, newest first",
    )
    allow_pickle: BoolProperty(
        name="Allow Legacy Pickle Checkpoints",
        default=False,
        description="Also load .ckpt / .pt / .bin checkpoints. These are Python pickles: a malicious file "
        "can run code on this computer when loaded (the generator loads weights only, which "
        "blocks most but not every attack). Only enable it for files from sources you trust; "
        "prefer .safetensors",
    )
    attention_slicing: BoolProperty(
        name="Attention Slicing",
        default=False,
        description="Compute attention in slices: less GPU memory, a little slower",
    )
    vae_tiling: BoolProperty(
        name="VAE Tiling", default=False, description="Decode frames in tiles: much less memory for large sizes"
    )
    fast_gpu: BoolProperty(
        name="Fast GPU Paths",
        default=False,
        description="On NVIDIA GPUs: channels-last layout, compiled model parts (the first clip of each size "
        "compiles for minutes, later ones are faster), fused attention projections and tiled decoding "
        "of large frames. No effect on the CPU",
    )
    cpu_offload: BoolProperty(
        name="CPU Offload",
        default=False,
        description="Keep model parts in system memory and move them to the GPU when needed: the least GPU "
        "memory, clearly slower",
    )
    controlnet_model: StringProperty(
        name="Depth ControlNet",
        description="Depth ControlNet for Depth Control: a folder, .safetensors file, hub id, or 'tiny'; "
        "empty: the built-in model's own (builtin:textures-depth)",
    )
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="AUTO")
    precision: EnumProperty(name="Precision", items=PRECISION_ITEMS, default="AUTO")
    output_dir: StringProperty(
        name="Output Folder",
        subtype="DIR_PATH",
        options=BLEND_RELATIVE,
        description="Where clips go for unsaved .blend files (an absolute folder; saved files use //zss/ next "
        "to the .blend). A //-relative folder such as //clips is resolved against the saved .blend "
        "and is used for saved files",
    )
    max_resolution: IntProperty(
        name="Max Resolution",
        default=768,
        min=64,
        max=2048,
        subtype="PIXEL",
        description="Largest side of a clip when the size follows the render resolution",
    )
    strip_source: EnumProperty(name="Strip From", items=STRIP_SOURCE_ITEMS, default="IMAGES")


def get(context=None):
    """This add-on's preferences; raises LookupError with a fix when the add-on is not enabled."""
    prefs = (context or bpy.context).preferences
    addon = prefs.addons.get(ADDON_ID)
    if addon is None:
        raise LookupError(
            f"The ZS² add-on ({ADDON_ID}) is not enabled — enable it in Preferences ▸ Add-ons (or Extensions)"
        )
    return addon.preferences


def online_access():
    """Blender's System ▸ Network ▸ Allow Online Access (True before 4.2, which had no such setting)."""
    return bool(getattr(bpy.app, "online_access", True))


def recent_models(prefs):
    """The remembered models, newest first."""
    try:
        models = json.loads(prefs.recent_models or "[]")
    except ValueError:
        return []
    return [m for m in models if isinstance(m, str) and m][:RECENT_MODELS]


def remember_model(prefs, model):
    """Put model first in the recent list (distinct, at most RECENT_MODELS)."""
    if not model:
        return
    models = [model] + [m for m in recent_models(prefs) if m != model]
    prefs.recent_models = json.dumps(models[:RECENT_MODELS])


def is_hub_id(text):
    """A Hugging Face id ("owner/name"): not an existing path, exactly one '/'."""
    text = text.strip()
    if not text or text.count("/") != 1 or "\\" in text or text.startswith((".", "/", "~")):
        return False
    owner, name = text.split("/")
    return bool(owner and name) and not os.path.exists(os.path.expanduser(text)) and " " not in text


def uses_server(prefs):
    """Whether jobs go to a ZS² server instead of the generator on this computer."""
    return prefs.generator == "SERVER"


def server_token(prefs):
    """The token: the preference, else the ZSS_TOKEN environment variable, else None."""
    return prefs.server_token.strip() or os.environ.get(TOKEN_ENV, "").strip() or None


def server_models(prefs):
    """The models the server offered at the last Check Server: [{"name", "family", "controlnet"}, …]."""
    try:
        models = json.loads(prefs.server_models or "[]")
    except ValueError:
        return []
    return [m for m in models if isinstance(m, dict) and isinstance(m.get("name"), str)]


def server_model_names(prefs):
    return [m["name"] for m in server_models(prefs)]


def remember_server_models(prefs, models):
    """Keep what Check Server found (the Model field suggests these names)."""
    prefs.server_models = json.dumps(
        [{"name": m["name"], "family": m.get("family", ""), "controlnet": bool(m.get("controlnet"))} for m in models]
    )
