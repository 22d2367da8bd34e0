"""Add-on preferences: where the generator lives and what it loads (per machine, not per .blend)."""

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

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

STRIP_SOURCE_ITEMS = (
    ("IMAGES", "Image Sequence", "Sequencer strip from the PNG frames (exact pixels)"),
    ("MOVIE", "Movie", "Sequencer strip from the MP4 (one file)"),
)


class ZSSPreferences(bpy.types.AddonPreferences):
    """The generator runs in its own Python (with torch): Blender's Python has none."""

    bl_idname = ADDON_ID

    python_path: StringProperty(
        name="Generator Python", subtype='FILE_PATH',
        description="Python executable of the environment with torch and diffusers "
                    "(for example <venv>/bin/python or <venv>\\Scripts\\python.exe)")
    model: StringProperty(
        name="Model",
        description="Stable Diffusion 1.x model: a diffusers folder, a .safetensors file, a hub id, "
                    "or 'tiny' for the built-in test model")
    controlnet_model: StringProperty(
        name="Depth ControlNet",
        description="Depth ControlNet for Depth Control: a folder, .safetensors file, hub id, or 'tiny'")
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="AUTO")
    precision: EnumProperty(name="Precision", items=PRECISION_ITEMS, default="AUTO")
    output_dir: StringProperty(
        name="Output Folder", subtype='DIR_PATH',
        description="Where clips go for unsaved .blend files (saved files use //zss/ next to the .blend)")
    max_resolution: IntProperty(
        name="Max Resolution", default=768, min=64, max=2048, subtype='PIXEL',
        description="Largest side of a clip when the size follows the render resolution")
    strip_source: EnumProperty(name="Strip From", items=STRIP_SOURCE_ITEMS, default="IMAGES")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        col = layout.column()
        col.prop(self, "python_path")
        col.prop(self, "model")
        col.prop(self, "controlnet_model")
        col.prop(self, "device")
        col.prop(self, "precision")
        col.prop(self, "output_dir")
        col.prop(self, "max_resolution")
        col.prop(self, "strip_source")
        layout.operator("zss.check_generator", icon='CONSOLE')


def get(context=None):
    """This add-on's preferences; raises LookupError with a fix when the add-on is not enabled."""
    prefs = (context or bpy.context).preferences
    addon = prefs.addons.get(ADDON_ID)
    if addon is None:
        raise LookupError(f"The ZS² add-on ({ADDON_ID}) is not enabled — enable it in "
                          "Preferences ▸ Add-ons (or Extensions)")
    return addon.preferences


CLASSES = (ZSSPreferences,)
