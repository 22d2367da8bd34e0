"""Reading a job's control images (and restyle source frames) safely: open as an image first, bounded, one at a time, at the job's size.

A control image path comes from the client, and behind ``zss serve`` the client is not trusted. So a
path is only read when it is a regular file (no ``/proc``, devices, FIFOs, directories) of at most
``MAX_FILE_BYTES``, and its header is checked (format, ``MAX_PIXELS``) before any pixel is decoded:
a PNG bomb is refused from its 30-byte header. Each image is decoded, converted and resized to the
job's size at once (JPEG decodes at a reduced scale through ``draft``) and re-encoded as PNG into the
job folder, so a clip never holds more than one full-size decode and the folder never holds the
client's raw bytes.

The same reading serves each list of images a job names (``ImageKind``): the control images
(``control.images``, kept in ``control/``) and the restyle source frames (``init``, kept in
``init/``, which must all have the same size before they are resized to the job's).
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


@dataclass(frozen=True)
class ImageKind:
    """One list of images a job names: its protocol field, how messages call one, where copies go."""

    field: str  # the job's field: errors name field[i]
    label: str  # "Control image": how a message names one
    folder: str  # the job folder's subfolder that keeps the PNG copies
    same_size: bool = False  # refuse an image whose size differs from the first one's


CONTROL = ImageKind("control.images", "Control image", "control")
INIT = ImageKind("init", "Source frame", "init", same_size=True)


class ControlImageError(ValueError):
    """One image of a job's list cannot be used; ``index`` is its position in the list (``kind.field``)."""

    def __init__(self, index: int, path: str, reason: str, kind: ImageKind = CONTROL):
        super().__init__(f"{kind.label} {index + 1} ('{_printable(path)}') {reason}.")
        self.index, self.path, self.reason, self.kind = index, path, reason, kind

    @property
    def field(self) -> str:
        return f"{self.kind.field}[{self.index}]"


@dataclass(frozen=True)
class ControlLimits:
    max_file_bytes: int = MAX_FILE_BYTES
    max_pixels: int = MAX_PIXELS


def _printable(path: str) -> str:
    """The path as text that always encodes (an undecodable byte shows as \\xNN)."""
    return path.encode("utf-8", "backslashreplace").decode("utf-8")


def read_bounded(index: int, path: str, limits: ControlLimits, kind: ImageKind = CONTROL) -> bytes:
    """The file's bytes, if it is a regular file outside the pseudo-filesystems within the size cap."""

    def refuse(reason: str) -> ControlImageError:
        return ControlImageError(index, path, reason, kind)

    real = os.path.realpath(path)
    for root in REFUSED_ROOTS:
        if real == root or real.startswith(root + os.sep):
            raise refuse(f"is under {root} ('{_printable(real)}'), not an image file")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise refuse(f"cannot be opened: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, FIFO or socket)"
            raise refuse(f"is {what}")
        if info.st_size == 0:
            raise refuse("is empty")
        if info.st_size > limits.max_file_bytes:
            raise refuse(f"is {info.st_size} bytes; the limit is {limits.max_file_bytes} bytes")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(limits.max_file_bytes + 1)
    except OSError as exc:
        raise refuse(f"cannot be read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) > limits.max_file_bytes:  # it grew while being read
        raise refuse(f"is larger than the limit of {limits.max_file_bytes} bytes")
    return data


def decode_at_size(index: int, path: str, data: bytes, size: tuple[int, int], limits: ControlLimits):
    """An RGB PIL image of exactly ``size`` from ``data``, checked from its header before decoding."""
    return decode_with_size(index, path, data, size, limits)[0]


def decode_with_size(
    index: int, path: str, data: bytes, size: tuple[int, int], limits: ControlLimits, kind: ImageKind = CONTROL
):
    """(an RGB PIL image of exactly ``size``, the file's own (width, height)) from ``data``."""
    import warnings

    def refuse(reason: str) -> ControlImageError:
        return ControlImageError(index, path, reason, kind)

    from PIL import Image, UnidentifiedImageError

    too_large = (
        f"has more pixels than the limit of {limits.max_pixels} (render "
        f"{'depth maps' if kind is CONTROL else kind.label.lower() + 's'} at the job's size, {size[0]}×{size[1]})"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise refuse(too_large) from exc
    except UnidentifiedImageError as exc:
        raise refuse("is not an image (PNG, JPEG, WebP, TIFF or BMP)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise refuse(f"is not a readable image: {exc}") from exc
    with image:
        width, height = image.size
        if width * height > limits.max_pixels:
            raise refuse(f"is {width}×{height}: it {too_large}")
        try:
            if image.format == "JPEG":
                image.draft("RGB", size)  # decode at 1/2, 1/4 or 1/8 scale when that is still ≥ size
            rgb = image.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise refuse(f"is damaged or truncated: {exc}") from exc
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    return rgb, (width, height)


def kept_path(job_dir: Path, index: int, kind: ImageKind = CONTROL) -> Path:
    """Where the job folder keeps image ``index`` (0-based) of ``kind``, always as PNG."""
    return job_dir / kind.folder / f"{kind.folder}_{index + 1:04d}.png"


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
    return load_images(paths, size, job_dir, check_cancel, limits, CONTROL)


def load_images(
    paths: list[str],
    size: tuple[int, int],
    job_dir: Path,
    check_cancel: Callable[[], None] = lambda: None,
    limits: ControlLimits | None = None,
    kind: ImageKind = CONTROL,
) -> list:
    """``load_control_images`` for any ``kind`` of list: kept in ``job_dir/<kind.folder>``; with
    ``kind.same_size``, an image whose own size differs from the first one's is refused."""
    from . import export

    limits = limits or ControlLimits()
    (job_dir / kind.folder).mkdir(exist_ok=True)
    images = []
    first_size = None
    for index, path in enumerate(paths):
        check_cancel()
        data = read_bounded(index, path, limits, kind)
        image, own_size = decode_with_size(index, path, data, size, limits, kind)
        first_size = first_size or own_size
        if kind.same_size and own_size != first_size:
            raise ControlImageError(
                index,
                path,
                f"is {own_size[0]}×{own_size[1]} but {kind.label.lower()} 1 is {first_size[0]}×{first_size[1]}: "
                "give frames of one size (they are resized together to the job's size)",
                kind,
            )
        export.write_png(kept_path(job_dir, index, kind), image)
        images.append(image)
    return images
