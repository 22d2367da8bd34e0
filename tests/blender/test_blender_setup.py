"""Set Up Generator from Blender: the background runner against a fake setup_env (progress, log tail,
success → Generator Python set and worker started, failure → error shown, cancel → process gone),
the online-access refusal, and Check Generator's health report on a real (broken) environment.

The real setup (pip installs) is tested in tests/test_setup_env.py; here only the Blender side runs.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.blender

FAKES = pathlib.Path(__file__).resolve().parent / "fakes"


class FakeWorker:
    """What jobs.ensure_client returns after the install: reports ready at once."""

    def __init__(self, python):
        self.python_executable = python
        self.ready = type(
            "Ready",
            (),
            {
                "versions": {"python": "3.11", "torch": "9.9"},
                "device": "cpu",
                "dtype": "float32",
                "gpu_total_bytes": None,
                "gpu_free_bytes": None,
            },
        )()

    def is_alive(self):
        return True

    def diagnostics(self, lines=40):
        return ""

    def close(self):
        pass


@pytest.fixture
def fake_setup(zb, prefs, monkeypatch, tmp_path):
    """Setup runs fake_setup_env.py; online access is on; the worker start is recorded, not real."""
    monkeypatch.setattr(zb.environment, "SETUP_MODULE", "fake_setup_env")
    monkeypatch.setenv("PYTHONPATH", str(FAKES))
    monkeypatch.setattr(zb.preferences, "online_access", lambda: True)
    started = []

    def ensure_client(prefs):
        started.append(prefs.python_path)
        worker = FakeWorker(prefs.python_path)
        monkeypatch.setattr(zb.jobs, "_client", worker)
        return worker

    monkeypatch.setattr(zb.jobs, "ensure_client", ensure_client)
    prefs.generator_dir = str(tmp_path / "generator")
    prefs.python_path = ""
    return started


def poll_until_idle(environment, timeout=30.0):
    """Call environment.poll() like its timer; returns every (fraction, message) seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while environment.poll() is not None:
        seen.append((environment.state.task.progress, environment.state.task.message))
        assert time.monotonic() < deadline, f"setup did not finish: {environment.state}"
        time.sleep(0.02)
    seen.append((environment.state.task.progress, environment.state.task.message))
    return seen


def test_refused_with_online_access_off_before_touching_disk(zb, prefs, monkeypatch, tmp_path):
    import bpy

    monkeypatch.setattr(zb.preferences, "online_access", lambda: False)
    prefs.generator_dir = ""
    default = zb.environment.default_directory()
    with pytest.raises(RuntimeError, match="Online access is off") as info:
        bpy.ops.zss.setup_generator()
    assert " — " in str(info.value) and "zss setup-env DIR" in str(info.value)
    assert not os.path.exists(default) and not zb.environment.is_running()
    prefs.generator_dir = str(tmp_path / "generator")
    with pytest.raises(RuntimeError, match="Online access is off"):
        bpy.ops.zss.setup_generator(rebuild=True)
    assert not os.path.exists(prefs.generator_dir)


def test_command_line(zb, prefs, tmp_path):
    prefs.setup_torch_spec = "torch==2.13.0"
    prefs.setup_pip_args = "--index-url https://example.invalid/simple --proxy 'http://a b'"
    args = zb.environment.command(prefs, str(tmp_path / "env"), rebuild=True)
    assert args[:6] == [sys.executable, "-u", "-m", "zss_core.setup_env", str(tmp_path / "env"), "--json"]
    assert args[6:] == [
        "--torch-spec=torch==2.13.0",
        "--pip-arg=--index-url",
        "--pip-arg=https://example.invalid/simple",
        "--pip-arg=--proxy",
        "--pip-arg=http://a b",
        "--rebuild",
    ]
    prefs.setup_python = str(tmp_path / "python3")
    assert zb.environment.command(prefs, "D", check=True) == [
        str(tmp_path / "python3"),
        "-u",
        "-m",
        "zss_core.setup_env",
        "D",
        "--json",
        "--check",
    ]
    # The real module parses these arguments (only --help: nothing is installed).
    result = subprocess.run(
        [sys.executable, "-m", "zss_core.setup_env", "--help"],
        check=False,
        capture_output=True,
        text=True,
        env=zb.environment.generator_client.child_env(),
        cwd=str(tmp_path),
    )
    assert result.returncode == 0 and "--torch-spec" in result.stdout and "--pip-arg" in result.stdout


