"""`zss generate` end to end on the tiny model, and its refusals of bad input."""

import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest
from PIL import Image

from zss_core.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "zss_core.cli", *args], capture_output=True, text=True, timeout=300)


def test_generate_writes_frames_video_sheet_and_manifest(tmp_path):
    proc = run_cli(
        "generate",
        "a red brick wall",
        "--model",
        "tiny",
        "--frames",
        "8",
        "--size",
        "64x64",
        "--steps",
        "3",
        "--out",
        str(tmp_path),
        "--id",
        "clip1",
    )
    assert proc.returncode == 0, proc.stderr
    job_dir = tmp_path / "clip1"
    assert proc.stdout.strip() == str(job_dir)
    frames = sorted(job_dir.glob("frame_*.png"))
    assert [f.name for f in frames] == [f"frame_{i:04d}.png" for i in range(1, 9)]
    assert Image.open(frames[0]).size == (64, 64)
    with av.open(str(job_dir / "clip.mp4")) as container:
        decoded = [f for f in container.decode(video=0)]
    assert len(decoded) == 8 and decoded[0].width == 64
    assert Image.open(job_dir / "contact_sheet.png").size == (3 * 64, 3 * 64)
    manifest = json.loads((job_dir / "job.json").read_text())
    assert manifest["status"] == "done" and manifest["frames"] == [f.name for f in frames]
    assert manifest["job"]["lam"] == 0.01 and manifest["seed"] == 0
    assert len(manifest["noise"]["alpha"]) == 8 and manifest["versions"]["torch"]
    assert manifest["timings"]["denoise_seconds"] > 0


