"""Models and memory: preferences reach the job (pickle, memory savers, Auto chunk), a finished clip
lands in Recent Models and shows its notes, downloads go through the worker (and are refused offline),
the worker runs with HF_HUB_OFFLINE=1 when online access is off, and every error has a hint that the
README's troubleshooting table shows."""

import pathlib

import pytest
from PIL import Image

pytestmark = pytest.mark.blender

REPO = pathlib.Path(__file__).resolve().parents[2]


def build(zb, prefs):
    import bpy

    return zb.jobspec.build(bpy.context.scene, prefs, "job-1", zb.jobspec.output_root(prefs))


def test_pickle_memory_and_chunk_reach_the_job(zb, prefs):
    import bpy

    settings = bpy.context.scene.zss
    settings.prompt = "fog"
    job = build(zb, prefs)
    assert job["chunk"] == "auto"  # the default
    assert not (job["allow_pickle"] or job["attention_slicing"] or job["vae_tiling"] or job["cpu_offload"])
    prefs.allow_pickle = prefs.attention_slicing = prefs.vae_tiling = prefs.cpu_offload = True
    job = build(zb, prefs)
    assert job["allow_pickle"] and job["attention_slicing"] and job["vae_tiling"] and job["cpu_offload"]
    assert zb.operators.checks.protocol.validate_job(job) == []
    for chunk, expected in ((-1, "auto"), (0, None), (3, 3)):
        settings.chunk = chunk
        assert build(zb, prefs)["chunk"] == expected
        assert zb.jobspec.chunk_setting(expected) == chunk
    assert (
        "risk" in type(prefs).bl_rna.properties["allow_pickle"].description
        or "run code" in type(prefs).bl_rna.properties["allow_pickle"].description
    )


class FakeClient:
    """A GeneratorClient stand-in: records requests, hands out the events a test queues."""

    def __init__(self, python="python"):
        self.python_executable = python
        self.env = None
        self.ready = None
        self.events = []
        self.sent = []

    def is_alive(self):
        return True

    def poll_events(self):
        events, self.events = self.events, []
        return events

    def submit(self, job):
        self.sent.append(("generate", job["id"]))

    def download(self, model, task_id):
        self.sent.append(("download", model, task_id))
        return task_id

    def close(self):
        pass


@pytest.fixture
def fake_client(zb, monkeypatch):
    client = FakeClient()
    zb.jobs.stop_worker()
    monkeypatch.setattr(zb.jobs, "make_client", lambda prefs: client)
    reports = []
    monkeypatch.setattr(zb.jobs, "report", lambda kind, message: reports.append((kind, message)))
    client.reports = reports
    yield client
    zb.jobs.abandon("test ended")
    zb.jobs.stop_worker()  # the next test must not find the stand-in as its warm client


def test_done_job_updates_recent_models_and_shows_notes(zb, prefs, fake_client, tmp_path):
    import bpy

    protocol = zb.operators.checks.protocol
    settings = bpy.context.scene.zss
    settings.prompt, settings.frames, settings.width, settings.height = "dunes", 2, 64, 64
    for old in ("x/old-1", "tiny", "x/old-2"):
        zb.preferences.remember_model(prefs, old)
    assert bpy.ops.zss.generate() == {"FINISHED"}
    job = zb.jobs.running_job().job
    frames = []
    for i in range(2):
        path = tmp_path / "out" / job["id"] / f"frame_{i + 1:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64)).save(path)
        frames.append(str(path))
    note = "Ran out of memory with 2 frames per chunk; finished with 1."
    fake_client.events = [
        protocol.Accepted(id=job["id"], queue_position=0),
        protocol.Done(
            id=job["id"],
            frames=frames,
            video=None,
            contact_sheet=None,
            manifest=str(tmp_path / "out" / job["id"] / "job.json"),
            seconds=1.0,
            model_load_seconds=0.1,
            notes=[note],
        ),
    ]
    assert zb.jobs.poll() is None and zb.jobs.job_task().message.startswith("Done")
    assert zb.preferences.recent_models(prefs) == ["tiny", "x/old-2", "x/old-1"]  # distinct, newest first
    assert zb.jobs.job_task().result["notes"] == [note] and ("INFO", f"ZS²: {note}") in fake_client.reports

    for i in range(10):
        zb.preferences.remember_model(prefs, f"m/{i}")
    assert len(zb.preferences.recent_models(prefs)) == zb.preferences.RECENT_MODELS == 8
    assert bpy.ops.zss.use_recent_model(model="m/3") == {"FINISHED"} and prefs.model == "m/3"

    # A new job clears the last job's notes.
    assert bpy.ops.zss.generate() == {"FINISHED"}
    assert zb.jobs.job_task().result["notes"] == [] and zb.jobs.job_task().running()
    zb.jobs.abandon("test ended")


