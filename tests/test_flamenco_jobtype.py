"""The Flamenco job type (integrations/flamenco/zss-generate.js), compiled by node with a stand-in of
Flamenco's job-compiler runtime (tests/flamenco/author_stub.js): its settings follow Flamenco's
AvailableJobSetting schema, its tasks, commands, arguments and dependencies are what a Worker needs, and
the `zss generate` and render_depth.py command lines it writes parse with the real parsers into exactly
the submitted values. Running the depth task in real Blender is tests/blender/test_blender_flamenco.py."""

import importlib.util
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from zss_core import cli, protocol

ROOT = Path(__file__).resolve().parents[1]
JOB_TYPE_JS = ROOT / "integrations" / "flamenco" / "zss-generate.js"
RENDER_DEPTH = ROOT / "integrations" / "flamenco" / "render_depth.py"
STUB = ROOT / "tests" / "flamenco" / "author_stub.js"
NODE = shutil.which("node")


# Flamenco's OpenAPI schema (pkg/api/flamenco-openapi.yaml): AvailableJobType and AvailableJobSetting.
JOB_TYPE_KEYS = {"label", "description", "settings"}
SETTING_KEYS = {
    "key",
    "type",
    "subtype",
    "choices",
    "propargs",
    "description",
    "default",
    "eval",
    "evalInfo",
    "visible",
    "required",
    "editable",
}
SETTING_TYPES = {"string": str, "int32": int, "float": (int, float), "bool": bool}
SUBTYPES = {"file_path", "dir_path", "file_name", "hashed_file_path"}
VISIBILITY = {"visible", "hidden", "submission", "web"}

CREATED = "2026-03-04T05:06:07Z"  # node runs with TZ=UTC: the job folder's timestamp is 2026-03-04_050607
PROMPT = '-a "koi" pond,  ripples\'s  glow '  # leading dash, quotes, doubled and trailing spaces
NEGATIVE = '--blurry, "low quality"'


