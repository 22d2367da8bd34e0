"""Set up, check and repair the generator environment: a virtual environment with torch + diffusers.

Stdlib only: Blender runs this module with its own Python (which has no torch) in a background
process, ``python -m zss_core.setup_env DIR --json``, and reads one JSON progress line per step on
stdout. The same steps are ``zss setup-env DIR`` for people who manage Python themselves.

Torch is matched to the machine: a CUDA build where an NVIDIA GPU answers ``nvidia-smi``, the
default build on macOS (it includes MPS), the CPU build otherwise; ``--torch-spec`` and extra pip
arguments override it (the tests pass the pinned CPU wheel). A marker file records what was installed;
``check_environment`` imports every package in the environment's own Python, so a half-finished or
damaged environment is found and ``setup`` repairs it by re-running the installs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path

# Import name → pip requirement. torch is installed first, separately (its index depends on the machine).
REQUIREMENTS = {
    "diffusers": "diffusers>=0.30",
    "transformers": "transformers>=4.40",
    "accelerate": "accelerate>=0.30",
    "safetensors": "safetensors",
    "PIL": "pillow",
    "numpy": "numpy",
    "imageio_ffmpeg": "imageio-ffmpeg>=0.5",
    "tqdm": "tqdm",
    "peft": "peft>=0.13",  # LoRAs: diffusers' load_lora_weights runs on its PEFT backend (issue 15)
}
MARKER = "zss-environment.json"
CUDA_INDEX = "https://download.pytorch.org/whl/cu124"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


class SetupError(RuntimeError):
    """Setup cannot proceed; the message says what to do."""


def env_python(directory: str | os.PathLike) -> Path:
    """The environment's own Python executable."""
    directory = Path(directory)
    return directory / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def detect_accelerator() -> str:
    """``cuda`` when nvidia-smi lists a GPU, ``mps`` on Apple silicon, else ``cpu``."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            listed = None  # a broken driver install: the CPU build below always works
        if listed is not None and listed.returncode == 0 and "GPU" in listed.stdout:
            return "cuda"
    if sys.platform == "darwin":
        return "mps"
    return "cpu"


def torch_install_args(accelerator: str) -> list[str]:
    """pip arguments that install the torch build for this machine."""
    if accelerator == "cuda":
        return ["torch", "--index-url", CUDA_INDEX]
    if accelerator == "mps":
        return ["torch"]
    return ["torch", "--index-url", CPU_INDEX]


@dataclass
class Health:
    ok: bool
    python: str
    missing: list[str] = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    problem: str = ""

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "python": self.python,
            "missing": self.missing,
            "versions": self.versions,
            "problem": self.problem,
        }


_PROBE = """
import importlib, json, sys
found, missing = {}, []
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
        found[name] = getattr(module, "__version__", "?")
    except Exception as exc:
        missing.append(name + ": " + type(exc).__name__ + ": " + str(exc).splitlines()[0][:200])
