"""The Ray backend on a real local Ray cluster (started in-process once for the module, shut down after).

`ray.init` here, `ray.shutdown()` after — never `ray stop`, which would stop every Ray process on the
machine. Two CPU actors run the tiny model; jobs are small (2–6 frames, 64×64, 2 steps).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")

from tests.test_server_harness import Server  # noqa: E402
from zss_core.client import LocalClient  # noqa: E402
from zss_core.server.config import config_from_options  # noqa: E402
from zss_core.server.ray_backend import RayBackend  # noqa: E402
from zss_core.server.store import JobStore  # noqa: E402

pytestmark = pytest.mark.slow
JOB_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def cluster():
    # 3 logical CPUs: the module's 2 actors, and 1 for the actor of the `zss serve` that joins the cluster.
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def backend(cluster, tmp_path_factory):
    config = config_from_options(data=str(tmp_path_factory.mktemp("ray-data")), backend="ray", workers=2, gpus=())
    store = JobStore(config.data)
    work = RayBackend(config, store, torch_threads=1, heartbeat_s=0.5)
    work.start()
    wait_for(lambda: len(work.workers()) == 2 and all(w["ready"] for w in work.workers()), "both actors ready")
    yield work
    work.close()


def wait_for(condition, what: str, timeout: float = JOB_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def job_body(seed: int = 0, frames: int = 2, steps: int = 2) -> dict:
    return {"prompt": "a brick wall", "model": "tiny", "frames": frames, "width": 64, "height": 64, "steps": steps,
            "seed": seed, "device": "cpu", "outputs": {"frames": True, "mp4": True, "contact_sheet": True}}  # fmt: skip


submitted = iter(range(10_000))


def submit(work: RayBackend, body: dict) -> str:
    """What the server's intake does: a store record, committed, then the protocol job to the backend."""
    record = work.store.create(f"ray-{next(submitted):04d}-{body['seed']}", "tester", "tiny")
    assert work.store.commit(record)
    work.submit(record.id, {**body, "id": record.id, "output_dir": record.output_dir})
    return record.id


def record(work: RayBackend, job_id: str):
    found = work.store.get(job_id, "tester")
    assert found is not None
    return found


def wait_end(work: RayBackend, job_id: str):
    wait_for(lambda: not record(work, job_id).active, f"job {job_id} to end")
    return record(work, job_id)


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_six_jobs_on_two_actors_all_done(backend):
    ids = [submit(backend, job_body(seed=i)) for i in range(6)]
    wait_for(lambda: any(w["busy"] for w in backend.workers()), "an actor to take a job")
    busy_seen = set()
    while any(record(backend, i).active for i in ids):
        busy_seen.update(k for k, w in enumerate(backend.workers()) if w["busy"])
        time.sleep(0.02)
    for job_id in ids:
        job = record(backend, job_id)
        kinds = [e["type"] for e in job.events]
        assert job.state == "done", job.events[-1]
        assert kinds[0] == "accepted" and kinds[-1] == "done" and kinds.count("frame") == 2
        assert sorted(job.frames) == [0, 1]
        for relative in [*job.frames.values(), "clip.mp4", "contact_sheet.png", "job.json"]:
            assert job.file(relative) is not None, f"{job_id}: {relative} missing"
    assert busy_seen == {0, 1}, "both actors should have run jobs"


def test_killed_actor_fails_its_job_with_its_frames_and_the_next_job_runs(backend):
    job_id = submit(backend, job_body(seed=7, frames=6, steps=2))
    wait_for(lambda: record(backend, job_id).frames or not record(backend, job_id).active, "the first frame")
    slot = next(s for s in backend.pool.slots if s.job == job_id)
    assert slot.ready is not None
    old_pid = slot.ready["pid"]
    os.kill(old_pid, signal.SIGKILL)
    job = wait_end(backend, job_id)
    last = job.events[-1]
    assert job.state == "failed" and last["code"] == "worker_died", last
    count = len(job.frames)
    assert count >= 1 and f"the {count} frame" in last["message"]
    for relative in job.frames.values():
        assert job.file(relative) is not None
    # Ray restarts the actor; with both ready again, two jobs run (one on the restarted actor).
    wait_for(lambda: all(w["ready"] for w in backend.workers()), "the restarted actor")
    assert old_pid not in [w["pid"] for w in backend.workers()]
    after = [submit(backend, job_body(seed=s)) for s in (8, 9)]
    assert [wait_end(backend, i).state for i in after] == ["done", "done"]