def test_setup_success_sets_python_and_starts_worker(zb, prefs, fake_setup, monkeypatch):
    import bpy

    monkeypatch.setenv("ZSS_FAKE_SETUP", "ok")
    prefs.setup_pip_args = "--index-url https://example.invalid"
    started = time.perf_counter()
    assert bpy.ops.zss.setup_generator() == {"FINISHED"}
    assert time.perf_counter() - started < 2.0  # returns at once; the timer follows the process
    env = zb.environment
    assert env.state.busy and env.is_running() and env.state.action == "setup"
    seen = poll_until_idle(env)

    task = env.state.task
    assert task.status == "done", (task.error, list(env.state.log))
    folder = prefs.generator_dir
    assert prefs.python_path == os.path.join(folder, "bin", "python")
    assert fake_setup == [prefs.python_path]  # the worker was started with the new environment
    assert task.message.startswith("Generator ready on cpu") and task.progress == 1.0
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # The log keeps the last lines only (the fake printed its arguments first, then 12 pip lines and more).
    log = list(env.state.log)
    assert len(log) == env.LOG_LINES and log[-1] == "[4/4] Done: torch 9.9"
    assert "a line that is not JSON" in log and "pip line 11" in log and "pip line 0" not in log
    assert not env.is_running() and not env.state.broken


def test_setup_arguments_reach_the_process(zb, prefs, fake_setup, monkeypatch):
    import bpy

    monkeypatch.setenv("ZSS_FAKE_SETUP", "hang")
    prefs.setup_torch_spec = "torch==2.13.0"
    prefs.setup_pip_args = "--index-url https://example.invalid"
    assert bpy.ops.zss.setup_generator(rebuild=True) == {"FINISHED"}
    env = zb.environment
    deadline = time.monotonic() + 20
    while not any(line.startswith("ARGS ") for line in env.state.log):
        env.poll()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    args = json.loads(next(line for line in env.state.log if line.startswith("ARGS "))[5:])
    assert args == [
        prefs.generator_dir,
        "--json",
        "--torch-spec=torch==2.13.0",
        "--pip-arg=--index-url",
        "--pip-arg=https://example.invalid",
        "--rebuild",
    ]
    assert env.state.action == "rebuild"
    assert bpy.ops.zss.setup_cancel() == {"FINISHED"}


def test_setup_failure_shows_the_error_and_log(zb, prefs, fake_setup, monkeypatch):
    import bpy

    monkeypatch.setenv("ZSS_FAKE_SETUP", "fail")
    prefs.python_path = "/keep/this/python"
    assert bpy.ops.zss.setup_generator() == {"FINISHED"}
    poll_until_idle(zb.environment)
    state = zb.environment.state
    assert state.task.failed()
    assert state.task.error.startswith("Setting up the generator failed: pip install torch failed")
    assert " — " in state.task.error and "Repair" in state.task.error
    assert "a line that is not JSON" in state.log
    assert prefs.python_path == "/keep/this/python" and fake_setup == []


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its (killed) parent's reaper counts as gone
        return f.read().split(")")[-1].split()[0] == "Z"


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
def test_cancel_ends_the_process_and_its_children(zb, prefs, fake_setup, monkeypatch):
    import bpy

    monkeypatch.setenv("ZSS_FAKE_SETUP", "hang")
    assert bpy.ops.zss.setup_generator() == {"FINISHED"}
    env = zb.environment
    proc = env.process()
    deadline = time.monotonic() + 20
    while not any(line.startswith("CHILD ") for line in env.state.log):
        env.poll()
        assert time.monotonic() < deadline, list(env.state.log)
        time.sleep(0.02)
    child = int(next(line for line in env.state.log if line.startswith("CHILD ")).split()[1])
    assert env.state.task.progress == 0.25 and env.state.task.message.startswith("Creating a virtual environment")

    assert bpy.ops.zss.setup_cancel() == {"FINISHED"}
    assert proc.poll() is not None and not env.is_running()  # gone at once, not after the next poll
    deadline = time.monotonic() + 10
    while not _gone(child):
        assert time.monotonic() < deadline, "pip (the child) survived the cancel"
        time.sleep(0.05)
    assert env.state.task.cancelled() and env.poll() is None
    assert not bpy.ops.zss.setup_cancel.poll()
    assert prefs.python_path == "" and fake_setup == []


def test_setup_refused_while_a_clip_runs(zb, prefs, fake_setup, monkeypatch):
    import bpy

    monkeypatch.setattr(zb.jobs, "is_running", lambda: True)
    with pytest.raises(RuntimeError, match="A clip or download is running"):
        bpy.ops.zss.setup_generator()
    assert not zb.environment.is_running()


