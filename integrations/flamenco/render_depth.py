"""Render a clip's depth maps headless, inside Blender, with the ZS² add-on's own depth renderer.

This is the depth task of the Flamenco job type (zss-generate.js) — Blender on a render-farm Worker:

    blender --background SHOT.blend --python-exit-code 1 --python render_depth.py -- \\
        --out DEPTH_DIR --camera CAMERA --frame-start 1 --frames 16 --size 512x512

It writes depth_0001.png … (16-bit, one normalization for the whole clip, near = white) exactly as the
add-on does before a job, because it calls the same zss_blender.depth.render_depth_maps; `zss generate
--control-depth DEPTH_DIR` then reads them. The add-on is found next to this script (it ships inside the
add-on folder as integrations/flamenco/render_depth.py) or at --addon-dir; it is imported, not enabled:
rendering depth needs no registered panels or preferences.

Importable without Blender too (build_parser, parse_size), and `render()` is the same work as a function
for a Python that already has bpy and the blend file open. Errors say what to change; run from Blender,
they exit with status 1 so the Flamenco task fails instead of passing with no maps.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

ADDON_PACKAGE = "zss_render_depth_addon"  # the add-on's package name when this script imports it itself


class SetupError(RuntimeError):
    """The script cannot start rendering (no add-on, no such camera or scene); the message says why."""


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x512, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return width, height


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="render_depth.py",
        description="Render depth maps of the open blend file for `zss generate --control-depth` "
        "(arguments after Blender's `--`).",
    )
    parser.add_argument("--out", required=True, help="folder for depth_0001.png … (created if missing)")
    parser.add_argument("--camera", default="", help="camera object to render from (default: the scene's camera)")
    parser.add_argument("--frame-start", type=int, default=None, help="first scene frame (default: the scene's start)")
    parser.add_argument("--frames", type=_positive, required=True, help="number of frames")
    parser.add_argument("--size", type=parse_size, required=True, help="WIDTHxHEIGHT of the maps (the clip's size)")
    parser.add_argument("--scene", default="", help="scene to render (default: the file's active scene)")
    parser.add_argument(
        "--addon-dir", default=None, help="the ZS² add-on folder (default: the one this script ships in)"
    )
    return parser


def addon_root(addon_dir: str | None = None) -> str:
    """The add-on folder: --addon-dir, else the folder this script ships in (<add-on>/integrations/flamenco/)."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.abspath(addon_dir) if addon_dir else os.path.dirname(os.path.dirname(here))
    if not os.path.isfile(os.path.join(root, "zss_blender", "depth.py")):
        raise SetupError(
            f"No ZS² add-on at '{root}' (zss_blender/depth.py is missing) — run the render_depth.py that ships "
            "inside the installed add-on (<add-on>/integrations/flamenco/render_depth.py), or pass --addon-dir "
            "with the add-on folder"
        )
    return root


def depth_module(addon_dir: str | None = None):
    """The add-on's zss_blender.depth module; an add-on already imported from that folder (an enabled
    extension) is reused, else the folder is imported as a package the way Blender imports extensions."""
    root = addon_root(addon_dir)
    init = os.path.realpath(os.path.join(root, "__init__.py"))
    package = None
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and os.path.realpath(path) == init:
            package = name
            break
    if package is None:
        package = ADDON_PACKAGE
        spec = importlib.util.spec_from_file_location(package, init, submodule_search_locations=[root])
        if spec is None or spec.loader is None:
            raise SetupError(f"Cannot import the ZS² add-on from '{root}' — check that the folder is readable")
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{package}.zss_blender.depth")


def render(
    out_dir: str,
    frames: int,
    width: int,
    height: int,
    *,
    frame_start: int | None = None,
    camera: str = "",
    scene_name: str = "",
    addon_dir: str | None = None,
) -> tuple[list[str], tuple[float, float]]:
    """Render depth_0001.png … for `frames` scene frames from `camera` into out_dir; returns (paths,
    (near, far)). The scene's camera is put back afterwards (the add-on restores every render setting)."""
    import bpy

    depth = depth_module(addon_dir)
    if scene_name:
        scene = bpy.data.scenes.get(scene_name)
        if scene is None:
            names = ", ".join(s.name for s in bpy.data.scenes)
            raise SetupError(f"The blend file has no scene named '{scene_name}' — its scenes: {names}")
    else:
        scene = bpy.context.scene
    view_layer = bpy.context.view_layer if scene == bpy.context.scene else scene.view_layers[0]
    camera_before = scene.camera
    if camera:
        obj = bpy.data.objects.get(camera)
        if obj is None or obj.type != "CAMERA":
            names = ", ".join(o.name for o in bpy.data.objects if o.type == "CAMERA") or "none"
            raise SetupError(
                f"The blend file has no camera object named '{camera}' — its cameras: {names}. "
                "Set the job's camera setting to one of them"
            )
        scene.camera = obj
    start = scene.frame_start if frame_start is None else frame_start
    try:
        return depth.render_depth_maps(scene, view_layer, start, frames, width, height, os.path.abspath(out_dir))
    finally:
        scene.camera = camera_before


def script_args(argv: list[str]) -> list[str]:
    """The arguments after Blender's `--` (Blender ignores them; none when there is no `--`)."""
    return argv[argv.index("--") + 1 :] if "--" in argv else []


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(script_args(sys.argv) if argv is None else argv)
    width, height = args.size
    try:
        paths, (near, far) = render(
            args.out,
            args.frames,
            width,
            height,
            frame_start=args.frame_start,
            camera=args.camera,
            scene_name=args.scene,
            addon_dir=args.addon_dir,
        )
    except (SetupError, RuntimeError, OSError) as e:  # DepthError is a RuntimeError; so is a failed render
        print(f"render_depth.py: error: {e}", file=sys.stderr)
        return 1
    print(f"render_depth.py: {len(paths)} depth maps in {os.path.abspath(args.out)} (near {near:.4g}, far {far:.4g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
