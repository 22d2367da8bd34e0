"""The worker as a real subprocess, driven through WorkerClient: order, reuse, cancel, crashes, bad input."""

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from zss_core import protocol
from zss_core.client import WorkerClient
from zss_core.export import recover_job

pytestmark = pytest.mark.slow


def job(tmp_path, job_id, **overrides):
    base = dict(
        id=job_id,
        prompt="a brick wall",
        model="tiny",
        output_dir=str(tmp_path / "out"),
        frames=4,
        width=64,
        height=64,
        steps=3,
    )
    base.update(overrides)
    return base


@pytest.fixture
def client():
    c = WorkerClient(sys.executable)
    c.start(timeout=120)
    yield c
    c.stop()


def events_until_end(client, job_id, timeout=120):
    client.wait_for(lambda e: e.id == job_id and e.type in ("done", "error", "cancelled"), timeout)
    return [e for e in client.history if e.id == job_id]


def test_ready_reports_protocol_and_versions(client):
    assert client.ready.protocol == protocol.PROTOCOL_VERSION
    assert client.ready.versions["torch"] and client.ready.device == "cpu" and client.ready.dtype == "float32"


def test_full_job_event_order_and_files(client, tmp_path):
    client.submit(job(tmp_path, "j1"))
    events = events_until_end(client, "j1")
    kinds = [e.type for e in events]
    assert kinds[0] == "accepted" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"progress", "frame"}
    steps = [e.step for e in events if e.type == "progress" and e.stage == "denoise"]
    assert steps == [0, 1, 2, 3]
    decoded = [e.step for e in events if e.type == "progress" and e.stage == "decode"]
    assert decoded == [0, 1, 2, 3, 4]
    done = events[-1]
    assert [e.path for e in events if e.type == "frame"] == done.frames
    on_disk = sorted(str(p) for p in (tmp_path / "out" / "j1").glob("frame_*.png"))
    assert on_disk == done.frames and len(on_disk) == 4
    assert Path(done.video).stat().st_size > 0 and Path(done.contact_sheet).exists()
    manifest = json.loads(Path(done.manifest).read_text())
    assert manifest["status"] == "done" and manifest["job"]["id"] == "j1" and len(manifest["frames"]) == 4
    assert {"noise", "timings", "versions", "seed", "device", "dtype"} <= set(manifest)


def test_progress_goes_through_every_stage_in_order_with_a_falling_eta(client, tmp_path):
    """Bug 9: load → encode → denoise k/N → decode f/F → write, and the time left once sampling started."""
    client.submit(job(tmp_path, "stages", frames=4, steps=10, preview_every=0))  # the ETA alone: no preview step
    progress = [e for e in events_until_end(client, "stages") if e.type == "progress"]
    stages = [e.stage for e in progress]
    order = [stage for i, stage in enumerate(stages) if i == 0 or stages[i - 1] != stage]
    assert order == ["load", "encode", "denoise", "decode", "write"]
    for stage, total in (("load", 1), ("encode", 1), ("denoise", 10), ("decode", 4), ("write", 3)):
        events = [e for e in progress if e.stage == stage]
        assert events[0].step == 0 and all(e.total == total for e in events), stage
        assert [e.step for e in events] == sorted(e.step for e in events), stage
    for stage in ("denoise", "decode", "write"):
        assert [e.step for e in progress if e.stage == stage][-1] == {"denoise": 10, "decode": 4, "write": 3}[stage]
    assert all(e.eta is None for e in progress if e.stage in ("load", "encode") or e.step == 0)
    etas = [e.eta for e in progress if e.stage == "denoise" and e.step > 0]
    assert len(etas) == 10 and all(eta is not None and eta >= 0 for eta in etas)
    assert etas[-1] == 0.0 and etas[0] > etas[-2] >= 0
    for before, after in itertools.pairwise(etas):  # non-increasing, within the jitter of a shared machine
        assert after <= before * 1.5 + 0.05, etas
    elapsed = [e.elapsed for e in progress]
    assert elapsed == sorted(elapsed)


def test_second_job_reuses_the_pipeline(client, tmp_path):
    client.submit(job(tmp_path, "a"))
    first = client.wait_for(lambda e: e.id == "a" and e.type == "done", 120)
    client.submit(job(tmp_path, "b", seed=5))
    second = client.wait_for(lambda e: e.id == "b" and e.type == "done", 120)
    assert first.model_load_seconds > 0
    assert second.model_load_seconds == 0.0


def test_cancel_running_job_then_run_another(client, tmp_path):
    client.submit(job(tmp_path, "long", frames=8, steps=400))
    client.wait_for(lambda e: e.id == "long" and e.type == "progress" and e.stage == "denoise", 120)
    client.cancel("long")
    cancelled = client.wait_for(lambda e: e.id == "long" and e.type in ("cancelled", "done", "error"), 60)
    assert cancelled.type == "cancelled"
    assert json.loads(Path(cancelled.manifest).read_text())["status"] == "cancelled"
    client.submit(job(tmp_path, "after"))
    assert client.wait_for(lambda e: e.id == "after" and e.type in ("done", "error"), 120).type == "done"


