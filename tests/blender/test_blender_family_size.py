"""The model's family drives the size (issue 15 §1, real bpy): the panel says what size the preferences'
model was made for, warns when the clip is far from it with a button that sets it, and reads the model's
configs once per model (family.py's cache), not on every draw.

The models are diffusers folders holding only their JSON configs: the model check reads nothing else
(the same configs as the tiny SDXL/SD 2.x of tests/conftest.py, cut to what the check reads)."""

import json
import os

import pytest
from test_blender_panels import draw

pytestmark = pytest.mark.blender

SDXL_UNET = {
    "in_channels": 4,
    "cross_attention_dim": 64,
    "addition_embed_type": "text_time",
    "use_linear_projection": True,
}
SD2_UNET = {"in_channels": 4, "cross_attention_dim": 32, "use_linear_projection": True}


def model_folder(root, name, unet, prediction="epsilon"):
    """A diffusers folder with model_index.json, unet/config.json and scheduler/scheduler_config.json."""
    folder = root / name
    (folder / "unet").mkdir(parents=True)
    (folder / "scheduler").mkdir()
    encoders = {"text_encoder": ["transformers", "CLIPTextModel"], "unet": ["diffusers", "UNet2DConditionModel"]}
    if unet.get("addition_embed_type") == "text_time":
        encoders["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
    (folder / "model_index.json").write_text(json.dumps(encoders))
    (folder / "unet" / "config.json").write_text(json.dumps(unet))
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"prediction_type": prediction}))
    return folder


def labels(log):
    return [text for kind, *rest in log if kind == "label" for text in rest]


def size_lines(log):
    return [text for text in labels(log) if "made for" in text or "far from" in text]


def test_an_sdxl_model_says_1024_and_warns_at_512_until_the_button_sets_it(zb, prefs, tmp_path):
    import bpy

    settings = bpy.context.scene.zss
    prefs.model = str(model_folder(tmp_path, "sdxl", SDXL_UNET))
    settings.width, settings.height = 512, 512
    log = draw(zb)
    assert size_lines(log) == ["SDXL model: made for 1024×1024", "512×512 is far from it"]
    assert ("operator", "zss.use_family_size") in log

    assert zb.operators.ZSS_OT_use_family_size.bl_options == {"REGISTER", "UNDO"}
    assert bpy.ops.zss.use_family_size() == {"FINISHED"}
    assert (settings.width, settings.height) == (1024, 1024)
    log = draw(zb)
    assert size_lines(log) == ["SDXL model: made for 1024×1024"]  # no warning at its own size
    assert ("operator", "zss.use_family_size") not in log

    settings.width, settings.height = 1024, 768  # within half to twice the area: no warning
    assert size_lines(draw(zb)) == ["SDXL model: made for 1024×1024"]
    render = bpy.context.scene.render
    render.resolution_x, render.resolution_y, render.resolution_percentage = 1920, 1080, 100
    settings.width, settings.height = 0, 0  # Auto: the render size capped by Max Resolution (768): 768×432
    assert size_lines(draw(zb)) == ["SDXL model: made for 1024×1024", "768×432 is far from it"]


def test_sd2_sizes_follow_the_prediction_type_and_sd_models_warn_at_1024(zb, prefs, tmp_path):
    import bpy

    settings = bpy.context.scene.zss
    settings.width, settings.height = 1024, 1024
    prefs.model = str(model_folder(tmp_path, "sd2-v", SD2_UNET, prediction="v_prediction"))
    assert size_lines(draw(zb)) == ["Stable Diffusion 2.x model: made for 768×768"]  # 1024² is 1.8× its area
    prefs.model = str(model_folder(tmp_path, "sd2-base", SD2_UNET))
    assert size_lines(draw(zb)) == ["Stable Diffusion 2.x model: made for 512×512", "1024×1024 is far from it"]
    bpy.ops.zss.use_family_size()
    assert (settings.width, settings.height) == (512, 512)


def test_builtin_tiny_hub_ids_and_servers(zb, prefs):
    import bpy

    settings = bpy.context.scene.zss
    settings.width, settings.height = 512, 512
    prefs.model = ""  # the built-in texture model
    assert size_lines(draw(zb)) == ["Built-in texture model: made for 64×64", "512×512 is far from it"]
    prefs.model = "tiny"
    assert size_lines(draw(zb))[0] == "Tiny test model: made for 64×64"
    for unknown in ("stabilityai/stable-diffusion-xl-base-1.0", "/no/such/model"):  # not known before loading
        prefs.model = unknown
        assert size_lines(draw(zb)) == []
        with pytest.raises(RuntimeError, match="not known before it loads"):  # reported as an error
            bpy.ops.zss.use_family_size()
        assert (settings.width, settings.height) == (512, 512)
    prefs.model, prefs.generator = "", "SERVER"  # a server's model name says nothing here
    assert size_lines(draw(zb)) == []


def test_draws_read_the_configs_once_per_model_and_again_when_they_change(zb, prefs, tmp_path):
    cache = zb.family.cache
    folder = model_folder(tmp_path, "sdxl", SDXL_UNET)
    prefs.model = str(folder)
    before = cache.reads
    for _ in range(20):
        draw(zb)
    assert cache.reads == before + 1  # 20 draws, one read

    config = folder / "unet" / "config.json"
    config.write_text(json.dumps({**SDXL_UNET, "addition_embed_type": None, "use_linear_projection": False}))
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later modification time
    assert size_lines(draw(zb))[0] == "Stable Diffusion 1.x model: made for 512×512"
    assert cache.reads == before + 2

    prefs.model = str(model_folder(tmp_path, "other", SD2_UNET))
    draw(zb)
    draw(zb)
    assert cache.reads == before + 3


def header_file(path, shapes):
    """A .safetensors file of only a header (the model check reads nothing else): SDXL's telling keys."""
    header = {name: {"dtype": "F16", "shape": list(shape), "data_offsets": [0, 0]} for name, shape in shapes.items()}
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text)
    return path


def test_a_single_sdxl_file_is_read_from_its_header_once(zb, prefs, tmp_path):
    import bpy

    unet = "model.diffusion_model.input_blocks."
    path = header_file(
        tmp_path / "sdxl.safetensors",
        {
            unet + "0.0.weight": (320, 4, 3, 3),
            unet + "4.1.transformer_blocks.0.attn2.to_k.weight": (640, 2048),
            "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
            "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": (1280,),
        },
    )
    bpy.context.scene.zss.width, bpy.context.scene.zss.height = 512, 512
    prefs.model = str(path)
    before = zb.family.cache.reads
    assert size_lines(draw(zb)) == ["SDXL model: made for 1024×1024", "512×512 is far from it"]
    draw(zb)
    assert zb.family.cache.reads == before + 1
