"""``make demo-restyle``: restyle a moving texture with the built-in model, offline, and show before/after.

1. renders a source clip (``train.textures.drifting_clip``: green stripes behind a drifting window) as
   PNG frames into ``OUT/restyle-source/``;
2. restyles it with the command line a user would type::

       zss generate "blue marble veins" --init OUT/restyle-source --strength 0.6 --out OUT

3. writes ``OUT/restyle_before_after.png``: every other source frame on the top row, the same frames
   of the restyled clip below (each frame shown twice its size).

    .venv/bin/python tools/demo_restyle.py [--out demo-out] [--prompt ...] [--strength 0.6] [--steps 25]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHEET_NAME = "restyle_before_after.png"
SOURCE = ("stripes", "green")  # family and colour of the source texture (train.textures)


def render_source(folder: Path, frames: int, seed: int = 7) -> list[Path]:
    """The source clip as ``frame_0001.png …`` (a new folder each time: an old one is replaced)."""
    import numpy as np
    from PIL import Image

    from train.textures import drifting_clip

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("frame_*.png"):
        old.unlink()
    paths = []
    for index, frame in enumerate(drifting_clip(seed, SOURCE[0], SOURCE[1], frames)):
        path = folder / f"frame_{index + 1:04d}.png"
        Image.fromarray((frame * 255).round().astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def before_after(path: Path, source: list[Path], result: list[Path], every: int = 2, scale: int = 2) -> Path:
    """Source frames (top row) over the restyled ones (bottom row), every ``every``-th, ``scale``× larger."""
    from PIL import Image

    from zss_core.export import write_contact_sheet

    picked = list(range(0, len(source), every))

    def big(p: Path):
        image = Image.open(p).convert("RGB")
        return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)

    frames = [big(source[i]) for i in picked] + [big(result[i]) for i in picked]
    return write_contact_sheet(path, frames, columns=len(picked), thumb=10_000)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="demo-out")
    p.add_argument("--prompt", default="blue marble veins")
    p.add_argument("--strength", type=float, default=0.6)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from zss_core.cli import main as zss
    from zss_core.cli import new_job_id

    out = Path(args.out).resolve()
    source = render_source(out / "restyle-source", args.frames)
    job_id = f"restyle-{new_job_id()}"
    command = [
        "generate",
        args.prompt,
        "--init",
        str(out / "restyle-source"),
        "--strength",
        str(args.strength),
        "--steps",
        str(args.steps),
        "--seed",
        str(args.seed),
        "--out",
        str(out),
        "--id",
        job_id,
    ]
    print("zss " + " ".join(f"'{a}'" if " " in a else a for a in command), file=sys.stderr)
    code = zss(command)
    if code:
        return code
    result = sorted((out / job_id).glob("frame_*.png"))
    sheet = before_after(out / SHEET_NAME, source, result)
    print(sheet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