print(json.dumps({"found": found, "missing": missing}))
"""


def check_environment(directory_or_python: str | os.PathLike, timeout: float = 300.0) -> Health:
    """Import every package the worker needs in that Python; report what is missing or broken."""
    path = Path(directory_or_python)
    python = env_python(path) if path.is_dir() else path
    if not python.exists():
        return Health(False, str(python), problem=f"No Python at {python}: the environment is not set up.")
    names = ["torch", *REQUIREMENTS]
    try:
        probe = subprocess.run([str(python), "-c", _PROBE, *names], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Health(False, str(python), problem=f"{python} could not be run: {exc}")
    if probe.returncode != 0:
        return Health(False, str(python), problem=f"{python} failed: {probe.stderr.strip()[-500:]}")
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    missing = [entry.split(":")[0] for entry in report["missing"]]
    problem = "; ".join(report["missing"])
    return Health(not missing, str(python), missing, report["found"], problem)


class Reporter:
    """Progress for a person (text) or for Blender (one JSON object per line)."""

    def __init__(self, as_json: bool, stream=None):
        self.as_json = as_json
        self.stream = stream or sys.stdout
        self.total = 4

    def step(self, index: int, message: str) -> None:
        self.emit(
            {"type": "step", "step": index, "total": self.total, "fraction": index / self.total, "message": message}
        )

    def log(self, line: str) -> None:
        self.emit({"type": "log", "line": line})

    def emit(self, event: dict) -> None:
        if self.as_json:
            self.stream.write(json.dumps(event) + "\n")
        else:
            text = event.get("message") or event.get("line", "")
            prefix = f"[{event['step']}/{event['total']}] " if event["type"] == "step" else "    "
            self.stream.write(prefix + text + "\n")
        self.stream.flush()


def _pip(python: Path, args: list[str], reporter: Reporter) -> None:
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", *args]
    reporter.log("$ " + " ".join(command))
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None  # stdout=PIPE
    for line in proc.stdout:
        reporter.log(line.rstrip())
    if proc.wait() != 0:
        raise SetupError(
            f"pip install {' '.join(args)} failed (exit code {proc.returncode}); "
            "see the log above. Check the network, or give extra pip arguments."
        )


def setup(
    directory: str | os.PathLike,
    *,
    online: bool = True,
    base_python: str | None = None,
    torch_spec: list[str] | None = None,
    pip_args: list[str] | None = None,
    rebuild: bool = False,
    reporter: Reporter | None = None,
) -> Health:
    """Create or repair the environment in ``directory``; a healthy one is left as it is.

    ``online=False`` (Blender's "Allow Online Access" off) refuses before touching the disk.
    """
    reporter = reporter or Reporter(as_json=False)
    if not online:
        raise SetupError(
            "Online access is off in Blender's preferences (System ▸ Network), so the generator "
            "cannot be downloaded. Allow online access, or set up the environment yourself with "
            "'zss setup-env DIR' and point the add-on at its Python."
        )
    directory = Path(directory)
    python = env_python(directory)
    if rebuild and directory.exists():
        reporter.step(0, f"Removing {directory}")
        shutil.rmtree(directory)
    if python.exists() and not rebuild:
        health = check_environment(directory)
        if health.ok:
            reporter.step(reporter.total, f"The generator environment in {directory} is healthy: nothing to do.")
            return health
        reporter.step(0, f"Repairing {directory}: {health.problem or 'incomplete'}")
    started = time.monotonic()
    if not python.exists():
        reporter.step(1, f"Creating a virtual environment in {directory}")
        if base_python and Path(base_python).resolve() != Path(sys.executable).resolve():
            subprocess.run([base_python, "-m", "venv", str(directory)], check=True)
        else:
            venv.EnvBuilder(with_pip=True, clear=False).create(directory)
    accelerator = detect_accelerator()
    spec = torch_spec or torch_install_args(accelerator)
    reporter.step(2, f"Installing torch for {accelerator} ({' '.join(spec)})")
    _pip(python, [*spec, *(pip_args or [])], reporter)
    reporter.step(3, "Installing diffusers, transformers and the video encoder")
    _pip(python, [*REQUIREMENTS.values(), *(pip_args or [])], reporter)
    health = check_environment(directory)
    if not health.ok:
        raise SetupError(
            f"The environment was installed but does not work: {health.problem}. Try 'Rebuild', or other pip arguments."
        )
    marker = {
        "accelerator": accelerator,
        "torch_spec": spec,
        "versions": health.versions,
        "platform": platform.platform(),
        "seconds": round(time.monotonic() - started, 1),
    }
    (directory / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
    reporter.step(
        4, f"Done: {', '.join(f'{k} {v}' for k, v in health.versions.items() if k in ('torch', 'diffusers'))}"
    )
    return health


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="zss setup-env", description="Create or repair the generator environment")
    parser.add_argument("directory")
    parser.add_argument("--check", action="store_true", help="only check the environment")
    parser.add_argument("--rebuild", action="store_true", help="delete and recreate it")
    parser.add_argument(
        "--offline", action="store_true", help="refuse to download (as Blender does when online access is off)"
    )
    parser.add_argument("--python", default=None, help="base Python for the venv (default: this one)")
    parser.add_argument("--torch-spec", default=None, help="pip arguments for torch, e.g. 'torch==2.13.0'")
    parser.add_argument("--pip-arg", action="append", default=[], help="extra pip argument (repeatable)")
    parser.add_argument("--json", action="store_true", help="progress as JSON lines (for Blender)")
    args = parser.parse_args(argv)
    reporter = Reporter(args.json)
    if args.check:
        health = check_environment(args.directory)
        reporter.emit({"type": "health", **health.to_dict()}) if args.json else print(
            "healthy" if health.ok else f"broken: {health.problem}"
        )
        return 0 if health.ok else 1
    try:
        health = setup(
            args.directory,
            online=not args.offline,
            base_python=args.python,
            torch_spec=args.torch_spec.split() if args.torch_spec else None,
            pip_args=args.pip_arg,
            rebuild=args.rebuild,
            reporter=reporter,
        )
    except (SetupError, subprocess.CalledProcessError, OSError) as exc:
        if args.json:
            reporter.emit({"type": "error", "message": str(exc)})
        else:
            print(f"zss setup-env: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        reporter.emit({"type": "health", **health.to_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
