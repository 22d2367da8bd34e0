"""`zss serve` as a real subprocess on loopback with TLS and tokens: authentication, isolation between
tokens, hostile ids and bodies, limits, restart, and the same frames as the local worker."""

from __future__ import annotations

import base64
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_server_harness import ROOT, Server, write_depth

from zss_core.client import LocalClient

pytestmark = pytest.mark.slow

LIMITS = ["--max-frames", "16", "--max-steps", "20", "--max-pixels", str(128 * 128), "--max-queued", "2"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("serve"), args=LIMITS).start()
    yield srv
    srv.stop()


def small_job(**kw):
    return {
        "prompt": "a brick wall",
        "model": "tiny",
        "frames": 2,
        "width": 64,
        "height": 64,
        "steps": 2,
        "seed": 3,
        **kw,
    }


def depth_job(folder, frames=2, **kw):
    images = [base64.b64encode(Path(p).read_bytes()).decode() for p in write_depth(folder, frames)]
    return small_job(frames=frames, control={"type": "depth", "images": images, "scale": 1.0}, **kw)


@pytest.fixture(scope="module")
def finished(server, tmp_path_factory):
    """One depth job of token 0, run to the end: (id, events, depth folder)."""
    folder = tmp_path_factory.mktemp("depth")
    status, answer = server.call("POST", "/v1/jobs", token=server.tokens[0], body=depth_job(folder))
    assert status == 201, answer
    return answer["id"], server.wait_end(answer["id"], server.tokens[0]), folder


def calls(job_id):
    return [
        ("GET", "/v1/models"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs"),
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/events?after=-1"),
        ("GET", f"/v1/jobs/{job_id}/frames/0"),
        ("GET", f"/v1/jobs/{job_id}/video"),
        ("GET", f"/v1/jobs/{job_id}/manifest"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
        ("DELETE", f"/v1/jobs/{job_id}"),
    ]


def test_health_needs_no_token_and_reveals_nothing_else(server):
    status, body = server.call("GET", "/v1/health")
    assert status == 200 and set(body) == {"status", "version", "protocol"} and body["status"] == "ok"


def test_every_call_needs_the_right_token(server, finished):
    job_id = finished[0]
    for method, path in calls(job_id):
        body = small_job() if path == "/v1/jobs" and method == "POST" else None
        for token in (None, "wrong-" + server.tokens[0], ""):
            status, answer = server.call(method, path, token=token, body=body)
            assert status == 401, (method, path, token, answer)
            assert answer["error"]["code"] == "unauthorized"
    for method, path in calls(job_id)[:-2]:  # cancel and delete come last, in their own test
        if method == "POST":
            continue
        status, _ = server.call(method, path, token=server.tokens[0])
        assert status == 200, (method, path)


def test_the_job_runs_and_its_files_come_back(server, finished):
    job_id, events, _ = finished
    kinds = [e["type"] for e in events]
    assert kinds[0] == "accepted" and kinds[-1] == "done", kinds
    assert [e["index"] for e in events if e["type"] == "frame"] == [0, 1]
    assert all(e["id"] == job_id for e in events)
    status, state = server.call("GET", f"/v1/jobs/{job_id}", token=server.tokens[0])
    assert status == 200 and state["state"] == "done" and state["frames_written"] == 2
    assert len(state["events"]) == len(events)
    status, png = server.call("GET", f"/v1/jobs/{job_id}/frames/1", token=server.tokens[0])
    assert status == 200 and png.startswith(b"\x89PNG")
    status, mp4 = server.call("GET", f"/v1/jobs/{job_id}/video", token=server.tokens[0])
    assert status == 200 and mp4[4:8] == b"ftyp"
    status, manifest = server.call("GET", f"/v1/jobs/{job_id}/manifest", token=server.tokens[0])
    assert status == 200 and manifest["status"] == "done" and manifest["job"]["model"] == "tiny"
    text = repr(manifest) + repr(events)
    assert server.data not in text and server.folder not in text  # no server path reaches a client
    status, listing = server.call("GET", "/v1/jobs", token=server.tokens[0])
    assert job_id in [j["id"] for j in listing["jobs"]]


def test_another_tokens_job_is_not_found(server, finished):
    job_id = finished[0]
    other = server.tokens[1]
    for method, path in calls(job_id)[3:]:
        status, answer = server.call(method, path, token=other)
        assert status == 404 and answer["error"]["code"] == "unknown_job", (method, path)
    status, listing = server.call("GET", "/v1/jobs", token=other)
    assert job_id not in [j["id"] for j in listing["jobs"]]
    status, _ = server.call("GET", f"/v1/jobs/{job_id}", token=server.tokens[0])
    assert status == 200  # still there for its owner


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/..",
        "/v1/jobs/../v1/models",
        "/v1/jobs/..%2F..%2Fetc%2Fpasswd",
        "/v1/jobs/%2Fetc%2Fpasswd",
        "/v1/jobs/-1",
        "/v1/jobs/{id}/frames/-1",
        "/v1/jobs/{id}/frames/..",
        "/v1/jobs/{id}/frames/..%2F..%2Fstate.json",
        "/v1/jobs/{id}/frames/%2E%2E",
        "/v1/jobs/{id}/frames/99",
        "/v1/jobs/{id}/frames/1e3",
        "/v1/jobs/{id}/..%2F..%2Fstate.json/manifest",
    ],
)
def test_hostile_ids_and_frame_indices(server, finished, path):
    status, answer = server.call("GET", path.replace("{id}", finished[0]), token=server.tokens[0])
    assert status in (404, 422), (status, answer)
    assert isinstance(answer, dict) and answer["error"]["code"] in ("unknown_job", "bad_request")


