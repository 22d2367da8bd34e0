"""Writing a clip to disk: PNG frames, an H.264 MP4, a contact sheet and the ``job.json`` manifest.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``) so a
crash or a cancel never leaves a half-written frame that Blender would load as garbage.
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

FRAME_PATTERN = "frame_{:04d}.png"  # 1-based numbering: Blender's image sequences expect it
VIDEO_NAME = "clip.mp4"
SHEET_NAME = "contact_sheet.png"
MANIFEST_NAME = "job.json"


TEMPORARY_PREFIX = "."  # atomic_path's temporaries: ".<stem>.<random><suffix>" beside the target


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path next to ``path``; move it into place only if the block succeeds.

    An ``OSError`` without a file name (a full disk, a file-size limit) gets ``path`` as its file name,
    so the error can say which file could not be written.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{path.stem}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None or exc.filename == tmp:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def ignore_file_size_signal() -> None:
    """A write past the file-size limit (RLIMIT_FSIZE) then fails with EFBIG instead of killing the process.

    SIGXFSZ's default action ends the process; ignored, the write raises ``OSError`` and the job
    reports ``output_not_writable`` with the file's name. Main thread only (Python's rule for signals).
    """
    import signal
    import threading

    if hasattr(signal, "SIGXFSZ") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def remove_temporaries(folder: str | os.PathLike) -> list[str]:
    """Delete what a killed process left of ``atomic_path`` (hidden ``.<name>.*`` files); returns their names."""
    removed = []
    for entry in os.scandir(os.fspath(folder)):
        if entry.name.startswith(TEMPORARY_PREFIX) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
            removed.append(entry.name)
    return removed


def to_image(frame) -> Image.Image:
    """A PIL image from a PIL image or a float array in [0, 1] / uint8 array (H, W, 3)."""
    if isinstance(frame, Image.Image):
        return frame.convert("RGB")
    array = np.asarray(frame)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def frame_path(folder: str | os.PathLike, index: int) -> Path:
    """Path of frame ``index`` (0-based) in ``folder``."""
    return Path(folder) / FRAME_PATTERN.format(index + 1)


def write_png(path: str | os.PathLike, image) -> Path:
    """``image`` (PIL or array) as a PNG at ``path``, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        to_image(image).save(tmp, format="PNG")
    return path


def write_frame(folder: str | os.PathLike, index: int, frame) -> Path:
    return write_png(frame_path(folder, index), frame)


def write_mp4(path: str | os.PathLike, frames: Sequence, fps: float = 24.0) -> Path:
    """H.264 / yuv420p MP4 (plays everywhere, Blender included) through imageio-ffmpeg's ffmpeg.

    yuv420p needs even dimensions: odd sizes are padded by one pixel (edge-replicated).
    """
    import imageio_ffmpeg

    images = [np.asarray(to_image(f)) for f in frames]
    if not images:
        raise ValueError("no frames to encode")
    height, width = images[0].shape[:2]
    even_h, even_w = height + height % 2, width + width % 2
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (even_w, even_h),
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            quality=8,
            macro_block_size=1,
            ffmpeg_log_level="error",
            output_params=["-movflags", "+faststart"],
        )
        writer.send(None)
        for image in images:
            if (even_h, even_w) != (height, width):
                image = np.pad(image, ((0, even_h - height), (0, even_w - width), (0, 0)), mode="edge")
            writer.send(np.ascontiguousarray(image))
        writer.close()
        check_mp4(tmp, path)
    return path


def mp4_boxes(path: str | os.PathLike) -> list[str] | None:
    """The top-level box types of an MP4, or None when the boxes do not add up to the file (truncated)."""
    size, found = os.path.getsize(path), []
    with open(path, "rb") as stream:
        offset = 0
        while offset < size:
            stream.seek(offset)
            header = stream.read(16)
            if len(header) < 8:
                return None
            length, kind = int.from_bytes(header[:4], "big"), header[4:8].decode("latin-1")
            if length == 1 and len(header) == 16:
                length = int.from_bytes(header[8:16], "big")
            if length < 8:
                return None
            found.append(kind)
            offset += length
    return found if offset == size else None


def check_mp4(written: str | os.PathLike, path: str | os.PathLike) -> None:
    """Raise ``OSError`` naming ``path`` when ffmpeg left a truncated MP4 (it reports write errors only on its
    own stderr and imageio-ffmpeg ignores its exit status): a full disk or a file-size limit."""
    boxes = mp4_boxes(written)
    if boxes is not None and "moov" in boxes and "mdat" in boxes:
        return
    import errno
    import resource

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0] if hasattr(resource, "RLIMIT_FSIZE") else -1
    if limit not in (-1, resource.RLIM_INFINITY) and os.path.getsize(written) >= limit:
        code = errno.EFBIG
    else:
        stats = os.statvfs(os.path.dirname(os.path.abspath(written)))
        code = errno.ENOSPC if stats.f_bavail * stats.f_frsize < 1024 * 1024 else errno.EIO
    raise OSError(code, f"the video encoder could not finish the file ({os.strerror(code)})", str(path))


def write_contact_sheet(
    path: str | os.PathLike, frames: Sequence, columns: int | None = None, thumb: int = 256
) -> Path:
    """All frames in a grid (thumbnails at most ``thumb`` px wide), for a quick look at a clip."""
    images = [to_image(f) for f in frames]
    if not images:
        raise ValueError("no frames for a contact sheet")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    w, h = images[0].size
    scale = min(1.0, thumb / w)
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    sheet = Image.new("RGB", (columns * tw, rows * th), (32, 32, 32))
    for i, image in enumerate(images):
        sheet.paste(image.resize((tw, th), Image.Resampling.LANCZOS), ((i % columns) * tw, (i // columns) * th))
    path = Path(path)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path


def library_versions() -> dict[str, str | None]:
    """Versions that decide what a seed produces: recorded in every manifest."""
    import importlib.metadata as md

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "diffusers", "transformers"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    from . import __version__

    versions["zss"] = __version__
    return versions


def write_manifest(path: str | os.PathLike, manifest: dict) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8")
    return path


def existing_frames(folder: str | os.PathLike, frames: int) -> list[str]:
    """Frame files present in ``folder``, in order (what survived a cancel or a crash)."""
    return [str(p) for p in (frame_path(folder, i) for i in range(frames)) if p.exists()]


def recover_job(job_dir: str | os.PathLike) -> dict:
    """What a job folder holds, even after a crash: status from job.json and the frames on disk.

    A manifest still saying ``running`` means the process died mid-job: reported as ``interrupted``.
    Temporary files a killed process left behind (a frame half written) are removed.
    """
    job_dir = Path(job_dir)
    remove_temporaries(job_dir)
    manifest = json.loads((job_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    status = manifest.get("status", "unknown")
    frames = existing_frames(job_dir, int(manifest["job"]["frames"]))
    return {"status": "interrupted" if status == "running" else status, "frames": frames, "manifest": manifest}
