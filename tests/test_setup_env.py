"""The generator environment set up for real into a temporary folder (slow: installs torch + diffusers)."""

import io
import json
import shutil

import pytest

from zss_core.client import WorkerClient
from zss_core.setup_env import MARKER, Reporter, SetupError, check_environment, env_python, main, setup

pytestmark = pytest.mark.slow
TORCH = ["torch==2.13.0"]  # the pinned CPU wheel (an unpinned torch would pull a CUDA build)


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    directory = tmp_path_factory.mktemp("generator") / "env"
    out = io.StringIO()
    health = setup(directory, torch_spec=TORCH, reporter=Reporter(as_json=True, stream=out))
    assert health.ok, health.problem
    return directory, [json.loads(line) for line in out.getvalue().splitlines()]


def test_setup_creates_an_environment_whose_python_runs_the_worker(environment):
    directory, events = environment
    steps = [e for e in events if e["type"] == "step"]
    assert [s["step"] for s in steps] == [1, 2, 3, 4] and steps[-1]["fraction"] == 1.0
    assert any(e["type"] == "log" and "torch==2.13.0" in e["line"] for e in events)
    marker = json.loads((directory / MARKER).read_text())
    assert marker["versions"]["torch"].startswith("2.13.0") and "diffusers" in marker["versions"]
    client = WorkerClient(str(env_python(directory)))
    try:
        ready = client.start(timeout=180)
        assert ready.versions["torch"].startswith("2.13.0") and ready.device == "cpu"
    finally:
        client.stop()


def test_a_healthy_environment_is_left_alone(environment):
    directory, _ = environment
    before = (directory / MARKER).stat().st_mtime_ns
    out = io.StringIO()
    health = setup(directory, torch_spec=TORCH, reporter=Reporter(as_json=True, stream=out))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert health.ok and (directory / MARKER).stat().st_mtime_ns == before
    assert not [e for e in events if e["type"] == "log"]  # no pip ran
    assert "nothing to do" in events[-1]["message"]


def test_a_damaged_environment_is_detected(environment, tmp_path):
    directory, _ = environment
    broken = tmp_path / "broken"
    shutil.copytree(directory, broken, symlinks=True)
    site = next(broken.glob("lib/python*/site-packages"))
    shutil.rmtree(site / "diffusers")
    health = check_environment(broken)
    assert not health.ok and "diffusers" in health.missing and "torch" not in health.missing
    assert main([str(broken), "--check"]) == 1
    assert main([str(directory), "--check"]) == 0


def test_offline_setup_refuses_without_touching_the_disk(tmp_path):
    target = tmp_path / "never"
    with pytest.raises(SetupError, match="Online access is off"):
        setup(target, online=False, torch_spec=TORCH)
    assert not target.exists()
    assert main([str(target), "--offline"]) == 1 and not target.exists()


def test_missing_environment_is_reported_not_crashed(tmp_path):
    health = check_environment(tmp_path / "nothing")
    assert not health.ok and "not set up" in health.problem