def test_a_20_mb_body_is_refused(server):
    big = b'{"prompt": "' + b"a" * (20 * 1024 * 1024) + b'"}'
    status, answer = server.call("POST", "/v1/jobs", token=server.tokens[0], raw=big)
    assert status == 413 and answer["error"]["code"] == "body_too_large"


def test_a_chunked_body_over_the_limit_is_refused(server):
    conn = server.connection()
    conn.putrequest("POST", "/v1/jobs")
    conn.putheader("Authorization", f"Bearer {server.tokens[0]}")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b"a" * (1024 * 1024)
    try:
        for _ in range(20):
            conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may close the connection as soon as it has refused
    answer = conn.getresponse()
    assert answer.status == 413
    conn.close()


@pytest.mark.parametrize(
    "change, status, code, field",
    [
        ({"frames": 17}, 422, "bad_request", "frames"),
        ({"steps": 21}, 422, "bad_request", "steps"),
        ({"width": 512}, 422, "bad_request", "width"),
        ({"height": 512}, 422, "bad_request", "height"),
        ({"model": "nope"}, 422, "model_not_found", "model"),
        ({"model": "/etc"}, 422, "model_not_found", "model"),
        ({"id": "mine"}, 422, "bad_request", "id"),
        ({"output_dir": "/tmp"}, 422, "bad_request", "output_dir"),
        ({"controlnet_model": "/x"}, 422, "bad_request", "controlnet_model"),
        ({"guidance": 99}, 422, "bad_request", "guidance"),
        ({"prompt": ""}, 422, "bad_request", "prompt"),
        (
            {"control": {"type": "depth", "images": ["bm90IGEgcG5n", "bm90IGEgcG5n"]}},
            422,
            "control_image_invalid",
            "control.images[0]",
        ),
        ({"control": {"type": "depth", "images": ["%%%", "%%%"]}}, 422, "control_image_invalid", "control.images[0]"),
        ({"init": ["bm90IGEgcG5n", "bm90IGEgcG5n"], "strength": 0.5}, 422, "init_image_invalid", "init[0]"),
        ({"init": "frames/", "strength": 0.5}, 422, "bad_request", "init"),
        ({"model": "plain", "control": {"type": "depth", "images": []}}, 422, "bad_request", "control"),
        ({"init": ["/etc/passwd", "/etc/passwd"], "strength": 0.5}, 422, "init_image_invalid", "init[0]"),
    ],
)
def test_limits_and_bad_jobs_name_the_field(server, change, status, code, field):
    got, answer = server.call("POST", "/v1/jobs", token=server.tokens[0], body=small_job(**change))
    assert got == status, answer
    assert answer["error"]["code"] == code and answer["error"]["field"] == field, answer


def test_a_restyle_sends_its_source_frames_inline(server, tmp_path):
    """Issue 17: restyle source frames travel as base64 PNG like depth maps; a server path is never read."""
    frames = [base64.b64encode(Path(p).read_bytes()).decode() for p in write_depth(tmp_path, 2)]
    token = server.tokens[0]
    status, answer = server.call("POST", "/v1/jobs", token=token, body=small_job(init=frames, strength=0.5))
    assert status == 201, answer
    events = server.wait_end(answer["id"], token)
    assert events[-1]["type"] == "done", events[-1]
    status, manifest = server.call("GET", f"/v1/jobs/{answer['id']}/manifest", token=token)
    assert status == 200 and manifest["job"]["strength"] == 0.5
    assert manifest["job"]["init"] == ["init/init_0001.png", "init/init_0002.png"]  # the job folder's copies


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_malformed_json(server, raw):
    status, answer = server.call("POST", "/v1/jobs", token=server.tokens[0], raw=raw)
    assert status in (400, 422) and answer["error"]["code"] == "bad_request"


def test_too_many_queued_jobs_per_token(server):
    token = server.tokens[1]
    slow = small_job(frames=16, steps=20)
    ids = []
    for _ in range(2):
        status, answer = server.call("POST", "/v1/jobs", token=token, body=slow)
        assert status == 201, answer
        ids.append(answer["id"])
    status, answer = server.call("POST", "/v1/jobs", token=token, body=slow)
    assert status == 429 and answer["error"]["code"] == "too_many_jobs"
    for job_id in reversed(ids):
        status, _ = server.call("POST", f"/v1/jobs/{job_id}/cancel", token=token)
        assert status == 202
    for job_id in ids:
        assert server.wait_end(job_id, token)[-1]["type"] == "cancelled"
    status, answer = server.call("GET", f"/v1/jobs/{ids[0]}", token=token)
    assert answer["state"] == "cancelled"
    status, _ = server.call("DELETE", f"/v1/jobs/{ids[0]}", token=token)
    assert status == 204
    status, _ = server.call("GET", f"/v1/jobs/{ids[0]}", token=token)
    assert status == 404