def test_check_generator_reports_missing_packages_and_offers_repair(zb, prefs, tmp_path, monkeypatch):
    import bpy

    # A real environment without any of the generator's packages (no pip: ~0.1 s).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    prefs.python_path = str(tmp_path / "bare" / "bin" / "python")
    with pytest.raises(RuntimeError) as info:
        bpy.ops.zss.check_generator(timeout=60)
    message = str(info.value)
    assert "The generator environment is not usable: missing torch, diffusers" in message
    assert "Repair" in message and "Rebuild" in message
    assert zb.environment.state.broken
    worker = zb.jobs.client()  # not started for a broken environment
    assert worker is None or worker.python_executable != prefs.python_path

    # Repair installs what is missing into that environment (here: the fake setup).
    monkeypatch.setattr(zb.environment, "SETUP_MODULE", "fake_setup_env")
    monkeypatch.setenv("PYTHONPATH", str(FAKES))
    monkeypatch.setattr(zb.preferences, "online_access", lambda: True)
    monkeypatch.setattr(zb.jobs, "ensure_client", lambda prefs: FakeWorker(prefs.python_path))
    monkeypatch.setattr(zb.jobs, "client", lambda: FakeWorker(prefs.python_path))
    prefs.generator_dir = str(tmp_path / "generator")
    assert bpy.ops.zss.setup_generator(repair=True) == {"FINISHED"}
    assert zb.environment.state.action == "repair" and zb.environment.state.directory == str(tmp_path / "bare")
    poll_until_idle(zb.environment)
    assert zb.environment.state.task.status == "done" and not zb.environment.state.broken
    assert prefs.python_path == str(tmp_path / "bare" / "bin" / "python")

    # Rebuild only ever deletes the add-on's own environment folder.
    assert bpy.ops.zss.setup_generator(rebuild=True) == {"FINISHED"}
    assert zb.environment.state.directory == prefs.generator_dir
    poll_until_idle(zb.environment)
    assert prefs.python_path == str(tmp_path / "generator" / "bin" / "python")


def test_check_of_a_folder_without_python(zb, prefs, tmp_path):
    health = zb.environment.check(prefs, str(tmp_path / "nothing"))
    assert health["ok"] is False and "not set up" in health["problem"]


def test_generate_refuses_a_python_without_torch_and_names_the_fix(zb, prefs, tmp_path):
    """Bug 1: a generator Python without torch passed the pre-checks and failed later in the worker with
    a cut traceback. Generate now imports the generator's packages in that Python first."""
    import bpy

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    prefs.python_path = str(tmp_path / "bare" / "bin" / "python")
    scene = bpy.context.scene
    scene.zss.prompt, scene.zss.frames, scene.zss.width, scene.zss.height = "slate", 2, 64, 64
    worker = zb.jobs.client()
    with pytest.raises(RuntimeError) as info:
        bpy.ops.zss.generate()
    message = str(info.value)
    assert f"The generator Python {prefs.python_path} cannot run the generator: missing torch" in message
    assert "Press Set Up Generator" in message and " — " in message
    assert zb.jobs.client() is worker and not zb.jobs.is_running()  # nothing was started or sent
    assert not os.path.exists(os.path.join(prefs.output_dir, ".staging"))
    assert zb.environment.state.broken  # the preferences show Repair / Rebuild too


def test_a_healthy_generator_is_checked_once(zb, prefs, tmp_path):
    """The check imports torch in the generator's Python (seconds): it runs once per python and its
    installed packages, not for every Generate."""
    # A fresh environment (so no earlier test has checked it) that sees the generator's packages via a .pth.
    generator = prefs.python_path
    purelib = subprocess.run(
        [generator, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run([generator, "-m", "venv", "--without-pip", str(tmp_path / "env")], check=True)
    site = subprocess.run(
        [str(tmp_path / "env" / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (pathlib.Path(site) / "generator.pth").write_text(purelib + "\n")
    prefs.python_path = str(tmp_path / "env" / "bin" / "python")

    assert zb.environment.generator_problem(prefs) is None
    health = zb.environment.state.health
    assert health["ok"] and health["versions"].get("torch")
    started = time.perf_counter()
    assert zb.environment.generator_problem(prefs) is None
    assert zb.environment.state.health is health  # remembered: not run again
    assert time.perf_counter() - started < 0.5

    # Installing (or removing) a package changes site-packages: checked again.
    time.sleep(0.01)
    (pathlib.Path(site) / "another.pth").write_text("")
    assert zb.environment.generator_problem(prefs) is None
    assert zb.environment.state.health is not health and zb.environment.state.health["ok"]