def test_download_through_the_worker(zb, prefs, fake_client, monkeypatch):
    import bpy

    protocol = zb.operators.checks.protocol
    monkeypatch.setattr(zb.preferences, "online_access", lambda: True)
    prefs.model = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert zb.preferences.is_hub_id(prefs.model)
    assert bpy.ops.zss.download_model() == {"FINISHED"}
    ((kind, model, task_id),) = fake_client.sent
    assert (kind, model) == ("download", prefs.model) and protocol.JOB_ID_PATTERN.fullmatch(task_id)
    assert zb.jobs.download_running() and not bpy.ops.zss.download_model.poll()
    fake_client.events = [
        protocol.Accepted(id=task_id, queue_position=0),
        protocol.Progress(id=task_id, step=0, total=1, fraction=0.0, elapsed=0.0, eta=None, stage="download"),
    ]
    assert zb.jobs.poll() is not None
    assert zb.jobs.download_task().message == f"Downloading {prefs.model}…"
    fake_client.events = [protocol.Downloaded(id=task_id, model=prefs.model, path="/cache/sd15", seconds=42.0)]
    assert zb.jobs.poll() is None
    task = zb.jobs.download_task()
    assert task.message == f"Downloaded {prefs.model} in 42 s" and not zb.jobs.download_running()
    assert task.status == "done" and task.result == "/cache/sd15"
    assert fake_client.reports[-1][0] == "INFO" and "/cache/sd15" in fake_client.reports[-1][1]

    # A failed download shows the generator's message with a hint.
    assert bpy.ops.zss.download_model() == {"FINISHED"}
    task_id = fake_client.sent[-1][2]
    fake_client.events = [protocol.Error(id=task_id, code="download_failed", message="Could not download it")]
    assert zb.jobs.poll() is None
    assert zb.jobs.download_task().error == "Could not download it" and zb.jobs.download_task().failed()
    assert zb.jobs.download_task().hint == zb.hints.WORKER_FIXES["download_failed"][1]


