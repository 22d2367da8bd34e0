"""The Ray backend across nodes: a real two-node Ray cluster on this machine (`ray.cluster_utils.Cluster`:
a head without CPUs for the server, a worker node for the actor; shut down after, never `ray stop`).

The actor is on another node than the server, so the files come back as bytes; then the node is
lost mid-job: the job fails with the frames that arrived, and once a node joins again the restarted
actor runs the next job.
"""

from __future__ import annotations

import time

import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from tests.test_ray_backend import job_body, record, submit, wait_end, wait_for  # noqa: E402
from zss_core.server.config import config_from_options  # noqa: E402
from zss_core.server.ray_backend import RayBackend  # noqa: E402
from zss_core.server.store import JobStore  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    node = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster, node
    ray.shutdown()
    cluster.shutdown()


def test_files_come_back_from_another_node_and_a_lost_node_fails_its_job(two_nodes, tmp_path):
    cluster, node = two_nodes
    config = config_from_options(data=str(tmp_path / "data"), backend="ray", workers=1, gpus=())
    work = RayBackend(config, JobStore(config.data), torch_threads=1)
    work.start()
    try:
        wait_for(lambda: all(w["ready"] for w in work.workers()), "the actor on the worker node")
        assert work.workers()[0]["node"] != ray.get_runtime_context().get_node_id()

        job = wait_end(work, submit(work, job_body(seed=1)))
        assert job.state == "done", job.events[-1]
        for relative in [*job.frames.values(), "clip.mp4", "contact_sheet.png", "job.json"]:
            assert job.file(relative) is not None, f"{relative} did not come back from the worker node"

        lost = submit(work, job_body(seed=2, frames=6))
        wait_for(lambda: record(work, lost).frames or not record(work, lost).active, "the first frame")
        cluster.remove_node(node)
        failed = wait_end(work, lost)
        last = failed.events[-1]
        assert failed.state == "failed" and last["code"] == "worker_died", last
        count = len(failed.frames)
        assert count >= 1 and f"the {count} frame" in last["message"]
        assert all(failed.file(p) is not None for p in failed.frames.values())

        cluster.add_node(num_cpus=1)  # Ray restarts the actor on it
        started = time.monotonic()
        after = wait_end(work, submit(work, job_body(seed=3)))
        assert after.state == "done", (after.events[-1], time.monotonic() - started)
    finally:
        work.close()
