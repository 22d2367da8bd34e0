"""Generator: A Server, with real bpy and a real `zss serve` (loopback, a free port, a token made here,
the tiny model by name; TLS is tested with the server itself). Frames come down into //zss/<job-id>/
and import like a local clip; a server that goes away shows in the panel and the job recovers or ends
interrupted; a queue of three with one cancelled runs through the server.
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from conftest import GENERATOR_PYTHON, REPO
from test_blender_e2e import imported, poll_until_idle
from test_blender_panels import draw, draw_preferences


def _can_serve(python):
    """Whether the generator's Python has what `zss serve` needs (torch, FastAPI, uvicorn)."""
    probe = (
        "import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in ('torch', 'fastapi', 'uvicorn')))"
    )
    try:
        return subprocess.run([python, "-c", probe], check=False, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [
    pytest.mark.blender,
    pytest.mark.slow,
    pytest.mark.skipif(
        not _can_serve(GENERATOR_PYTHON),
        reason=f"the generator Python {GENERATOR_PYTHON} cannot run `zss serve` (pip install '.[serve]')",
    ),
]

START_TIMEOUT = 120.0  # the server starts its worker, which imports torch and loads the tiny model


class Server:
    """`zss serve` on 127.0.0.1 in its own process group; start() and kill() may be repeated."""

    def __init__(self, folder):
        self.folder = folder
        self.port = self._free_port()
        self.token_file = os.path.join(folder, "tokens.txt")
        self.models = os.path.join(folder, "models.toml")
        with open(self.models, "w", encoding="utf-8") as f:
            f.write('[models.tiny]\nmodel = "tiny"\ncontrolnet = "tiny"\n')
        self.token = self._zss("token", "new", "--token-file", self.token_file).strip()
        self.process = None

    @staticmethod
    def _free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    @staticmethod
    def _zss(*args):
        command = [GENERATOR_PYTHON, "-m", "zss_core.cli", *args]
        return subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO).stdout

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        command = [GENERATOR_PYTHON, "-m", "zss_core.cli", "serve", "--port", str(self.port), "--workers", "1"]
        command += ["--data", os.path.join(self.folder, "data"), "--token-file", self.token_file]
        command += ["--models", self.models]
        with open(os.path.join(self.folder, "server.log"), "a", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._workers_ready():
            assert self.process.poll() is None and time.monotonic() < deadline, self.log()
            time.sleep(0.3)
        return self

    def _workers_ready(self):
        request = urllib.request.Request(self.url + "/v1/models", headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return all(w["ready"] for w in json.load(answer)["workers"])
        except OSError:  # not listening yet
            return False

    def kill(self):
        """The server and its worker die at once (a crash, a reboot)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)

    def log(self):
        with open(os.path.join(self.folder, "server.log"), encoding="utf-8", errors="replace") as f:
            return f.read()[-4000:]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Server(str(tmp_path_factory.mktemp("server"))).start()
    yield running
    running.kill()


@pytest.fixture
def server_prefs(zb, prefs, server, tmp_path):
    """The preferences pointed at the test server, and a saved .blend (clips go to //zss/)."""
    import bpy

    prefs.generator = "SERVER"
    prefs.server_url = server.url
    prefs.server_token = server.token
    prefs.output_dir = ""
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    settings = bpy.context.scene.zss
    settings.prompt = "a red brick wall"
    settings.frames = 4
    settings.width = settings.height = 64
    settings.steps = 2
    settings.seed = 7
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj.name == "Cube")
    yield prefs
    zb.jobs.abandon("test ended")
    zb.jobs.stop_worker()  # the next test starts from its own preferences
    prefs.generator = "LOCAL"


def test_check_server_lists_its_models_and_hides_the_local_setup(zb, server_prefs):
    import bpy

    assert bpy.ops.zss.check_server() == {"FINISHED"}
    assert zb.preferences.server_model_names(server_prefs) == ["tiny"]
    log = draw_preferences(zb, server_prefs)
    assert ("prop", "server_url") in log and ("prop", "server_token") in log and ("operator", "zss.check_server") in log
    assert ("prop", "python_path") not in log and ("operator", "zss.setup_generator") not in log
    status = zb.jobs.server_status()
    assert status.startswith("Server ZS² ") and "1 CPU worker(s)" in status and "models tiny (depth)" in status
    assert ("label", status) in log

    server_prefs.server_token = "not-the-token"
    with pytest.raises(RuntimeError, match="token"):
        bpy.ops.zss.check_server()


def test_generate_with_depth_downloads_into_the_blend_folder_and_imports(zb, server_prefs, server, tmp_path):
    import bpy

    settings = bpy.context.scene.zss
    settings.use_depth = True
    settings.target = "BOTH"
    assert bpy.ops.zss.generate() == {"FINISHED"}
    job = zb.jobs.running_job().job
    assert job["model"] == "tiny" and "controlnet_model" not in job  # a name: the server resolves it
    poll_until_idle(zb.jobs)
    task = zb.jobs.job_task()
    assert task.status == "done", (task.message, task.error, server.log())

    job_dir = str(tmp_path / "zss" / job["id"])  # //zss/<job-id>/ next to the saved .blend
    frames = sorted(name for name in os.listdir(job_dir) if name.startswith("frame_"))
    assert frames == [f"frame_{i:04d}.png" for i in range(1, 5)]
    (material,), (strip,), _images = imported(bpy)
    assert (
        bpy.data.objects["Cube"].active_material == material
        and os.path.normpath(bpy.path.abspath(material["zss_job_dir"])) == job_dir
    )
    assert len(strip.elements) == 4
    with open(os.path.join(job_dir, "job.json"), encoding="utf-8") as f:
        assert json.load(f)["job"]["id"] == job["id"]

    # The token is in no clip file and not in the saved .blend.
    bpy.ops.wm.save_mainfile()
    token = server.token.encode()
    for folder, _dirs, names in os.walk(tmp_path):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                assert token not in f.read(), os.path.join(folder, name)


def test_server_stopped_mid_job_shows_in_the_panel_and_ends_interrupted(zb, server_prefs, server):
    import bpy

    settings = bpy.context.scene.zss
    settings.steps = 150
    assert bpy.ops.zss.generate() == {"FINISHED"}
    poll_until_idle(zb.jobs, until=lambda: zb.jobs.job_task().message.startswith("Sampling"))
    server.kill()
    poll_until_idle(zb.jobs, timeout=60, until=lambda: bool(zb.jobs.connection_problem()))
    assert zb.jobs.is_running()
    problem = zb.jobs.connection_problem()
    assert problem.startswith("Server unreachable, retrying"), problem
    assert ("label", problem) in draw(zb)

    server.start()  # the same data folder: the job it lost is now `interrupted`
    poll_until_idle(zb.jobs, timeout=120)
    task = zb.jobs.job_task()
    assert task.failed() and "server stopped" in task.error, (task.message, task.error)
    assert zb.jobs.connection_problem() == ""

    settings.steps = 2  # the server works again
    assert bpy.ops.zss.generate() == {"FINISHED"}
    poll_until_idle(zb.jobs)
    assert zb.jobs.job_task().status == "done"


def test_a_queue_of_three_with_one_cancelled_through_the_server(zb, server_prefs, tmp_path):
    import bpy

    ids = []
    for seed in (1, 2, 3):
        bpy.context.scene.zss.seed = seed
        assert bpy.ops.zss.generate() == {"FINISHED"}
        ids.append(zb.jobs.running_jobs()[-1].id)
    assert bpy.ops.zss.cancel_job(job_id=ids[1]) == {"FINISHED"}
    poll_until_idle(zb.jobs)
    tasks = zb.jobs.job_tasks()
    assert [t.status for t in tasks] == ["done", "cancelled", "done"], [(t.message, t.error) for t in tasks]
    assert sorted(m["zss_job_id"] for m in imported(bpy)[0]) == sorted([ids[0], ids[2]])
    assert not os.path.isdir(tmp_path / "zss" / ".staging") or not os.listdir(tmp_path / "zss" / ".staging")


def test_server_preferences_are_checked_before_anything_is_sent(zb, prefs):
    """No URL: refused with what to do; the local generator's Python is not asked for."""
    import bpy

    prefs.generator = "SERVER"
    prefs.python_path = ""
    bpy.context.scene.zss.prompt = "dunes"
    try:
        problems = zb.operators.validation_problems(bpy.context)
        assert [field for field, _ in problems] == ["server_url"], problems
        assert "Server URL" in problems[0][1]
        prefs.server_url = "gpu-box:7860"
        assert "does not start with https://" in zb.operators.validation_problems(bpy.context)[0][1]
        prefs.server_url = "https://gpu-box:7860"
        prefs.model = ""
        assert zb.operators.validation_problems(bpy.context) == []
        plan = zb.jobspec.plan(bpy.context, prefs, (), job_id="validation")
        assert plan.job["model"] == "textures" and not plan.job["allow_pickle"]  # the server's default name
        assert not bpy.ops.zss.download_model.poll()  # the server has its own models
    finally:
        prefs.generator = "LOCAL"
