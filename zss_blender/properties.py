"""Scene.zss: the generation settings a user edits in the ZS² panel.

Two "auto" conventions keep the defaults in step with the scene without handlers:
- frames = 0 means "the scene's frame range" (frame_start..frame_end); frames > 0 uses
  zss.frame_start and that many frames.
- width = 0 or height = 0 means "from the render resolution", snapped to multiples of 8 and scaled
  down to the max_resolution preference.
Both are resolved when a job is built (jobspec.py), so the job always gets the actual numbers.
The prompt schedule (prompt travel) is a list of (scene frame, prompt) rows; an empty list means the
single prompt. Rows hold scene frames so they stay put when the clip range changes; jobspec turns them
into 0-based clip indices.
Restyle (restyle_source, strength) turns a job into video-to-video: the source frames are written when
the job is sent and travel as the job's init; a Selected Strip source gives the clip its range.
Runtime state (progress, errors, the running job) is not stored here: it lives in jobs.py's tasks, so a
saved .blend never holds a stale "running" job.
"""

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    StringProperty,
)

from ..zss_core import defaults, presets
from . import compat, restyle

_NOISE_DESCRIPTIONS = {
    "dependency": "ZS² dependency noise: each frame's noise depends on the previous one",
    "mixed": "PYoCo mixed noise: a shared component plus per-frame noise",
    "progressive": "PYoCo progressive noise: each frame's noise drifts from the previous",
    "independent": "Independent noise per frame (baseline, flickers)",
}
NOISE_ITEMS = tuple((name.upper(), name.capitalize(), _NOISE_DESCRIPTIONS[name]) for name in defaults.NOISE_MODELS)

TARGET_ITEMS = (
    ("MATERIAL", "Material", "Animated image texture in a material on the selected objects"),
    ("STRIP", "Strip", "Image strip in the video sequencer"),
    ("BOTH", "Both", "Material texture and sequencer strip"),
)

TILE_ITEMS = (
    ("NONE", "None", "Frames do not tile"),
    ("X", "X", "Frames tile seamlessly left to right"),
    ("Y", "Y", "Frames tile seamlessly top to bottom"),
    ("XY", "X and Y", "Frames tile seamlessly in both directions (a tileable texture)"),
)

INTERPOLATION_ITEMS = (
    ("LINEAR", "Linear", "Blend the prompt embeddings linearly between keys"),
    ("SLERP", "Spherical", "Blend along the sphere between keys (keeps the embedding's length)"),
)

# Scene.zss.preset: NONE, or a preset of zss_core/presets.py (expanded into job fields by jobspec.build).
PRESET_ITEMS = (
    ("NONE", "None", "Steps, guidance and scheduler as set here"),
    *((p.name.upper(), p.label, f"{p.summary()}; needs {p.needs}") for p in presets.PRESETS.values()),
)

CHUNK_AUTO = -1  # Scene.zss.chunk: -1 = "auto", 0 = all frames at once, N = N frames per batch


class ZSSPromptKey(bpy.types.PropertyGroup):
    """One row of the prompt schedule: from this scene frame on, the clip travels towards this prompt."""

    frame: IntProperty(
        name="Frame", default=1, description="Scene frame where this prompt is reached (inside the clip's range)"
    )
    prompt: StringProperty(name="Prompt", description="What the clip shows at this frame")


class ZSSLora(bpy.types.PropertyGroup):
    """One LoRA of the clip: its .safetensors file and how strongly it applies."""

    filepath: StringProperty(
        name="LoRA",
        subtype="FILE_PATH",
        options=compat.BLEND_RELATIVE_PATH,  # //-relative to the .blend; the job gets the absolute path
        description="The LoRA's .safetensors file (made for the model's family); with a server, its LoRA name",
    )
    weight: FloatProperty(
        name="Weight",
        default=1.0,
        min=-4.0,
        max=4.0,
        soft_min=0.0,
        soft_max=1.5,
        description="How strongly the LoRA applies (0: not at all, 1: as trained)",
    )