def test_queue_of_three_cancel_the_middle(client, tmp_path):
    for name in ("q1", "q2", "q3"):
        client.submit(job(tmp_path, name, steps=20))
    client.cancel("q2")
    ends = {}
    while len(ends) < 3:
        event = client.wait_for(lambda e: e.type in ("done", "error", "cancelled"), 120)
        ends[event.id] = event.type
    assert ends == {"q1": "done", "q2": "cancelled", "q3": "done"}
    assert not (tmp_path / "out" / "q2").exists()


def _bad_lines(tmp_path):
    """(line, expected field or None for line-level errors) — at least 40 kinds of bad input."""
    d = tmp_path / "d"
    d.mkdir()
    good_img = d / "good.png"
    Image.new("RGB", (64, 64)).save(good_img)
    not_image = d / "text.png"
    not_image.write_text("not an image")
    a_file = d / "file"
    a_file.write_text("x")

    def gen(**over):
        return json.dumps({"type": "generate", "job": job(tmp_path, "bad", **over)})

    def ctrl(images, **c):
        return dict(controlnet_model="tiny", control={"type": "depth", "images": images, **c})

    lines = [
        ("not json", None),
        ("{", None),
        ("[1, 2]", None),
        ('"text"', None),
        ("null", None),
        ('{"type": "dance"}', "type"),
        ('{"no_type": 1}', "type"),
        ('{"type": "cancel"}', "id"),
        ('{"type": "generate"}', "job"),
        ('{"type": "generate", "job": 5}', "job"),
        ('{"type": "ping", "id": 7}', "id"),
        (gen(frames=0), "frames"),
        (gen(frames=-3), "frames"),
        (gen(frames=10**9), "frames"),
        (gen(frames="8"), "frames"),
        (gen(frames=True), "frames"),
        (gen(frames=8.0), "frames"),
        (gen(width=65), "width"),
        (gen(height=4096), "height"),
        (gen(width=0), "width"),
        (gen(steps=0), "steps"),
        (gen(steps=10**6), "steps"),
        (gen(guidance=-1), "guidance"),
        (gen(seed=-1), "seed"),
        (gen(lam=-0.1), "lam"),
        (gen(mu=1.5), "mu"),
        (gen(mu=[0.5, -0.1, 0.2]), "mu[1]"),
        (gen(lam=[0.1, 0.2]), "lam"),
        (gen(lam=[0.1] * 2000), "lam"),
        (gen(noise="pink"), "noise"),
        (gen(search="fast"), "search"),
        (gen(scheduler="magic"), "scheduler"),
        (gen(dtype="float8"), "dtype"),
        (gen(device="tpu"), "device"),
        (gen(id="../escape"), "id"),
        (gen(id="a/b"), "id"),
        (gen(id=""), "id"),
        (gen(id="x" * 65), "id"),
        (gen(prompt=""), "prompt"),
        (gen(prompt="p" * 5000), "prompt"),
        (gen(typo_field=1), "typo_field"),
        (gen(control={"type": "depth", "images": [str(good_img)] * 4}), "controlnet_model"),
        (gen(**ctrl([str(good_img)] * 3)), "control.images"),
        (gen(**ctrl([str(good_img)] * 3 + [str(d / "missing.png")])), "control.images[3]"),
        (gen(**ctrl([str(good_img)] * 3 + [str(d)])), "control.images[3]"),
        (gen(**ctrl([str(good_img)] * 4, type="normal")), "control.type"),
        (gen(**ctrl([str(good_img)] * 4, scale=99)), "control.scale"),
        (gen(output_dir=str(a_file)), "output_dir"),
        (gen(output_dir=str(a_file / "sub")), "output_dir"),
        (gen(outputs={"mp4": "yes"}), "outputs.mp4"),
        (gen(chunk=0), "chunk"),
    ]
    # Valid jobs that fail when run: unknown model, unreadable control image (accepted, then an error).
    runtime = [
        (
            json.dumps({"type": "generate", "job": job(tmp_path, "nomodel", model=str(tmp_path / "no-model"))}),
            "model",
            "nomodel",
        ),
        (
            json.dumps(
                {"type": "generate", "job": job(tmp_path, "badimg", **ctrl([str(good_img)] * 3 + [str(not_image)]))}
            ),
            "control.images[3]",
            "badimg",
        ),
    ]
    return lines, runtime


