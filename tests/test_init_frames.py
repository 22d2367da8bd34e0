"""Restyle sources on the command line (issue 17): folders, globs and video files, and `zss generate
--init` end to end on the tiny model."""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

from zss_core import init_frames
from zss_core.cli import main
from zss_core.export import write_mp4


def frames(count, size=64):
    """A bar sliding right, one colour per frame's index (uint8 RGB)."""
    out = []
    for i in range(count):
        image = np.full((size, size, 3), 40, np.uint8)
        image[:, 6 * i : 6 * i + 12] = (220, 120, 30)
        out.append(image)
    return out


def save_folder(folder, images, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"f{i + 1}.png" for i in range(len(images))]
    for name, image in zip(names, images):
        Image.fromarray(image).save(folder / name)
    return [str(folder / name) for name in names]


def test_a_folder_gives_its_images_in_natural_order(tmp_path):
    names = ["f10.png", "f2.png", "f1.png"]
    save_folder(tmp_path / "src", frames(3), names)
    (tmp_path / "src" / "notes.txt").write_text("not a frame")
    (tmp_path / "src" / "sub.png").mkdir()  # a folder with an image's name is not a frame
    got = init_frames.resolve(str(tmp_path / "src"), tmp_path / "x")
    assert [os.path.basename(p) for p in got] == ["f1.png", "f2.png", "f10.png"]


def test_a_glob_gives_the_matching_images(tmp_path):
    save_folder(tmp_path / "src", frames(4), ["a_1.png", "a_2.png", "b_1.png", "a_3.jpg"])
    got = init_frames.resolve(str(tmp_path / "src" / "a_*"), tmp_path / "x")
    assert [os.path.basename(p) for p in got] == ["a_1.png", "a_2.png", "a_3.jpg"]


def test_no_frames_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(init_frames.InitSourceError, match="no image files"):
        init_frames.resolve(str(tmp_path / "empty"), tmp_path / "x")
    with pytest.raises(init_frames.InitSourceError, match="no frames at"):
        init_frames.resolve(str(tmp_path / "none" / "*.png"), tmp_path / "x")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(init_frames.InitSourceError, match="video"):
        init_frames.resolve(str(tmp_path / "broken.mp4"), tmp_path / "x")


def test_a_movie_file_is_decoded_frame_by_frame_into_a_folder_that_is_deleted(tmp_path):
    video = write_mp4(tmp_path / "clip.mp4", frames(5), fps=8)
    with init_frames.source_frames(str(video)) as paths:
        folder = os.path.dirname(paths[0])
        assert folder.startswith(tempfile.gettempdir()) and len(paths) == 5
        decoded = [np.asarray(Image.open(p)) for p in paths]
        for image, original in zip(decoded, frames(5)):
            assert image.shape == (64, 64, 3)
            assert np.abs(image.astype(int) - original).mean() < 6  # H.264 is lossy, the bar is where it was
    assert not os.path.exists(folder)


def test_a_movie_longer_than_the_limit_is_refused(tmp_path):
    video = write_mp4(tmp_path / "clip.mp4", frames(4), fps=8)
    with pytest.raises(init_frames.InitSourceError, match="more than 3 frames"):
        init_frames.extract_video(str(video), tmp_path / "x", max_frames=3)


# ----------------------------------------------------------------------------- zss generate --init


def generate(tmp_path, *args):
    return main(
        ["generate", "blue marble veins", "--model", "tiny", "--steps", "4", "--out", str(tmp_path / "out"), *args]
    )


def test_generate_restyles_a_folder_with_frames_from_the_source(tmp_path):
    save_folder(tmp_path / "src", frames(3))
    assert generate(tmp_path, "--init", str(tmp_path / "src"), "--strength", "0.5", "--id", "r") == 0
    job_dir = tmp_path / "out" / "r"
    manifest = json.loads((job_dir / "job.json").read_text())
    assert manifest["status"] == "done" and len(manifest["frames"]) == 3
    assert manifest["job"]["frames"] == 3 and manifest["job"]["strength"] == 0.5
    assert manifest["job"]["init"] == [str(job_dir / "init" / f"init_{i:04d}.png") for i in range(1, 4)]


CLI = [sys.executable, "-m", "zss_core.cli", "generate", "x", "--model", "tiny", "--steps", "4"]


def test_generate_restyles_a_movie_and_leaves_no_extracted_frames(tmp_path):
    video = write_mp4(tmp_path / "clip.mp4", frames(4), fps=8)
    before = set(os.listdir(tempfile.gettempdir()))
    proc = subprocess.run(
        [*CLI, "--init", str(video), "--out", str(tmp_path / "out"), "--id", "m", "--no-mp4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "out" / "m" / "job.json").read_text())
    assert len(manifest["frames"]) == 4 and manifest["job"]["strength"] == 0.6  # the --init default
    assert "denoising" in proc.stderr and "/2 " in proc.stderr  # int(4 × 0.6) = 2 steps run
    assert not [n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("zss-init-")]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--frames", "2"], "has 3 frames but --frames is 2"),
        (["--strength", "1.5"], "strength"),
    ],
)
def test_generate_refuses_a_bad_restyle_before_writing(tmp_path, capsys, args, message):
    save_folder(tmp_path / "src", frames(3))
    assert generate(tmp_path, "--init", str(tmp_path / "src"), *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("zss: error:")
    assert not (tmp_path / "out").exists()


def test_generate_names_the_unreadable_frame(tmp_path, capsys):
    save_folder(tmp_path / "src", frames(3))
    (tmp_path / "src" / "f2.png").write_bytes(b"\x89PNG broken")
    assert generate(tmp_path, "--init", str(tmp_path / "src"), "--id", "u") == 2
    err = capsys.readouterr().err
    assert "init[1]: Source frame 2" in err and "f2.png" in err
    assert not (tmp_path / "out" / "u").exists()


def test_strength_without_init_is_refused(tmp_path, capsys):
    assert generate(tmp_path, "--strength", "0.5") == 2
    assert "strength below 1 needs init" in capsys.readouterr().err
