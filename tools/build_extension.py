"""Build and validate the Blender extension zip from the repository root.

Uses Blender's own builder (bl_pkg/cli/blender_ext.py, shipped inside the bpy package and in every
Blender install) so the zip is exactly what Blender's "Install from Disk" expects, without needing a
Blender binary. Prints the path of the zip on success.

    python tools/build_extension.py --output-dir dist [--blender-ext PATH]
"""

import argparse
import glob
import importlib.util
import os
import subprocess
import sys
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILDER_GLOB = os.path.join("*", "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py")


def find_builder():
    """blender_ext.py inside the installed bpy package (found without importing bpy: that is slow)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        matches = sorted(glob.glob(os.path.join(root, BUILDER_GLOB)))
        if matches:
            return matches[-1]  # the newest version folder if several
    return None


def run_builder(builder, *args):
    cmd = [sys.executable, builder, *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"error: `{' '.join(cmd)}` failed with exit status {result.returncode}")
    return result.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="dist", help="folder for the zip (created if missing)")
    parser.add_argument("--source-dir", default=REPO, help="extension source (default: the repository root)")
    parser.add_argument("--blender-ext", help="path to blender_ext.py (default: the one inside the bpy package)")
    args = parser.parse_args(argv)

    builder = args.blender_ext or find_builder()
    if not builder or not os.path.isfile(builder):
        raise SystemExit("error: Blender's extension builder (blender_ext.py) was not found. Install the bpy "
                         "package (pip install -e '.[blender]') or pass --blender-ext "
                         "<blender>/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py")

    with open(os.path.join(args.source_dir, "blender_manifest.toml"), "rb") as fh:
        manifest = tomllib.load(fh)
    output_dir = os.path.abspath(args.output_dir)
    os.makedirs(output_dir, exist_ok=True)  # the builder needs it to exist
    zip_path = os.path.join(output_dir, f"{manifest['id']}-{manifest['version']}.zip")  # the builder's name

    run_builder(builder, "build", "--source-dir", os.path.abspath(args.source_dir), "--output-dir", output_dir)
    if not os.path.isfile(zip_path):
        raise SystemExit(f"error: the builder reported success but {zip_path} is missing")
    run_builder(builder, "validate", zip_path)
    print(zip_path)
    return zip_path


if __name__ == "__main__":
    main()