def test_tls_client_trusting_only_the_test_certificate(server):
    with urllib.request.urlopen(server.url + "/v1/health", context=server.ssl_context(), timeout=10) as answer:
        assert answer.status == 200
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(server.url + "/v1/health", context=ssl.create_default_context(), timeout=10)
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError)


def test_refuses_a_public_address_without_tokens(tmp_path):
    for host in ("0.0.0.0", "192.168.1.10", "::"):
        out = subprocess.run(
            [sys.executable, "-m", "zss_core.cli", "serve", "--host", host, "--data", str(tmp_path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert out.returncode == 2 and "--token-file" in out.stderr, out.stderr


def test_same_frames_as_the_local_worker(server, finished, tmp_path):
    """The server's job against the same job through LocalClient: bit-identical PNGs."""
    job_id, _, folder = finished
    local = LocalClient(sys.executable, env=dict(os.environ, PYTHONPATH=ROOT))
    local.start(timeout=120)
    try:
        depth = sorted(os.path.join(folder, n) for n in os.listdir(folder))
        job = small_job(id="local", output_dir=str(tmp_path), controlnet_model="tiny")
        job["control"] = {"type": "depth", "images": depth, "scale": 1.0}
        local.submit(job)
        end = local.wait_for(lambda e: e.type in ("done", "error"), timeout=180)
    finally:
        local.stop()
    assert end.type == "done", end
    for index, path in enumerate(end.frames):
        status, png = server.call("GET", f"/v1/jobs/{job_id}/frames/{index}", token=server.tokens[0])
        assert status == 200
        with open(path, "rb") as f:
            assert f.read() == png, f"frame {index} differs"


def test_restart_marks_an_unfinished_job_interrupted_with_its_frames(tmp_path):
    srv = Server(tmp_path / "restart", tokens=1, tls=False).start()
    token = srv.tokens[0]
    try:
        status, answer = srv.call("POST", "/v1/jobs", token=token, body=small_job(frames=16, steps=2))
        assert status == 201
        job_id, events = answer["id"], []
        while not any(e["type"] == "frame" for e in events):
            status, new = srv.call("GET", f"/v1/jobs/{job_id}/events?after={len(events) - 1}&wait=5", token=token)
            assert events or new, srv.log()
            events += new
            assert events[-1]["type"] not in ("done", "error", "cancelled"), events[-1]
        srv.stop(kill=True)  # a crash: no clean shutdown
        srv.start(wait_worker=False)
        status, state = srv.call("GET", f"/v1/jobs/{job_id}", token=token)
        assert status == 200 and state["state"] == "interrupted", state
        frames = [e for e in state["events"] if e["type"] == "frame"]
        assert state["frames_written"] == len(frames) >= 1
        assert state["events"][-1]["type"] == "error" and state["events"][-1]["code"] == "worker_died"
        for e in frames:
            status, png = srv.call("GET", f"/v1/jobs/{job_id}/frames/{e['index']}", token=token)
            assert status == 200 and png.startswith(b"\x89PNG")
        assert srv.call("GET", f"/v1/jobs/{job_id}/events?after={len(state['events']) - 1}&wait=5", token=token) == (
            200,
            [],
        )  # an ended job's long poll answers at once
    finally:
        srv.stop()


def test_a_worker_that_dies_is_restarted_and_its_job_fails_with_its_frames(server):
    token = server.tokens[0]
    _, listing = server.call("GET", "/v1/models", token=token)
    pid = listing["workers"][0]["pid"]
    status, answer = server.call("POST", "/v1/jobs", token=token, body=small_job(frames=16, steps=2))
    assert status == 201
    job_id, events = answer["id"], []
    while not any(e["type"] == "frame" for e in events):
        _, new = server.call("GET", f"/v1/jobs/{job_id}/events?after={len(events) - 1}&wait=5", token=token)
        events += new
        assert events[-1]["type"] not in ("done", "error", "cancelled"), events[-1]
    os.kill(pid, signal.SIGKILL)
    events = server.wait_end(job_id, token, timeout=60)
    assert events[-1]["type"] == "error" and events[-1]["code"] == "worker_died", events[-1]
    _, state = server.call("GET", f"/v1/jobs/{job_id}", token=token)
    assert state["state"] == "failed" and state["frames_written"] >= 1
    status, png = server.call("GET", f"/v1/jobs/{job_id}/frames/0", token=token)
    assert status == 200 and png.startswith(b"\x89PNG")
    status, answer = server.call("POST", "/v1/jobs", token=token, body=small_job())
    assert status == 201 and server.wait_end(answer["id"], token)[-1]["type"] == "done"  # a new worker runs it
    _, listing = server.call("GET", "/v1/models", token=token)
    assert listing["workers"][0]["pid"] not in (None, pid)
