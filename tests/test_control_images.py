"""Control images are opened as images first (issue 12, defects 3, 4, 9): pseudo-files, devices, FIFOs,
folders, non-images, bombs and huge images are refused naming ``control.images[i]`` with nothing left
behind; what is kept is re-encoded as PNG at the job's size, one image at a time."""

import os
import resource
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from zss_core import control_images
from zss_core.protocol import Job
from zss_core.runner import JobError, run_job


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_of_zeros(path, width, height) -> int:
    """A valid greyscale PNG of ``width``×``height`` black pixels, compressed row by row (a bomb: tiny on disk)."""
    compress = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(compress.compress(row) for _ in range(height)) + compress.flush()
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    data += _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
    path.write_bytes(data)
    return len(data)


def write_png_header(path, width, height) -> None:
    """Only a PNG's header claiming ``width``×``height`` (a bomb that never needs to be built)."""
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    path.write_bytes(data + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b""))


def depth(path, value=100, size=(64, 64)):
    Image.fromarray(np.full(size[::-1], value, np.uint8)).save(path)
    return str(path)


def control_job(tmp_path, images, job_id="c"):
    """A valid job whose control images are then swapped for ``images``: the runner must hold even when a
    path changed after the worker validated it (or validation let a pseudo-file through)."""
    placeholder = depth(tmp_path / "placeholder.png")
    job = Job.from_dict(
        dict(
            id=job_id,
            prompt="p",
            model="tiny",
            controlnet_model="tiny",
            output_dir=str(tmp_path / "out"),
            frames=len(images),
            width=64,
            height=64,
            steps=1,
            control={"type": "depth", "images": [placeholder] * len(images), "scale": 1.0},
            outputs={"frames": True, "mp4": False, "contact_sheet": False},
        )
    )
    assert job.control is not None
    job.control.images = [str(p) for p in images]
    return job


def refused(pipe, tmp_path, bad, position=1):
    """Run a 3-frame job whose image ``position`` is ``bad``; return the JobError after checking no leftovers."""
    images = [depth(tmp_path / f"good{i}.png") for i in range(3)]
    images[position] = bad
    with pytest.raises(JobError) as info:
        run_job(control_job(tmp_path, images), pipe)
    assert info.value.code == "control_image_invalid", info.value.message
    assert info.value.field == f"control.images[{position}]"
    assert not (tmp_path / "out" / "c").exists(), "a refused job leaves its folder behind"
    return info.value


@pytest.mark.parametrize(
    "path, words",
    [
        ("/proc/self/environ", "/proc"),
        ("/proc/self/pagemap", "/proc"),
        ("/etc/passwd", "not an image"),
        ("/dev/zero", "/dev"),
        ("/", "folder"),
        ("/no/such/file.png", "cannot be opened"),
    ],
)
def test_pseudo_files_devices_folders_and_non_images_are_refused(tiny_control_pipe, tmp_path, path, words):
    started = time.perf_counter()
    error = refused(tiny_control_pipe, tmp_path, path)
    assert words in error.message and error.hint
    assert time.perf_counter() - started < 10  # /proc/self/pagemap was copied at 3.5 GB in 18 s


def test_a_symlink_into_proc_and_a_fifo_are_refused_without_blocking(tiny_control_pipe, tmp_path):
    link = tmp_path / "looks_like.png"
    link.symlink_to("/proc/self/environ")
    assert "/proc" in refused(tiny_control_pipe, tmp_path, str(link)).message
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    assert "regular file" in refused(tiny_control_pipe, tmp_path, str(fifo)).message


def test_a_truncated_png_and_a_file_over_the_size_cap_are_refused(tiny_control_pipe, tmp_path):
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:400])
    assert "truncated" in refused(tiny_control_pipe, tmp_path, str(cut)).message
    with pytest.raises(control_images.ControlImageError, match="limit is 100 bytes"):
        control_images.read_bounded(0, str(whole), control_images.ControlLimits(max_file_bytes=100))


def test_a_30000_square_png_bomb_is_refused_from_its_header(tiny_control_pipe, tmp_path):
    bomb = tmp_path / "bomb.png"
    write_png_header(bomb, 30000, 30000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    error = refused(tiny_control_pipe, tmp_path, str(bomb), position=0)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert "pixels" in error.message and grown_mb < 50, grown_mb


def test_a_12000_square_png_of_17_kb_is_refused_before_decoding(tiny_control_pipe, tmp_path):
    big = tmp_path / "big.png"
    size = write_png_of_zeros(big, 12000, 12000)
    assert size < 200_000  # tiny on disk, 144 MB decoded (432 MB as RGB)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    error = refused(tiny_control_pipe, tmp_path, str(big), position=2)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert "more pixels than the limit" in error.message and grown_mb < 50, grown_mb


def test_kept_images_are_png_at_the_jobs_size_never_the_clients_bytes(tiny_control_pipe, tmp_path):
    jpeg = tmp_path / "depth.jpg"
    Image.fromarray(np.full((512, 512, 3), 90, np.uint8)).save(jpeg, quality=90)
    wrong_size = depth(tmp_path / "small.png", 200, size=(32, 48))
    outcome = run_job(control_job(tmp_path, [jpeg, wrong_size]), tiny_control_pipe)
    kept = sorted((tmp_path / "out" / "c" / "control").iterdir())
    assert [p.name for p in kept] == ["control_0001.png", "control_0002.png"]
    for path in kept:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (64, 64)
    assert kept[0].read_bytes() != jpeg.read_bytes() and outcome.status == "done"


def test_a_refused_job_can_be_retried_with_the_same_id(tiny_control_pipe, tmp_path):
    refused(tiny_control_pipe, tmp_path, "/etc/passwd")
    images = [depth(tmp_path / f"ok{i}.png") for i in range(3)]
    assert run_job(control_job(tmp_path, images), tiny_control_pipe).status == "done"


def test_cancel_while_reading_control_images_leaves_nothing(tiny_control_pipe, tmp_path):
    from zss_core.runner import JobCallbacks

    images = [depth(tmp_path / f"ok{i}.png") for i in range(3)]
    cancel = threading.Event()
    cancel.set()
    outcome = run_job(control_job(tmp_path, images), tiny_control_pipe, JobCallbacks(should_cancel=cancel.is_set))
    assert outcome.status == "cancelled" and outcome.frames == []
    assert not (tmp_path / "out" / "c").exists()


def test_images_are_decoded_one_at_a_time_at_the_jobs_size(tmp_path):
    """Eight 4000² PNGs for a 64² job: peak memory grows by about one decode, not eight."""
    paths = []
    for i in range(8):
        path = tmp_path / f"big{i}.png"
        write_png_of_zeros(path, 4000, 4000)
        paths.append(str(path))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    images = control_images.load_control_images(paths, (64, 64), job_dir)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert [im.size for im in images] == [(64, 64)] * 8
    assert grown_mb < 150, grown_mb  # one 4000² RGB decode is 48 MB; all eight would be 384 MB