def load_render_depth():
    """render_depth.py as a module (its parser needs no bpy)."""
    spec = importlib.util.spec_from_file_location("render_depth_under_test", RENDER_DEPTH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compile_job(settings, name="shot 010 · koi"):
    """Compile one job with the stand-in runtime; returns its JSON result (or {'error': …})."""
    if NODE is None:
        pytest.skip("node is not installed: the job type is JavaScript, compiled here by node")
    job = {"name": name, "created": CREATED, "settings": settings, "metadata": {"user.name": "test"}}
    result = subprocess.run(
        [NODE, str(STUB), str(JOB_TYPE_JS)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TZ": "UTC"},
        check=False,
    )
    assert result.returncode in (0, 3), result.stderr
    return json.loads(result.stdout)


def base_settings(**overrides):
    """Settings as Flamenco's Blender add-on submits them: every setting it shows, evaluated."""
    settings = {
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE,
        "lam": 0.0375,
        "mu": 0.935,
        "frames": 12,
        "frame_start": 101,
        "width": 640,
        "height": 384,
        "steps": 25,
        "guidance": 6.5,
        "seed": 1234,
        "model": "/farm/models/sd15",
        "fps": 25.0,
        "loop": False,
        "tile_x": False,
        "tile_y": False,
        "use_depth": False,
        "camera": "ShotCam",
        "control_scale": 0.8,
        "controlnet": "",
        "depth_script": "/farm/addons/zs2_video/integrations/flamenco/render_depth.py",
        "blendfile": "/farm/shots/010/koi.flamenco.blend",
        "render_output_root": "/farm/renders",
        "render_output_path": "/farm/renders/shot 010 · koi/{timestamp}",
        "zss_exe": "zss",
    }
    settings.update(overrides)
    return settings


OUTPUT = "/farm/renders/shot 010 · koi/2026-03-04_050607"


def task_named(result, name):
    (task,) = [t for t in result["tasks"] if t["name"] == name]
    return task


def generate_argv(result):
    """The `zss generate` command line of the generate task, as the Worker runs it (exe + args)."""
    (command,) = task_named(result, "generate")["commands"]
    assert command["name"] == "exec"
    params = command["parameters"]
    assert set(params) == {"exe", "args"}
    assert all(isinstance(a, str) for a in params["args"]), params["args"]
    return params["exe"], params["args"]


def test_job_type_settings_follow_flamencos_schema():
    job_type = compile_job(base_settings())["job_type"]
    assert set(job_type) <= JOB_TYPE_KEYS and job_type["label"] == "ZS² Generate"
    keys = [s["key"] for s in job_type["settings"]]
    assert len(keys) == len(set(keys)), "setting keys must be unique"
    for s in job_type["settings"]:
        assert set(s) <= SETTING_KEYS, (s["key"], set(s) - SETTING_KEYS)
        assert s["type"] in SETTING_TYPES, s
        assert s.get("visible", "visible") in VISIBILITY, s
        if "subtype" in s:
            assert s["type"] == "string" and s["subtype"] in SUBTYPES, s
        if "default" in s:
            assert isinstance(s["default"], SETTING_TYPES[s["type"]]), s
        if "evalInfo" in s:
            assert set(s["evalInfo"]) == {"showLinkButton", "description"} and "eval" in s, s
    # Everything the issue names is a setting.
    assert {
        "prompt",
        "negative_prompt",
        "lam",
        "mu",
        "frames",
        "width",
        "height",
        "steps",
        "model",
        "seed",
        "use_depth",
        "loop",
        "tile_x",
        "tile_y",
        "blendfile",
        "camera",
        "render_output_root",
    } <= set(keys)


def test_depth_off_one_generate_task_on_zss_workers():
    result = compile_job(base_settings())
    assert "error" not in result, result
    (task,) = result["tasks"]
    assert (task["name"], task["type"], task["dependencies"]) == ("generate", "zss", [])
    assert result["settings"]["render_output_path"] == OUTPUT  # {timestamp} filled in, as Flamenco does
    exe, args = generate_argv(result)
    assert exe == "zss"
    assert args[0] == "generate"
    assert not [a for a in args if a.startswith("--control")]

    parsed = cli.build_parser().parse_args(args)
    assert parsed.command == "generate"
    assert parsed.prompt == PROMPT and parsed.negative == NEGATIVE
    assert parsed.lam == 0.0375 and parsed.mu == 0.935
    assert (parsed.frames, parsed.size, parsed.steps, parsed.seed) == (12, (640, 384), 25, 1234)
    assert (parsed.guidance, parsed.fps, parsed.model) == (6.5, 25.0, "/farm/models/sd15")
    assert (parsed.out, parsed.id) == (OUTPUT, "clip")
    assert (parsed.loop, parsed.tile, parsed.control_depth) == (False, None, None)

    job = cli.job_from_args(parsed)  # the protocol job `zss generate` would run
    assert protocol.validate_job(job) == []
    assert (job["prompt"], job["negative_prompt"], job["lam"], job["mu"]) == (PROMPT, NEGATIVE, 0.0375, 0.935)
    assert job["output_dir"] == OUTPUT and job["id"] == "clip"


def test_depth_on_renders_depth_first_then_generates_from_it():
    result = compile_job(base_settings(use_depth=True, controlnet="/farm/models/cn-depth"))
    assert "error" not in result, result
    depth, generate = result["tasks"]  # added in the order they can run
    assert (depth["name"], depth["type"], depth["dependencies"]) == ("depth-maps", "blender", [])
    assert (generate["name"], generate["type"], generate["dependencies"]) == ("generate", "zss", [depth["id"]])

    (command,) = depth["commands"]
    assert command["name"] == "blender-render"
    params = command["parameters"]
    assert params["exe"] == "{blender}" and params["exeArgs"] == "{blenderArgs}"  # Manager variables
    assert params["argsBefore"] == [] and params["blendfile"] == "/farm/shots/010/koi.flamenco.blend"
    args = params["args"]
    assert all(isinstance(a, str) for a in args)
    # A Python error must fail the task: --python-exit-code comes before --python.
    assert args[:5] == ["--python-exit-code", "1", "--python", base_settings()["depth_script"], "--"]
    depth_args = load_render_depth().build_parser().parse_args(args[5:])
    assert depth_args.out == f"{OUTPUT}/depth"
    assert (depth_args.camera, depth_args.frame_start, depth_args.frames) == ("ShotCam", 101, 12)
    assert depth_args.size == (640, 384)

    parsed = cli.build_parser().parse_args(generate_argv(result)[1])
    assert parsed.control_depth == depth_args.out  # the generate task reads what the depth task wrote
    assert (parsed.control_scale, parsed.controlnet) == (0.8, "/farm/models/cn-depth")
    assert (parsed.prompt, parsed.lam, parsed.mu, parsed.frames) == (PROMPT, 0.0375, 0.935, 12)


def test_loop_and_tile_flags():
    parse = cli.build_parser().parse_args
    args = generate_argv(compile_job(base_settings(loop=True, tile_x=True, tile_y=True)))[1]
    assert (parse(args).loop, parse(args).tile) == (True, "xy")
    args = generate_argv(compile_job(base_settings(tile_y=True)))[1]
    assert (parse(args).loop, parse(args).tile) == (False, "y")


def test_unsubmitted_settings_fall_back_to_the_job_types_defaults():
    """The web UI / API may leave out settings that the Blender add-on would send."""
    result = compile_job(
        {
            "prompt": "blue marble veins",
            "model": "builtin:textures",
            "frames": 8,
            "width": 64,
            "height": 64,
            "render_output_root": "/farm/renders",
        },
        name="api job",
    )
    assert "error" not in result, result
    # No eval through the API: the folder is what the render_output_path eval would give.
    assert result["settings"]["render_output_path"] == "/farm/renders/api job/2026-03-04_050607"
    exe, args = generate_argv(result)
    parsed = cli.build_parser().parse_args(args)
    defaults = cli.build_parser().parse_args(["generate", "x"])
    assert exe == "zss"
    # The job each argv makes (steps and guidance default through the preset table, not the parser).
    made, reference = cli.job_from_args(parsed), cli.job_from_args(defaults)
    assert [made[k] for k in ("lam", "mu", "steps", "guidance")] == [
        reference[k] for k in ("lam", "mu", "steps", "guidance")
    ]
    assert (parsed.negative, parsed.seed, parsed.loop, parsed.tile) == ("", 0, False, None)
    assert (parsed.out, parsed.id) == ("/farm/renders/api job/2026-03-04_050607", "clip")


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"prompt": "   "}, '"prompt"'),
        ({"model": ""}, '"model"'),
        ({"use_depth": True, "camera": ""}, '"camera"'),
        ({"use_depth": True, "blendfile": ""}, '"blendfile"'),
        ({"use_depth": True, "depth_script": ""}, '"depth_script"'),
        ({"render_output_path": "", "render_output_root": " "}, '"render_output_root"'),
    ],
)
def test_missing_settings_refuse_the_job_naming_the_setting(overrides, named):
    result = compile_job(base_settings(**overrides))
    assert "tasks" not in result
    assert named in result["error"] and "ZS² Generate" in result["error"]


