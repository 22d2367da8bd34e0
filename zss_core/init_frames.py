"""Where a restyle's source frames come from on the command line: a folder, a glob or a video file.

``zss generate --init SOURCE`` turns SOURCE into the job's ``init`` list (one image path per frame,
what the worker protocol carries):

* a folder: its image files, in natural order (``f2.png`` before ``f10.png``);
* a video file (by its extension): every frame decoded with imageio-ffmpeg's ffmpeg and written as
  PNG into a folder the caller owns and deletes (``extracted``: a temporary folder);
* anything else: a glob pattern, its image files in natural order.

The runner then reads each frame like a control image (``control_images``: regular files only, size
caps, resized to the job's size), so nothing here decodes a still image.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from . import defaults

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".gif")
MAX_VIDEO_PIXELS = 4096 * 4096  # as control_images.MAX_PIXELS: a frame the runner would refuse anyway


class InitSourceError(ValueError):
    """The source cannot give frames; the message says what was wrong and what to do."""


def natural_key(path: str) -> list:
    """Sort key that orders the digits in a name by value: frame2 < frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", os.path.basename(path))]


def is_video(spec: str) -> bool:
    return spec.lower().endswith(VIDEO_SUFFIXES) and os.path.isfile(spec)


def _images(paths) -> list[str]:
    return sorted((p for p in paths if p.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(p)), key=natural_key)


def extract_video(video: str, folder: Path, max_frames: int = defaults.MAX_FRAMES) -> list[str]:
    """Decode every frame of ``video`` (RGB) into ``folder/frame_0001.png …``; the PNG paths.

    A clip with more than ``max_frames`` frames, or frames over ``MAX_VIDEO_PIXELS``, is refused
    before it fills the disk.
    """
    import imageio_ffmpeg
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    try:
        reader = imageio_ffmpeg.read_frames(video, pix_fmt="rgb24")
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise InitSourceError(f"cannot read the video '{video}': {detail}") from exc
    width, height = meta["size"]
    paths: list[str] = []
    try:
        if width * height > MAX_VIDEO_PIXELS:
            raise InitSourceError(f"the video '{video}' is {width}×{height}: over {MAX_VIDEO_PIXELS} pixels a frame")
        for data in reader:
            if len(paths) == max_frames:
                raise InitSourceError(
                    f"the video '{video}' has more than {max_frames} frames: cut it to the part to restyle"
                )
            frame = np.frombuffer(data, np.uint8).reshape(height, width, 3)
            path = folder / f"frame_{len(paths) + 1:04d}.png"
            Image.fromarray(frame).save(path)
            paths.append(str(path))
    except RuntimeError as exc:
        raise InitSourceError(f"cannot decode the video '{video}': {exc}") from exc
    finally:
        reader.close()
    if not paths:
        raise InitSourceError(f"the video '{video}' has no frames")
    return paths


def resolve(spec: str, extracted: Path) -> list[str]:
    """The source frames of ``spec`` (folder, video file or glob) as image paths, in frame order.

    A video's frames are written into ``extracted`` (the caller deletes it). Raises
    ``InitSourceError`` when no frame is found.
    """
    if os.path.isdir(spec):
        frames = _images(os.path.join(spec, name) for name in os.listdir(spec))
        if not frames:
            raise InitSourceError(
                f"the folder '{spec}' has no image files ({', '.join(s[1:] for s in IMAGE_SUFFIXES)})"
            )
        return frames
    if is_video(spec):
        return extract_video(spec, extracted)
    frames = _images(glob.glob(spec))
    if not frames:
        raise InitSourceError(
            f"no frames at '{spec}': give a folder of images, a glob such as 'render/*.png' or a video file "
            f"({', '.join(s[1:] for s in VIDEO_SUFFIXES)})"
        )
    return frames


@contextlib.contextmanager
def source_frames(spec: str) -> Iterator[list[str]]:
    """``resolve`` with a temporary folder for a video's frames, deleted when the block ends (always)."""
    folder = Path(tempfile.mkdtemp(prefix="zss-init-"))
    try:
        yield resolve(spec, folder)
    finally:
        shutil.rmtree(folder)
