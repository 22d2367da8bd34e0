"""Reading a job's control images safely: open as an image first, bounded, one at a time, at the job's size.

A control image path comes from the client, and behind ``zss serve`` the client is not trusted. So a
path is only read when it is a regular file (no ``/proc``, devices, FIFOs, directories) of at most
``MAX_FILE_BYTES``, and its header is checked (format, ``MAX_PIXELS``) before any pixel is decoded:
a PNG bomb is refused from its 30-byte header. Each image is decoded, converted and resized to the
job's size at once (JPEG decodes at a reduced scale through ``draft``) and re-encoded as PNG into the
job folder, so a clip never holds more than one full-size decode and the folder never holds the
client's raw bytes.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MAX_FILE_BYTES = 64 * 1024 * 1024  # a 2048² 16-bit PNG depth map is ~25 MB uncompressed
MAX_PIXELS = 4096 * 4096  # twice the largest job side (defaults.MAX_SIZE): ~50 MB as RGB
FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")  # what depth maps are written as
REFUSED_ROOTS = ("/proc", "/sys", "/dev")  # pseudo-files that look regular to stat (sizes of 0 or lies)


class ControlImageError(ValueError):
    """One control image cannot be used; ``index`` is its position in ``control.images``."""

    def __init__(self, index: int, path: str, reason: str):
        super().__init__(f"Control image {index + 1} ('{_printable(path)}') {reason}.")
        self.index, self.path, self.reason = index, path, reason

    @property
    def field(self) -> str:
        return f"control.images[{self.index}]"


@dataclass(frozen=True)
class ControlLimits:
    max_file_bytes: int = MAX_FILE_BYTES
    max_pixels: int = MAX_PIXELS


def _printable(path: str) -> str:
    """The path as text that always encodes (an undecodable byte shows as \\xNN)."""
    return path.encode("utf-8", "backslashreplace").decode("utf-8")


def read_bounded(index: int, path: str, limits: ControlLimits) -> bytes:
    """The file's bytes, if it is a regular file outside the pseudo-filesystems within the size cap."""
    real = os.path.realpath(path)
    for root in REFUSED_ROOTS:
        if real == root or real.startswith(root + os.sep):
            raise ControlImageError(index, path, f"is under {root} ('{_printable(real)}'), not an image file")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ControlImageError(index, path, f"cannot be opened: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, FIFO or socket)"
            raise ControlImageError(index, path, f"is {kind}")
        if info.st_size == 0:
            raise ControlImageError(index, path, "is empty")
        if info.st_size > limits.max_file_bytes:
            raise ControlImageError(index, path, f"is {info.st_size} bytes; the limit is {limits.max_file_bytes} bytes")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(limits.max_file_bytes + 1)
    except OSError as exc:
        raise ControlImageError(index, path, f"cannot be read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) > limits.max_file_bytes:  # it grew while being read
        raise ControlImageError(index, path, f"is larger than the limit of {limits.max_file_bytes} bytes")
    return data


def decode_at_size(index: int, path: str, data: bytes, size: tuple[int, int], limits: ControlLimits):
    """An RGB PIL image of exactly ``size`` from ``data``, checked from its header before decoding."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    too_large = (
        f"has more pixels than the limit of {limits.max_pixels} (render depth maps at the job's size, "
        f"{size[0]}×{size[1]})"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ControlImageError(index, path, too_large) from exc
    except UnidentifiedImageError as exc:
        raise ControlImageError(index, path, "is not an image (PNG, JPEG, WebP, TIFF or BMP)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ControlImageError(index, path, f"is not a readable image: {exc}") from exc
    with image:
        width, height = image.size
        if width * height > limits.max_pixels:
            raise ControlImageError(index, path, f"is {width}×{height}: it {too_large}")
        try:
            if image.format == "JPEG":
                image.draft("RGB", size)  # decode at 1/2, 1/4 or 1/8 scale when that is still ≥ size
            rgb = image.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ControlImageError(index, path, f"is damaged or truncated: {exc}") from exc
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    return rgb


def kept_path(job_dir: Path, index: int) -> Path:
    """Where the job folder keeps control image ``index`` (0-based), always as PNG."""
    return job_dir / "control" / f"control_{index + 1:04d}.png"


def load_control_images(
    paths: list[str],
    size: tuple[int, int],
    job_dir: Path,
    check_cancel: Callable[[], None] = lambda: None,
    limits: ControlLimits | None = None,
) -> list:
    """Open, check, resize and keep (as PNG in ``job_dir/control``) each control image, one at a time.

    Raises ``ControlImageError`` for the first image that cannot be used; ``check_cancel()`` runs
    before each image and raises to stop.
    """
    from . import export

    limits = limits or ControlLimits()
    (job_dir / "control").mkdir(exist_ok=True)
    images = []
    for index, path in enumerate(paths):
        check_cancel()
        image = decode_at_size(index, path, read_bounded(index, path, limits), size, limits)
        export.write_png(kept_path(job_dir, index), image)
        images.append(image)
    return images
