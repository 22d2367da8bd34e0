"""Hostile jobs: control images that are not images (pseudo-files, devices, FIFOs, folders, symlinks into
/proc, bombs, huge, truncated or oversize files, undecodable names), jobs beyond the machine's memory, a
cancel inside a large frame, and pickle-only model folders (issue 12, defects 3, 4, 8, 9 and allow_pickle).

Each case submits a job to the real worker and checks the answer: one error with a clear code naming the
field (``control.images[i]``, ``chunk``, ``model``) and a hint, or the documented success; nothing left
behind by a refused job; the harness then checks the worker still answers a ping.
"""

from __future__ import annotations

import json
import os
import pathlib
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

from tests.hostile.harness import Case, Harness
from zss_core import protocol

Check = Callable[[Harness], "str | None"]
CONTROL_CODES = ("control_image_invalid", "bad_request")  # at run time, or already at validation
BAD_INDEX = 1  # the bad image is the second of two: the first is fine


def inputs(h: Harness) -> pathlib.Path:
    folder = h.tmp / "inputs"
    folder.mkdir(exist_ok=True)
    return folder


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, rows: int | None = None) -> bytes:
    """A greyscale PNG of black pixels, compressed row by row; ``rows`` < height leaves it short (truncated)."""
    compress = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(compress.compress(row) for _ in range(height if rows is None else rows)) + compress.flush()
    header = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return header + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def good_image(h: Harness) -> str:
    path = inputs(h) / "good.png"
    if not path.exists():
        path.write_bytes(png_bytes(64, 64))
    return str(path)


def control_job(h: Harness, bad: str, **overrides: Any) -> dict[str, Any]:
    images = [good_image(h), bad]
    return h.job(
        controlnet_model="tiny",
        control={"type": "depth", "images": images, "scale": 1.0},
        steps=1,
        **overrides,
    )


def end_of(h: Harness, job: dict[str, Any], timeout: float = 120.0) -> protocol.Message:
    """Submit ``job`` and return its final event (or the validation error, which has the job's id)."""
    h.submit(job)
    return h.wait(job["id"], timeout=timeout)


def clean_error(h: Harness, job_id: str, event: protocol.Message, codes, field: str, contains: str = "") -> str | None:
    """None when ``event`` is an error with one of ``codes`` naming ``field`` (and a hint), leaving nothing."""
    if event.type != "error":
        return f"expected an error, got {event.type}"
    assert isinstance(event, protocol.Error)
    if event.code not in codes:
        return f"expected {'/'.join(codes)}, got {event.code}: {event.message[:160]}"
    if event.field != field:
        return f"expected field {field!r}, got {event.field!r}: {event.message[:160]}"
    if contains and contains not in event.message + " " + event.hint:
        return f"expected {contains!r} in: {event.message[:200]}"
    if not event.hint:
        return f"{event.code} without a hint"
    left = h.leftovers(job_id)
    return f"left behind: {left[:5]}" if left else None


def control_refused(make_bad: Callable[[Harness], str], contains: str = "", within: float = 60.0) -> Check:
    """A job whose second control image is ``make_bad(h)`` is refused naming control.images[1], in time."""

    def run(h: Harness) -> str | None:
        job = control_job(h, make_bad(h))
        started = time.monotonic()
        problem = clean_error(h, job["id"], end_of(h, job), CONTROL_CODES, f"control.images[{BAD_INDEX}]", contains)
        took = time.monotonic() - started
        return problem or (f"took {took:.1f} s (limit {within} s)" if took > within else None)

    return run


def fifo(h: Harness) -> str:
    path = inputs(h) / "fifo.png"
    if not path.exists():
        os.mkfifo(path)
    return str(path)


def symlink_to(target: str, name: str) -> Callable[[Harness], str]:
    def make(h: Harness) -> str:
        path = inputs(h) / name
        if not path.is_symlink():
            path.symlink_to(target)
        return str(path)

    return make


def file_of(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Harness], str]:
    def make(h: Harness) -> str:
        path = inputs(h) / name
        if not path.exists():
            path.write_bytes(data() if callable(data) else data)
        return str(path)

    return make


def sparse_file(name: str, size: int) -> Callable[[Harness], str]:
    """A file whose size is ``size`` bytes without writing them (over the 64 MB cap; costs no disk)."""

    def make(h: Harness) -> str:
        path = inputs(h) / name
        with open(path, "wb") as stream:
            stream.truncate(size)
        return str(path)

    return make


def png_header_only(width: int, height: int) -> bytes:
    header = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return header + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b"")


def latin1_name(h: Harness) -> str | None:
    """A control image whose file name is Latin-1 bytes: the path cannot travel as UTF-8 JSON, so the
    line carries a lone surrogate escape; the worker answers with a clear error naming the image."""
    folder = os.fsencode(inputs(h))
    raw = folder + b"/d\xe9pth.png"
    with open(raw, "wb") as stream:
        stream.write(png_bytes(64, 64))
    job = control_job(h, os.fsdecode(raw))  # 'd\udce9pth.png': json.dumps writes it as \udce9
    h.send_line(json.dumps({"type": "generate", "job": job}).encode("ascii"))
    event = h.wait(job["id"], timeout=60)
    if event.type == "done":
        return None  # read through the OS's own bytes and kept as PNG: also clean
    return clean_error(h, job["id"], event, CONTROL_CODES, f"control.images[{BAD_INDEX}]")