def test_download_refused_offline_or_for_local_models(zb, prefs, fake_client, monkeypatch, tmp_path):
    import bpy

    prefs.model = "someone/model"
    monkeypatch.setattr(zb.preferences, "online_access", lambda: False)
    assert not bpy.ops.zss.download_model.poll()
    with pytest.raises(RuntimeError):
        bpy.ops.zss.download_model()
    monkeypatch.setattr(zb.preferences, "online_access", lambda: True)
    (tmp_path / "someone" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # now "someone/model" is a local folder
    assert not zb.preferences.is_hub_id(prefs.model)
    with pytest.raises(RuntimeError, match="is not a hub id"):
        bpy.ops.zss.download_model()
    for text, hub in (
        ("a/b", True),
        ("tiny", False),
        ("/abs/path", False),
        ("a/b/c", False),
        ("C:\\x/y", False),
        ("~/x", False),
        ("//rel/x", False),
        ("a b/c", False),
    ):
        assert zb.preferences.is_hub_id(text) is hub, text
    assert fake_client.sent == []


def test_worker_environment_follows_online_access(zb, prefs, monkeypatch):
    class Recorder(FakeClient):
        def __init__(self, python, env=None):
            super().__init__(python)
            self.env = env
            self.alive = False

        def is_alive(self):
            return self.alive

        def start(self, wait=True):
            self.alive = True

        def close(self):
            self.alive = False

    zb.jobs.stop_worker()
    monkeypatch.setattr(zb.jobs.generator_client, "LocalClient", Recorder)
    monkeypatch.setattr(zb.preferences, "online_access", lambda: False)
    try:
        offline = zb.jobs.ensure_client(prefs)
        assert offline.env["HF_HUB_OFFLINE"] == "1" and offline.alive
        assert zb.jobs.ensure_client(prefs) is offline  # kept warm
        monkeypatch.setattr(zb.preferences, "online_access", lambda: True)
        online = zb.jobs.ensure_client(prefs)  # online access turned on: a fresh worker without the flag
        assert online is not offline and online.env is None and not offline.alive
    finally:
        zb.jobs.stop_worker()


def test_every_error_has_a_hint_and_the_readme_table_is_current(zb):
    protocol = zb.operators.checks.protocol
    hints = zb.hints
    assert set(protocol.ERROR_CODES) <= set(hints.WORKER_FIXES)
    assert all(symptom and fix for symptom, fix in [*hints.FIXES.values(), *hints.WORKER_FIXES.values()])
    assert hints.worker_hint("out_of_memory", "") == hints.WORKER_FIXES["out_of_memory"][1]
    assert hints.worker_hint("out_of_memory", "use a smaller chunk") == "use a smaller chunk"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert hints.markdown_table() in readme, "regenerate the README table: python -c 'print(hints.markdown_table())'"
    # Every hints key the code uses exists (a typo would raise KeyError only when that error happens).
    import re

    used = set()
    for path in (REPO / "zss_blender").glob("*.py"):
        used |= set(re.findall(r'hints\.(?:message|fix)\(\s*"([a-z_]+)"', path.read_text(encoding="utf-8")))
    assert used and used <= set(hints.FIXES), used - set(hints.FIXES)


def test_progress_stages_read_as_the_panel_shows_them(zb, prefs, fake_client):
    """Bug 9, add-on side: each protocol stage has its own words; k/N only where it means something; the
    time left once sampling started. (test_blender_e2e feeds a real worker's events the same way.)"""
    import bpy

    protocol = zb.operators.checks.protocol
    settings = bpy.context.scene.zss
    settings.prompt, settings.frames, settings.width, settings.height, settings.steps = "tide", 2, 64, 64, 30
    assert bpy.ops.zss.generate() == {"FINISHED"}
    job_id = zb.jobs.running_job().id

    def shown(stage, step, total, eta):
        fake_client.events = [
            protocol.Progress(id=job_id, step=step, total=total, fraction=0.5, elapsed=1.0, eta=eta, stage=stage)
        ]
        assert zb.jobs.poll() is not None
        return zb.jobs.job_task().message

    assert shown("load", 0, 30, None) == "Loading model…"  # not "Loading model 0/30"
    assert shown("encode", 0, 1, None) == "Encoding prompt…"
    assert shown("denoise", 3, 30, 42.4) == "Sampling 3/30, about 42 s left"
    assert shown("denoise", 29, 30, 200.0) == "Sampling 29/30, about 3 min left"
    assert shown("decode", 1, 2, 0.4) == "Decoding frame 1/2, about 1 s left"
    assert shown("write", 2, 2, None) == "Writing frames"
    assert zb.jobs.job_task().progress == 0.5
    redraws = zb.jobs.poll()  # nothing new: the task is unchanged
    assert redraws is not None and zb.jobs.job_task().message == "Writing frames"
    zb.jobs.abandon("test ended")