def test_depth_off_needs_no_blend_file_or_camera():
    result = compile_job(base_settings(camera="", blendfile="", depth_script=""))
    assert [t["name"] for t in result["tasks"]] == ["generate"]


def test_the_extension_zip_ships_the_depth_script_beside_the_addon(extension_zip):
    """Workers with the add-on installed have render_depth.py at <add-on>/integrations/flamenco/, where it
    finds the add-on's depth renderer two folders up (the depth_script setting points there)."""
    names = set(zipfile.ZipFile(extension_zip).namelist())
    assert {"integrations/flamenco/render_depth.py", "zss_blender/depth.py", "__init__.py"} <= names


def test_depth_script_finds_the_addon_it_ships_in_or_says_how_to_point_at_it(tmp_path):
    shipped = load_render_depth()
    assert shipped.addon_root() == str(ROOT)  # <add-on>/integrations/flamenco/render_depth.py
    assert shipped.script_args(["blender", "-b", "f.blend", "--python", "x.py", "--", "--frames", "2"]) == [
        "--frames",
        "2",
    ]
    assert shipped.script_args(["blender", "-b"]) == []

    alone = tmp_path / "render_depth.py"  # copied somewhere without the add-on around it
    shutil.copy(RENDER_DEPTH, alone)
    spec = importlib.util.spec_from_file_location("render_depth_alone", alone)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(module.SetupError, match="--addon-dir"):
        module.addon_root()
    assert module.addon_root(str(ROOT)) == str(ROOT)
