"""Stands in for `python -m zss_core.setup_env DIR --json` in the Blender setup tests.

ZSS_FAKE_SETUP selects the outcome: "ok" (steps, logs, a health report, exit 0), "fail" (an error
event, exit 1) or "hang" (starts a child process, then sleeps until killed). Prints its arguments as
the first log line so tests can check the command line.
"""

import json
import os
import subprocess
import sys
import time


def emit(**event):
    print(json.dumps(event), flush=True)


def main():
    folder = sys.argv[1]
    mode = os.environ.get("ZSS_FAKE_SETUP", "ok")
    emit(type="log", line="ARGS " + json.dumps(sys.argv[1:]))
    if "--check" in sys.argv:
        emit(type="health", ok=False, python=folder, missing=["torch"], versions={}, problem="torch: missing")
        return 1
    emit(type="step", step=1, total=4, fraction=0.25, message=f"Creating a virtual environment in {folder}")
    if mode == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        emit(type="log", line=f"CHILD {child.pid}")
        time.sleep(120)
        return 0
    for i in range(12):
        emit(type="log", line=f"pip line {i}")
    print("a line that is not JSON", flush=True)
    if mode == "fail":
        emit(type="error", message="pip install torch failed (exit code 1); see the log above.")
        return 1
    emit(type="step", step=2, total=4, fraction=0.5, message="Installing torch")
    emit(type="step", step=3, total=4, fraction=0.75, message="Installing diffusers")
    python = os.path.join(folder, "bin", "python")
    os.makedirs(os.path.dirname(python), exist_ok=True)
    if os.path.lexists(python):
        os.remove(python)  # never write through a venv's symlink into the real interpreter
    with open(python, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(python, 0o755)
    emit(type="step", step=4, total=4, fraction=1.0, message="Done: torch 9.9")
    emit(type="health", ok=True, python=python, missing=[], versions={"torch": "9.9"}, problem="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
