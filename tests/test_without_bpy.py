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
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_BPY, "-p", "no:cacheprovider", *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_core_tests_collect_and_run_without_bpy():
    """Every core test module is collected (deselected, not errored: importing each is the check) and
    the protocol tests pass; tests/blender is left out, not failed."""
    result = pytest_without_bpy("-q", "-rN", "-k", "test_protocol", "tests")
    output = result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, output[-4000:]
    assert "error" not in summary, output[-4000:]
    passed, deselected = (int(re.search(rf"(\d+) {word}", summary).group(1)) for word in ("passed", "deselected"))
    assert passed >= 10 and deselected >= 100, summary