class ZSSSceneSettings(bpy.types.PropertyGroup):
    """What to generate; λ and μ are animatable so keyframes give per-frame values."""

    prompt: StringProperty(name="Prompt", description="What the clip should show")
    negative_prompt: StringProperty(name="Negative Prompt", description="What the clip should avoid")
    frames: IntProperty(
        name="Frames",
        default=0,
        min=0,
        max=defaults.MAX_FRAMES,
        description="Number of frames; 0 uses the scene's frame range (Start to End)",
    )
    frame_start: IntProperty(
        name="Start Frame",
        default=1,
        description="First frame of the clip when Frames is not 0 (otherwise the scene's start frame)",
    )
    width: IntProperty(
        name="Width",
        default=0,
        min=0,
        max=defaults.MAX_SIZE,
        subtype="PIXEL",
        description="Clip width, a multiple of 8; 0 follows the render resolution (capped by the "
        "add-on's max resolution)",
    )
    height: IntProperty(
        name="Height",
        default=0,
        min=0,
        max=defaults.MAX_SIZE,
        subtype="PIXEL",
        description="Clip height, a multiple of 8; 0 follows the render resolution",
    )
    preset: EnumProperty(
        name="Preset",
        items=PRESET_ITEMS,
        default="NONE",
        description="Draft: a rough clip in a few steps (LCM and the Draft LoRA of the preferences); Turbo: "
        "1 step for Turbo models. Replaces Steps and Guidance when the job is built",
    )
    steps: IntProperty(name="Steps", default=30, min=1, max=defaults.MAX_STEPS, description="Denoising steps")
    guidance: FloatProperty(
        name="Guidance", default=7.5, min=0.0, max=defaults.MAX_GUIDANCE, description="Classifier-free guidance scale"
    )
    seed: IntProperty(name="Seed", default=0, min=0, description="Random seed; the same seed gives the same clip")
    lam: FloatProperty(
        name="λ (Noise Dependency)",
        default=0.01,
        min=0.0,
        soft_max=1.0,
        precision=4,
        options={"ANIMATABLE"},
        description="How far each frame's noise may move from the previous frame's; keyframe it for "
        "per-frame values (small = calm, large = more change)",
    )
    mu: FloatProperty(
        name="μ (Momentum)",
        default=0.98,
        min=0.0,
        max=1.0,
        precision=3,
        options={"ANIMATABLE"},
        description="Temporal momentum attention: how much each frame attends to the running history; "
        "keyframe it for per-frame values",
    )
    noise: EnumProperty(
        name="Noise", items=NOISE_ITEMS, default="DEPENDENCY", description="Noise model shared across frames"
    )
    use_depth: BoolProperty(
        name="Depth Control",
        default=False,
        description="Render depth from the scene camera for every frame and condition the clip on it",
    )
    control_scale: FloatProperty(
        name="Control Strength", default=1.0, min=0.0, max=5.0, description="ControlNet conditioning scale"
    )
    chunk: IntProperty(
        name="Chunk",
        default=CHUNK_AUTO,
        min=CHUNK_AUTO,
        max=defaults.MAX_FRAMES,
        description="Frames per UNet batch, to bound GPU memory (the result is the same): -1 = Auto (the "
        "most that fit the free GPU memory), 0 = all frames at once, N = N frames",
    )
    cache_interval: IntProperty(
        name="Step Caching Interval",
        default=1,
        min=1,
        soft_max=5,
        max=defaults.MAX_STEPS,
        description="Run the full model every N denoising steps and only its outer layers on reused deep "
        "features in between: faster, slightly different frames (1 = off; 3 ≈ half the model time)",
    )
    loop: BoolProperty(
        name="Seamless Loop",
        default=False,
        description="The last frame flows into the first, so the clip loops without a jump",
    )
    tile: EnumProperty(
        name="Tileable",
        items=TILE_ITEMS,
        default="NONE",
        description="Make every frame tile seamlessly (a repeating texture); the material gets a "
        "'ZS² Tiling' Mapping node to scale it",
    )
    prompt_keys: CollectionProperty(
        type=ZSSPromptKey,
        name="Prompt Schedule",
        description="Prompt travel: the clip moves from one prompt to the next at these frames; empty = "
        "the Prompt above for the whole clip",
    )
    prompt_key_index: IntProperty(name="Active Prompt Key", default=0, min=0)
    loras: CollectionProperty(
        type=ZSSLora,
        name="LoRAs",
        description="LoRAs applied to the model for this clip (a style, a character); never baked into it",
    )
    lora_index: IntProperty(name="Active LoRA", default=0, min=0)
    prompt_interpolation: EnumProperty(
        name="Blend",
        items=INTERPOLATION_ITEMS,
        default="LINEAR",
        description="How prompts are blended between schedule keys",
    )
    restyle_source: EnumProperty(
        name="Restyle",
        items=restyle.SOURCE_ITEMS,
        default="NONE",
        description="Video to video: restyle existing frames into a coherent clip instead of generating "
        "from noise (the result gets the source's length and start)",
    )
    strength: FloatProperty(
        name="Strength",
        default=0.6,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
        description="How much of the source is redone: 0 keeps it, 1 ignores it (text to video); "
        "0.4–0.8 restyles while keeping its shapes and motion",
    )
    target: EnumProperty(
        name="Import As", items=TARGET_ITEMS, default="MATERIAL", description="Where the finished clip goes"
    )
    use_emission: BoolProperty(
        name="Emission", default=False, description="Also feed the clip into the material's emission so it shows unlit"
    )
    strip_placement: EnumProperty(
        name="Strip Goes To",
        default="PLATES",
        items=(
            (
                "PLATES",
                "Plates Scene",
                "A '<scene> · plates' edit scene: the clip as background plate under "
                "this scene's render; F12 here still renders the 3D scene",
            ),
            (
                "SCENE",
                "This Scene",
                "This scene's sequencer: F12 then renders the sequencer (only the clip), not the 3D scene",
            ),
        ),
        description="Where a Strip import goes",
    )
    mapping: EnumProperty(
        name="Mapping",
        default="CAMERA",
        items=(
            (
                "CAMERA",
                "Camera Projection",
                "Project a depth-controlled clip from the camera it was made "
                "for, so it sits on the geometry it was generated from",
            ),
            ("UV", "UV Map", "Use the object's UV map"),
        ),
        description="How a depth-controlled clip is mapped onto the object (without Depth Control: UV map)",
    )


CLASSES = (ZSSPromptKey, ZSSLora, ZSSSceneSettings)


def register():
    bpy.types.Scene.zss = bpy.props.PointerProperty(type=ZSSSceneSettings)


def unregister():
    del bpy.types.Scene.zss
