"""Build and validate the Blender extension zip from the repository root; needs only Python 3.11+.

Uses Blender's own builder, so the zip is exactly what Blender's "Install from Disk" expects: by default
tools/blender_ext.py, an unmodified copy of Blender 5.0.1's scripts/addons_core/bl_pkg/cli/blender_ext.py
(GPL-2.0-or-later, standard library only; sha256 e2572d24…8651), so no Blender, bpy wheel or virtual
environment is needed. --blender-ext picks another copy, e.g. the one inside a Blender install.
Prints the path of the zip on success.

    python3 tools/build_extension.py --output-dir dist [--blender-ext PATH]
"""

import argparse
import os
import subprocess
import sys

if sys.version_info < (3, 11):
    raise SystemExit("error: building the extension needs Python 3.11 or newer (tomllib) — run it with python3.11")

import tomllib  # after the version check, which says what to do instead of failing here

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENDORED_BUILDER = os.path.join(REPO, "tools", "blender_ext.py")


def run_builder(builder, *args):
    """Run blender_ext.py without site-packages (-S): it needs the standard library only."""
    cmd = [sys.executable, "-S", builder, *args]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"error: `{' '.join(cmd)}` failed with exit status {result.returncode}")
    return result.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="dist", help="folder for the zip (created if missing)")
    parser.add_argument("--source-dir", default=REPO, help="extension source (default: the repository root)")
    parser.add_argument(
        "--blender-ext", default=VENDORED_BUILDER, help="Blender's blender_ext.py (default: the copy in tools/)"
    )
    args = parser.parse_args(argv)

    builder = args.blender_ext
    if not os.path.isfile(builder):
        raise SystemExit(
            f"error: Blender's extension builder {builder} does not exist — pass --blender-ext "
            "<blender>/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py"
        )

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