def wrong_size_is_resized(h: Harness) -> str | None:
    """An image of another size is resized to the job's and kept as PNG (what ControlNet preprocessing does)."""
    job = control_job(h, file_of("odd.png", png_bytes(100, 30))(h))
    event = end_of(h, job)
    if event.type != "done":
        return f"expected done, got {event.to_dict()}"[:300]
    kept = h.out_dir / job["id"] / "control" / "control_0002.png"
    from PIL import Image

    with Image.open(kept) as image:
        return None if (image.format, image.size) == ("PNG", (64, 64)) else f"kept {image.format} {image.size}"


def retry_after_refusal(h: Harness) -> str | None:
    """A refused job's id can be used again (defect 8: its empty folder made the retry output_exists)."""
    job = control_job(h, "/etc/passwd")
    first = end_of(h, job)
    if first.type != "error":
        return f"expected the first try refused, got {first.type}"
    job["control"]["images"][BAD_INDEX] = good_image(h)
    second = end_of(h, job)
    return None if second.type == "done" else f"the retry ended {second.to_dict()}"[:300]


def absurd_job_refused(h: Harness) -> str | None:
    """2048² × 1024 frames unchunked on the CPU: out_of_memory naming chunk, at once, nothing written."""
    job = h.job(frames=1024, width=2048, height=2048, steps=1)
    started = time.monotonic()
    problem = clean_error(h, job["id"], end_of(h, job), ("out_of_memory",), "chunk", "width")
    took = time.monotonic() - started
    return problem or (f"refused after {took:.1f} s: the model was loaded or sampling started" if took > 20 else None)


def cancel_inside_a_large_frame(h: Harness) -> str | None:
    """A 1024² one-step frame (~15 s on this CPU) cancelled during denoising lands within ~2 s."""
    job = h.job(frames=1, width=1024, height=1024, steps=1)
    h.submit(job)
    h.wait(job["id"], types=("progress",), timeout=60)
    time.sleep(3.0)  # into the UNet call
    h.client.cancel(job["id"])
    asked = time.monotonic()
    event = h.wait(job["id"], timeout=60)
    took = time.monotonic() - asked
    if event.type == "done":
        return None if took < 2.0 else f"finished {took:.1f} s after the cancel instead of cancelling"
    if event.type != "cancelled":
        return f"expected cancelled, got {event.to_dict()}"[:300]
    return None if took < 2.0 else f"cancel landed after {took:.1f} s"


def pickle_only_model(h: Harness) -> str | None:
    """A model folder whose weights are only .bin is refused before anything loads, naming allow_pickle."""
    folder = inputs(h) / "pickle-model"
    for part in ("unet", "vae", "text_encoder"):
        (folder / part).mkdir(parents=True, exist_ok=True)
        (folder / part / "config.json").write_text("{}")
        (folder / part / "diffusion_pytorch_model.bin").write_bytes(b"not loaded: refused before unpickling")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    job = h.job(model=str(folder))
    return clean_error(h, job["id"], end_of(h, job), ("model_incompatible",), "model", "allow_pickle")


def control_cases() -> list[Case]:
    bad: list[tuple[str, Callable[[Harness], str], str]] = [
        ("proc_environ", lambda h: "/proc/self/environ", "/proc"),
        ("proc_pagemap", lambda h: "/proc/self/pagemap", "/proc"),
        ("proc_cmdline", lambda h: "/proc/self/cmdline", "/proc"),
        ("etc_passwd", lambda h: "/etc/passwd", ""),
        ("dev_zero", lambda h: "/dev/zero", ""),
        ("dev_urandom", lambda h: "/dev/urandom", ""),
        ("directory", lambda h: str(inputs(h)), ""),
        ("fifo", fifo, ""),
        ("symlink_to_proc", symlink_to("/proc/self/environ", "environ.png"), ""),
        ("symlink_to_dev", symlink_to("/dev/zero", "zero.png"), ""),
        ("dangling_symlink", symlink_to("/no/such/target.png", "dangling.png"), ""),
        ("missing", lambda h: str(inputs(h) / "missing.png"), ""),
        ("empty_file", file_of("empty.png", b""), ""),
        ("text_as_png", file_of("text.png", b"this is not an image\n" * 100), "not an image"),
        ("truncated_png", file_of("cut.png", lambda: png_bytes(64, 64, rows=0)[:60]), ""),
        ("bomb_30000", file_of("bomb.png", png_header_only(30000, 30000)), "pixels"),
        ("huge_12000", file_of("huge.png", lambda: png_bytes(12000, 12000)), "pixels"),
        ("over_64_mb", sparse_file("sparse.png", 65 * 1024 * 1024), "limit"),
        ("html_as_png", file_of("page.png", b"<html><body>hi</body></html>"), ""),
        ("gzip_as_png", file_of("data.png", lambda: zlib.compress(b"\x00" * 10**6)), ""),
    ]
    return [Case(name, "control", control_refused(make, contains)) for name, make, contains in bad]


CASES: list[Case] = [
    *control_cases(),
    Case("latin1_file_name", "control", latin1_name),
    Case("wrong_size_resized", "control", wrong_size_is_resized),
    Case("retry_same_id_after_refusal", "leftovers", retry_after_refusal),
    Case("absurd_memory", "budget", absurd_job_refused),
    Case("cancel_1024_frame", "budget", cancel_inside_a_large_frame),
    Case("pickle_only_model_folder", "model", pickle_only_model),
]
