"""Every difference between the Blender versions the add-on supports (4.2 LTS … 5.3), in one place.

The rest of the add-on calls these names instead of testing `bpy.app.version` or `hasattr` itself, so
supporting a new Blender means reading (and testing) this file only. Tested by `make test-matrix`.
"""

import bpy

VERSION = bpy.app.version

# EEVEE's render-engine id: "EEVEE Next" kept its development name through 4.x.
EEVEE = "BLENDER_EEVEE" if VERSION >= (5, 0, 0) else "BLENDER_EEVEE_NEXT"

# 5.0 splits ImageFormatSettings.file_format by image_settings.media_type ('IMAGE', 'MULTI_LAYER_IMAGE',
# 'VIDEO'); the media type must be set (and restored) before the file format.
HAS_MEDIA_TYPE = VERSION >= (5, 0, 0)

# Options of a path property that may hold a //-relative path: 4.5+ warns about such a path in the
# preferences unless the property says it supports one; 4.2 has neither the option nor the warning.
BLEND_RELATIVE_PATH = (
    {"PATH_SUPPORTS_BLEND_RELATIVE"}
    if "is_path_supports_blend_relative" in bpy.types.Property.bl_rna.properties
    else set()
)

# Colour management's white balance (4.3+): a temporary render with neutral colours turns it off.
HAS_WHITE_BALANCE = "use_white_balance" in bpy.types.ColorManagedViewSettings.bl_rna.properties


def top_level_strips(editor):
    """The sequencer's top-level strips (4.4 renamed `sequences` to `strips`; 5.0 removed `sequences`)."""
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def all_strips(editor):
    """Every strip, including those inside meta strips (`strips_all`, 4.2–4.3 `sequences_all`)."""
    return editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all


def new_node_material(name):
    """A new material with a node tree (5.0 always has one and deprecates `use_nodes`)."""
    material = bpy.data.materials.new(name)
    if VERSION < (5, 0, 0):
        material.use_nodes = True
    return material


def action_fcurves(id_data):
    """The F-curves animating id_data, or None when it has no action.

    4.4 introduced slotted (layered) actions: the F-curves of one datablock live in the channelbag of its
    action slot, and 5.0 removed `Action.fcurves`. 4.2–4.3 keep them on the action.
    """
    animation_data = getattr(id_data, "animation_data", None)
    action = animation_data.action if animation_data else None
    if action is None:
        return None
    if VERSION >= (4, 4, 0):
        from bpy_extras import anim_utils

        slot = animation_data.action_slot
        channelbag = anim_utils.action_get_channelbag_for_slot(action, slot) if slot is not None else None
        return channelbag.fcurves if channelbag is not None else None
    return action.fcurves
