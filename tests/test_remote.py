"""RemoteClient against a real `zss serve` (TLS, token) on loopback: the add-on's job with depth maps,
frames downloaded into the local folder, the same events as a local run, a server killed mid-job,
and polls that never block."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import pytest
from test_server_harness import ROOT, Server, write_depth

from zss_core.client import LocalClient, WorkerStartError
from zss_core.remote import RemoteClient

pytestmark = pytest.mark.slow

POLL_BUDGET_S = 0.005  # tests/test_client.py's budget for one panel poll
POLL_WORST_S = 0.05


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("remote-serve"), tokens=1).start()
    yield srv
    srv.stop()


def addon_job(job_id, out, depth, **kw):
    """The job as the add-on builds it for a generator: local id, local folder, local depth PNGs."""
    return {
        "id": job_id,
        "prompt": "a brick wall",
        "model": "tiny",
        "output_dir": str(out),
        "frames": len(depth),
        "width": 64,
        "height": 64,
        "steps": 2,
        "seed": 5,
        "controlnet_model": "tiny",
        "control": {"type": "depth", "images": depth, "scale": 1.0},
        **kw,
    }


def run_to_end(client, job_id, timeout=180.0):
    """Poll like a Blender timer until the job ends; returns (events, poll durations)."""
    events, polls = [], []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = time.perf_counter()
        new = client.poll_events()
        polls.append(time.perf_counter() - t)
        events += [e for e in new if e.id == job_id]
        if events and events[-1].type in ("done", "error", "cancelled"):
            return events, polls
        time.sleep(0.005)
    raise AssertionError(f"no end within {timeout} s: {[e.type for e in events][-5:]}")


def test_wait_ready_lists_the_servers_models(server):
    client = RemoteClient(server.url, server.tokens[0], cafile=server.cert)
    ready = client.wait_ready(timeout=30)
    assert ready.protocol == 1 and client.describe() == f"server: {server.url}"
    assert [m["name"] for m in client.models] == ["tiny", "plain"]
    assert client.is_alive() and client.connection_state() == "ok"


def test_a_wrong_token_or_certificate_says_so(server, monkeypatch):
    with pytest.raises(WorkerStartError, match="token"):
        RemoteClient(server.url, "wrong", cafile=server.cert).wait_ready(timeout=10)
    monkeypatch.setenv("ZSS_TOKEN", server.tokens[0])
    assert RemoteClient(server.url, cafile=server.cert).wait_ready(timeout=10).protocol == 1
    with pytest.raises(WorkerStartError, match="certificate"):
        RemoteClient(server.url, server.tokens[0]).wait_ready(timeout=2)  # the system CAs do not know it


def test_job_with_depth_same_events_and_frames_as_local(server, tmp_path):
    depth = write_depth(tmp_path / "depth", 3)
    remote = RemoteClient(server.url, server.tokens[0], cafile=server.cert, poll_wait=5)
    remote.wait_ready(timeout=30)
    assert remote.submit(addon_job("shot-1", tmp_path / "remote", depth)) == "shot-1"
    assert remote.pending == ["shot-1"]
    events, polls = run_to_end(remote, "shot-1")
    assert remote.pending == []
    done = events[-1]
    assert done.type == "done", events[-1]
    folder = tmp_path / "remote" / "shot-1"
    assert done.frames == [str(folder / f"frame_{i:04d}.png") for i in (1, 2, 3)]
    assert all(os.path.isfile(p) for p in done.frames)
    assert done.video == str(folder / "clip.mp4") and os.path.getsize(done.video) > 0
    manifest = json.loads((folder / "job.json").read_text())
    assert manifest["job"]["id"] == "shot-1" and manifest["job"]["control"]["images"] == depth
    assert [e.path for e in events if e.type == "frame"] == done.frames

    local = LocalClient(sys.executable, env=dict(os.environ, PYTHONPATH=ROOT))
    local.start(timeout=120)
    try:
        local.submit(addon_job("shot-1", tmp_path / "local", depth))
        local.wait_for(lambda e: e.type in ("done", "error"), timeout=180)
        local_events = [e for e in local.history if e.id == "shot-1"]
    finally:
        local.stop()
    assert [e.type for e in events] == [e.type for e in local_events]
    assert [(e.stage, e.step, e.total) for e in events if e.type == "progress"] == [
        (e.stage, e.step, e.total) for e in local_events if e.type == "progress"
    ]
    for mine, theirs in zip(done.frames, local_events[-1].frames):
        with open(mine, "rb") as a, open(theirs, "rb") as b:
            assert a.read() == b.read()
    # Polls only drain a queue: downloads and long polls run in the job's thread.
    assert statistics.median(polls) < POLL_BUDGET_S and max(polls) < POLL_WORST_S, (
        statistics.median(polls),
        max(polls),
    )
    remote.close()


def test_a_refused_job_is_an_error_event(server, tmp_path):
    remote = RemoteClient(server.url, server.tokens[0], cafile=server.cert)
    remote.submit(addon_job("bad", tmp_path, write_depth(tmp_path / "d", 2), model="nope"))
    events, _ = run_to_end(remote, "bad", timeout=30)
    assert events[-1].type == "error" and events[-1].code == "model_not_found" and events[-1].field == "model"


def test_cancel(server, tmp_path):
    remote = RemoteClient(server.url, server.tokens[0], cafile=server.cert)
    remote.submit(addon_job("long", tmp_path, write_depth(tmp_path / "d", 16), steps=20))
    remote.cancel("long")
    events, _ = run_to_end(remote, "long", timeout=120)
    assert events[-1].type == "cancelled"


def test_server_killed_mid_job_and_restarted(tmp_path):
    srv = Server(tmp_path / "srv", tokens=1, tls=False).start()
    remote = RemoteClient(srv.url, srv.tokens[0], poll_wait=2, max_backoff=1)
    try:
        remote.submit(addon_job("crash", tmp_path / "out", write_depth(tmp_path / "d", 16)))
        events = []
        deadline = time.monotonic() + 120
        while not any(e.type == "frame" for e in events):
            assert time.monotonic() < deadline, srv.log()
            events += remote.poll_events()
            time.sleep(0.01)
        srv.stop(kill=True)
        deadline = time.monotonic() + 30
        while not remote.connection_state().startswith("retrying"):
            assert time.monotonic() < deadline, "the client did not notice the server was gone"
            events += remote.poll_events()
            time.sleep(0.05)
        assert not remote.is_alive()
        srv.start(wait_worker=False)
        more, _ = run_to_end(remote, "crash", timeout=60)
        events += more
    finally:
        remote.close()
        srv.stop()
    end = events[-1]
    assert end.type == "error" and end.code == "worker_died" and "frame" in end.message, end
    frames = [e.path for e in events if e.type == "frame"]
    assert frames and all(os.path.isfile(p) for p in frames)
    assert remote.connection_state() == "ok"


def test_plain_http_only_on_loopback():
    for url in ("http://127.0.0.1:7860", "http://[::1]:7860", "http://localhost:7860", "https://gpu-box:7860"):
        assert RemoteClient(url, "t").describe() == f"server: {url}"
    with pytest.raises(ValueError, match="https://"):
        RemoteClient("http://10.0.0.5:7860", "t")
    assert RemoteClient("http://10.0.0.5:7860", "t", allow_http=True).url == "http://10.0.0.5:7860"
    for bad in ("gpu-box:7860", "ftp://gpu-box", "https://"):
        with pytest.raises(ValueError, match="https://host:port"):
            RemoteClient(bad, "t")


def test_a_restyle_job_sends_its_source_frames(server, tmp_path):
    """Issue 17: the add-on's local source frames reach the server inline (it never reads client paths)."""
    depth = write_depth(tmp_path / "depth", 2)
    source = write_depth(tmp_path / "source", 2)
    remote = RemoteClient(server.url, server.tokens[0], cafile=server.cert, poll_wait=5)
    remote.wait_ready(timeout=30)
    remote.submit(addon_job("restyle-1", tmp_path / "remote", depth, init=source, strength=0.5))
    events, _ = run_to_end(remote, "restyle-1")
    assert events[-1].type == "done", events[-1]
    assert [e.total for e in events if e.type == "progress" and e.stage == "denoise"][-1] == 1  # int(2 × 0.5)
    manifest = json.loads((tmp_path / "remote" / "restyle-1" / "job.json").read_text())
    assert manifest["job"]["strength"] == 0.5 and len(manifest["job"]["init"]) == 2


def test_an_unreadable_source_frame_is_named_before_anything_is_sent(server, tmp_path):
    depth = write_depth(tmp_path / "depth", 2)
    source = [depth[0], str(tmp_path / "gone.png")]
    remote = RemoteClient(server.url, server.tokens[0], cafile=server.cert, poll_wait=5)
    remote.wait_ready(timeout=30)
    remote.submit(addon_job("restyle-2", tmp_path / "remote", depth, init=source, strength=0.5))
    events, _ = run_to_end(remote, "restyle-2", timeout=30)
    error = events[-1]
    assert error.type == "error" and error.field == "init" and "source frame" in error.message, error
