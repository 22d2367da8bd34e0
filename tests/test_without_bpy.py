"""The engine's tests run where no bpy is installed (a GPU server, a plain CI image).

The repository root is a package (it is also the Blender extension), so pytest imports its
`__init__.py`; that must not import the add-on, which imports bpy. Proved in a child Python in which
`import bpy` fails exactly as it does without the wheel (`sys.modules['bpy'] = None`).
"""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

WITHOUT_BPY = "import sys; sys.modules['bpy'] = None; import pytest; raise SystemExit(pytest.main(sys.argv[1:]))"


def pytest_without_bpy(*args):
    return subprocess.run([sys.executable, "-c", WITHOUT_BPY, "-p", "no:cacheprovider", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_core_tests_collect_and_blender_tests_are_skipped_without_bpy():
    result = pytest_without_bpy("--collect-only", "-q", "tests")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert "error" not in summary, output[-4000:]
    collected = {line.split("::", 1)[0] for line in result.stdout.splitlines() if "::" in line}
    core_files = {f"tests/{p.name}" for p in (ROOT / "tests").glob("test_*.py")}
    assert core_files <= collected, f"not collected without bpy: {sorted(core_files - collected)}"
    assert not [name for name in collected if name.startswith("tests/blender/")]


def test_a_core_test_file_passes_without_bpy():
    result = pytest_without_bpy("-q", "tests/test_protocol.py")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert re.search(r"\d+ passed", result.stdout), result.stdout[-2000:]