def test_generate_with_depth_control(tmp_path):
    depth = tmp_path / "depth"
    depth.mkdir()
    for i in range(3):
        Image.fromarray(np.full((64, 64), 40 * i, np.uint8)).save(depth / f"d{i}.png")
    code = main(
        [
            "generate",
            "x",
            "--frames",
            "3",
            "--size",
            "64x64",
            "--steps",
            "2",
            "--control-depth",
            str(depth),
            "--out",
            str(tmp_path / "out"),
            "--id",
            "c",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out" / "c" / "control").iterdir()) == [
        "control_0001.png",
        "control_0002.png",
        "control_0003.png",
    ]


def test_manifest_points_at_the_kept_control_copies(tmp_path):
    """Bug 6: job.json names the job folder's control/ copies, not the staging files that get deleted."""
    import shutil

    from zss_core.protocol import Job

    staging = tmp_path / "staging"
    staging.mkdir()
    for i in range(3):
        Image.fromarray(np.full((64, 64), 60 * i, np.uint8)).save(staging / f"depth_{i}.png")
    code = main(
        [
            "generate",
            "x",
            "--model",
            "tiny",
            "--frames",
            "3",
            "--size",
            "64x64",
            "--steps",
            "2",
            "--control-depth",
            str(staging),
            "--out",
            str(tmp_path / "out"),
            "--id",
            "kept",
        ]
    )
    assert code == 0
    shutil.rmtree(staging)  # what the add-on does with its staging folder once the job is done
    job_dir = tmp_path / "out" / "kept"
    manifest = json.loads((job_dir / "job.json").read_text())
    images = manifest["job"]["control"]["images"]
    assert [os.path.dirname(p) for p in images] == [str(job_dir / "control")] * 3
    named = images + [str(job_dir / name) for name in manifest["frames"]]
    named += [str(job_dir / manifest[key]) for key in ("video", "contact_sheet")]
    assert all(os.path.isfile(p) for p in named), [p for p in named if not os.path.isfile(p)]
    rerun = dict(manifest["job"], id="again")
    assert Job.from_dict(rerun).control.images == images  # the folder alone reproduces the clip


@pytest.mark.parametrize(
    "args, message",
    [
        (["--frames", "0"], "frames"),
        (["--size", "65x64"], "width"),
        (["--mu", "1.5"], "mu"),
        (["--lam", "-0.1"], "lam"),
        (["--control-depth", "/nonexistent/dir/*.png"], "control-depth"),
        (["--frames", "3", "--control-depth", "{depth2}"], "control.images"),
    ],
)
def test_bad_input_exits_nonzero_and_writes_nothing(tmp_path, capsys, args, message):
    depth = tmp_path / "d2"
    depth.mkdir()
    for i in range(2):
        Image.new("L", (64, 64)).save(depth / f"{i}.png")
    args = [a.replace("{depth2}", str(depth)) for a in args]
    out = tmp_path / "out"
    code = main(
        ["generate", "p", "--size", "64x64", "--steps", "2", "--out", str(out), *args]
        if "--size" not in args
        else ["generate", "p", "--steps", "2", "--out", str(out), *args]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("zss: error:")
    assert not out.exists()


def test_loop_tile_and_prompt_travel_reach_the_manifest(tmp_path):
    code = main(
        [
            "generate",
            "a forest",
            "--prompt-at",
            "3",
            "a desert",
            "--loop",
            "--tile",
            "x",
            "--frames",
            "4",
            "--size",
            "64x64",
            "--steps",
            "2",
            "--out",
            str(tmp_path),
            "--id",
            "t",
        ]
    )
    assert code == 0
    job = json.loads((tmp_path / "t" / "job.json").read_text())["job"]
    assert job["loop"] is True and job["tile_x"] is True and job["tile_y"] is False
    assert job["prompts"] == [{"frame": 3, "prompt": "a desert"}]


def test_builtin_model_is_the_default(tmp_path):
    from zss_core.cli import build_parser, job_from_args

    job = job_from_args(build_parser().parse_args(["generate", "blue marble veins", "--control-depth", str(tmp_path)]))
    assert job["model"] == "builtin:textures" and job["controlnet_model"] == "builtin:textures-depth"
    assert (job["width"], job["height"]) == (64, 64)
    job = job_from_args(build_parser().parse_args(["generate", "x", "--model", "org/sd15"]))
    assert (job["width"], job["height"]) == (512, 512) and "controlnet_model" not in job


def test_a_non_utf8_out_folder_is_a_clear_error_not_a_traceback(tmp_path):
    """Issue 12, defect 8: a byte that is not UTF-8 in --out ended in a UnicodeEncodeError traceback
    after the job folder was made; now it is refused before anything is written."""
    out = os.fsdecode(os.fsencode(tmp_path) + b"/o\xff")
    proc = run_cli("generate", "x", "--model", "tiny", "--frames", "1", "--steps", "1", "--out", out, "--id", "a")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "out:" in proc.stderr and "UTF-8" in proc.stderr and "\\udcff" in proc.stderr
    assert os.listdir(tmp_path) == []


def test_a_latin1_control_image_name_is_read_and_kept_as_png(tmp_path):
    """Issue 12, defect 8: a Latin-1 file name under --control-depth ended in a UnicodeEncodeError; the
    image is now read through the OS's bytes and kept as control/control_0001.png (UTF-8 in job.json)."""
    depth = os.fsencode(tmp_path / "depth")
    os.mkdir(depth)
    Image.new("L", (64, 64), 128).save(depth + b"/d\xe9pth.png")
    out = tmp_path / "out"
    proc = run_cli(
        "generate", "x", "--model", "tiny", "--frames", "1", "--steps", "1", "--no-mp4",
        "--control-depth", os.fsdecode(depth), "--out", str(out), "--id", "lat",
    )  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    manifest = json.loads((out / "lat" / "job.json").read_text(encoding="utf-8"))
    assert manifest["job"]["control"]["images"] == [str(out / "lat" / "control" / "control_0001.png")]


def test_a_control_image_that_is_not_an_image_is_refused_naming_it_and_nothing_is_left(tmp_path, capsys):
    depth = tmp_path / "depth"
    depth.mkdir()
    (depth / "0.png").write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    out = tmp_path / "out"
    code = main(
        ["generate", "x", "--model", "tiny", "--frames", "1", "--steps", "1", "--control-depth", str(depth),
         "--out", str(out), "--id", "bad"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "control.images[0]: Control image 1" in err and "not an image" in err
    assert not (out / "bad").exists()


def test_the_default_size_follows_the_models_family(tiny_model_dir, tiny_sd2_dir, tiny_sdxl_dir, tmp_path):
    """Issue 15: 512² for SD 1.x, 768² for SD 2.x v-prediction, 1024² for SDXL, read before loading."""
    from zss_core.cli import build_parser, job_from_args

    def size(model):
        job = job_from_args(build_parser().parse_args(["generate", "x", "--model", str(model)]))
        return job["width"], job["height"]

    assert size(tiny_model_dir) == (512, 512)
    assert size(tiny_sd2_dir) == (768, 768)
    assert size(tiny_sdxl_dir) == (1024, 1024)
    assert size(tmp_path / "missing.safetensors") == (512, 512)  # unknown here: loading reports it
