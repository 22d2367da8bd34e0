"""zss_blender.compat against the running Blender: each version difference is what this Blender has.

Run on every supported version by `make test-matrix` / `make test-blender BLENDER=...`.
"""

import pytest

pytestmark = pytest.mark.blender


def test_eevee_id_and_media_type_match_this_blender(zb):
    import bpy

    render = bpy.context.scene.render
    render.engine = zb.compat.EEVEE  # an unknown engine id raises TypeError
    assert render.engine == zb.compat.EEVEE
    assert hasattr(render.image_settings, "media_type") == zb.compat.HAS_MEDIA_TYPE


def test_strips_top_level_and_all_including_empty_editors(zb, tmp_path):
    import bpy

    scene = bpy.context.scene
    editor = scene.sequence_editor_create()
    # An empty collection is falsy: a `strips_all or sequences_all` fallback broke here on 5.0.
    assert len(zb.compat.top_level_strips(editor)) == 0 and list(zb.compat.all_strips(editor)) == []
    image = bpy.data.images.new("frame", 4, 4)
    image.filepath_raw = str(tmp_path / "frame.png")
    image.file_format = "PNG"
    image.save()
    strip = zb.compat.top_level_strips(editor).new_image("clip", image.filepath_raw, 1, 1)
    assert [s.name for s in zb.compat.all_strips(editor)] == [strip.name]


def test_node_material_and_keyframed_fcurves(zb):
    import bpy

    material = zb.compat.new_node_material("compat-test")
    assert any(node.type == "BSDF_PRINCIPLED" for node in material.node_tree.nodes)
    obj = bpy.data.objects["Cube"]  # the default scene's cube: not animated
    assert zb.compat.action_fcurves(obj) is None
    obj.location.x = 1.0
    obj.keyframe_insert("location", index=0, frame=1)
    obj.location.x = 3.0
    obj.keyframe_insert("location", index=0, frame=5)
    fcurve = zb.compat.action_fcurves(obj).find("location", index=0)
    assert fcurve is not None and fcurve.evaluate(5) == pytest.approx(3.0)


def test_output_folder_accepts_blend_relative_paths_where_blender_asks(zb):
    import bpy

    supported = "is_path_supports_blend_relative" in bpy.types.Property.bl_rna.properties
    assert bool(zb.compat.BLEND_RELATIVE_PATH) == supported == (zb.compat.VERSION >= (4, 5, 0))
    output_dir = zb.preferences.get().bl_rna.properties["output_dir"]
    assert not supported or output_dir.is_path_supports_blend_relative