def test_bad_input_is_answered_and_the_worker_survives(client, tmp_path):
    lines, runtime = _bad_lines(tmp_path)
    assert len(lines) + len(runtime) >= 40
    proc = client.process
    for line, _ in lines:
        proc.stdin.write(line + "\n")
    proc.stdin.flush()
    for line, expected_field in lines:
        event = client.wait_for(lambda e: True, 60)
        assert event.type == "error" and event.code == "bad_request", (line[:80], event)
        if expected_field is not None:
            fields = [event.field] + [p["field"] for p in (event.problems or [])]
            assert expected_field in fields, (line[:120], fields)
    for line, expected_field, job_id in runtime:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        event = client.wait_for(lambda e, job_id=job_id: e.id == job_id and e.type in ("error", "done"), 120)
        assert event.type == "error" and event.field == expected_field, event
        assert event.hint
    client.ping("alive")
    assert client.wait_for(lambda e: e.type == "pong", 30).id == "alive"
    client.submit(job(tmp_path, "fine"))
    assert client.wait_for(lambda e: e.id == "fine" and e.type in ("done", "error"), 120).type == "done"


def test_worker_killed_mid_job(client, tmp_path):
    client.submit(job(tmp_path, "victim", frames=48, steps=2, chunk=1))
    client.wait_for(lambda e: e.id == "victim" and e.type == "frame", 300)
    os.kill(client.process.pid, signal.SIGKILL)
    died = client.wait_for(lambda e: e.type == "error", 60)
    assert died.code == "worker_died" and died.id == "victim"
    job_dir = tmp_path / "out" / "victim"
    recovered = recover_job(job_dir)
    assert recovered["status"] == "interrupted"
    assert 1 <= len(recovered["frames"]) <= 48
    for path in recovered["frames"]:  # atomic writes: every listed frame is a whole PNG
        assert Image.open(path).size == (64, 64)
    assert not [p for p in job_dir.iterdir() if p.name.startswith(".")]
    client.restart(timeout=120)
    client.submit(job(tmp_path, "next"))
    assert client.wait_for(lambda e: e.id == "next" and e.type in ("done", "error"), 120).type == "done"


def test_stdout_carries_only_protocol(tmp_path):
    requests = (
        "\n".join(
            [
                json.dumps({"type": "ping", "id": "p"}),
                json.dumps({"type": "generate", "job": job(tmp_path, "pure")}),
            ]
        )
        + "\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "zss_core.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdin.write(requests)
    proc.stdin.flush()
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if '"done"' in line or '"error"' in line:
            break
    proc.stdin.close()  # EOF: the worker must exit cleanly
    assert proc.wait(60) == 0
    lines += proc.stdout.readlines()
    kinds = [protocol.message_from_json(line, expect="event").type for line in lines]
    kinds = [kind for kind in kinds if kind != "heartbeat"]  # beats come at any time
    assert kinds[0] == "ready" and "pong" in kinds and kinds[-1] == "done"


HOSTILE_LINES = [
    b'{"type":"ping","id":"\\ud800"}',  # a lone surrogate echoed back (the repro)
    b'{"type":"cancel","id":"\\udc00"}',
    b'{"type":"\\ud800"}',
    b'{"type":"ping","id":"\xff\xfe"}',  # not UTF-8
    b'{"type":"ping","id":' + b"[" * 990 + b"]" * 990 + b"}",  # nested ~990 levels
]


@pytest.mark.parametrize("ending", ["shutdown", "eof"])
def test_no_line_leaves_the_worker_deaf(ending):
    """Issue 12, defect 1: each hostile line gets a bad_request, the next line is served, and shutdown and
    end of input still end the worker (before, the first of them silenced it for good)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "zss_core.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    requests = [*HOSTILE_LINES, b'{"type":"ping","id":"after"}']
    requests += [b'{"type":"shutdown"}'] if ending == "shutdown" else []
    proc.stdin.write(b"".join(line + b"\n" for line in requests))
    proc.stdin.flush()
    if ending == "eof":
        proc.stdin.close()
    try:
        assert proc.wait(120) == 0
    finally:
        proc.kill()
    events = [protocol.message_from_json(line, expect="event") for line in proc.stdout.read().splitlines()]
    answers = [(e.type, getattr(e, "code", None), e.id) for e in events if e.type not in ("ready", "heartbeat")]
    assert answers == [("error", "bad_request", None)] * len(HOSTILE_LINES) + [("pong", None, "after")]


def test_download_of_an_unknown_model_offline_is_an_error_and_the_worker_lives(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    client = WorkerClient(sys.executable, env=env)
    client.start(timeout=120)
    try:
        client.download("nobody/no-such-model-zss", "dl1")
        events = events_until_end(client, "dl1")
        assert [e.type for e in events][:2] == ["accepted", "progress"] and events[1].stage == "download"
        assert events[-1].type == "error" and events[-1].code == "download_failed"
        assert "online access" in events[-1].hint and events[-1].field == "model"
        client.ping("after")
        assert client.wait_for(lambda e: e.type == "pong", 30).id == "after"
    finally:
        client.stop()