def test_cancel_running_and_queued(backend):
    long = [submit(backend, job_body(seed=s, frames=4, steps=40)) for s in (10, 11)]
    queued = submit(backend, job_body(seed=12))
    denoising = lambda: all(any(e.get("stage") == "denoise" for e in record(backend, i).events) for i in long)  # noqa: E731
    wait_for(denoising, "both actors denoising")  # both busy: the third job waits in the server's queue
    assert record(backend, queued).state == "queued"
    backend.cancel(queued)
    for job_id in long:
        backend.cancel(job_id)
    assert [wait_end(backend, i).state for i in (*long, queued)] == ["cancelled"] * 3
    assert record(backend, queued).events[-1]["frames"] == []


def test_frames_identical_to_the_local_worker_and_sent_as_bytes(backend, tmp_path):
    body = job_body(seed=3)
    shared = wait_end(backend, submit(backend, body))
    backend.pool.ship = True  # as for an actor on another node: the files come back as bytes
    try:
        shipped = wait_end(backend, submit(backend, body))
    finally:
        backend.pool.ship = None
    # One torch thread like the actors (torch_threads=1): on a CPU, sums split over other thread counts
    # may round a pixel differently.
    with LocalClient(sys.executable, env={**os.environ, "OMP_NUM_THREADS": "1"}) as local:
        local.submit({**body, "id": "local", "output_dir": str(tmp_path)})
        done = local.wait_for(lambda e: e.type in ("done", "error"), timeout=JOB_TIMEOUT_S)
    assert done.type == "done", done
    assert shipped.state == shared.state == "done"
    for index in (0, 1):
        expected = pixels(done.frames[index])
        for job in (shared, shipped):
            path = job.file(job.frames[index])
            assert path is not None
            np.testing.assert_array_equal(pixels(path), expected)
    manifest = shipped.file("job.json")
    assert manifest is not None
    with open(manifest, encoding="utf-8") as f:
        text = f.read()
    assert json.loads(text)["job"]["output_dir"] == shipped.output_dir, "job.json must name the server's paths"
    assert "zss-ray-" not in text, "no path of the actor's scratch folder may leak into job.json"


@pytest.mark.parametrize("own_cluster", [False, True], ids=["joins-running-cluster", "starts-its-own"])
def test_zss_serve_backend_ray(cluster, tmp_path, own_cluster):
    """The server through HTTPS as the add-on uses it: joining the module's cluster (`--ray-address`),
    or starting a local one of its own (none given), which it stops at exit."""
    address = [] if own_cluster else ["--ray-address", cluster]
    server = Server(tmp_path, args=["--backend", "ray", *address]).start()
    token = server.tokens[0]
    try:
        status, listing = server.call("GET", "/v1/models", token=token)
        assert status == 200 and len(listing["workers"]) == 1 and listing["workers"][0]["device"] == "cpu"
        status, answer = server.call("POST", "/v1/jobs", token=token, body=job_body(seed=5))
        assert status == 201, answer
        events = server.wait_end(answer["id"], token)
        assert events[-1]["type"] == "done", events[-1]
        status, png = server.call("GET", f"/v1/jobs/{answer['id']}/frames/1", token=token)
        assert status == 200 and png.startswith(b"\x89PNG")
    finally:
        server.stop()
    log = server.log()
    assert "Ray actor 0 ready" in log
    assert ("Started a local Ray instance" in log) == own_cluster
    assert "Application shutdown complete" in log, "SIGTERM must reach the server's graceful shutdown:\n" + log


def test_frozen_actor_is_killed_and_its_job_fails(backend):
    """Last in the module: the restarted actor is cold (it loads the model on its next job), which
    would reorder the jobs of a later test that expects both actors to start at once."""
    job_id = submit(backend, job_body(seed=13, frames=4, steps=40))
    wait_for(lambda: any(e.get("stage") == "denoise" for e in record(backend, job_id).events), "denoising")
    slot = next(s for s in backend.pool.slots if s.job == job_id)
    assert slot.ready is not None
    before, backend.pool.stall_timeout = backend.pool.stall_timeout, 3.0  # it beats every 0.5 s; SIGSTOP silences it
    try:
        os.kill(slot.ready["pid"], signal.SIGSTOP)
        job = wait_end(backend, job_id)
    finally:
        backend.pool.stall_timeout = before
    last = job.events[-1]
    assert job.state == "failed" and last["code"] == "worker_died" and "silent for 3 s" in last["message"], last
    wait_for(lambda: all(w["ready"] for w in backend.workers()), "the restarted actor")
    assert wait_end(backend, submit(backend, job_body(seed=14))).state == "done"
