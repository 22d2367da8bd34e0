"""GPU-memory handling without a GPU: automatic chunk size, out-of-memory retry, worker survival."""

import io
import json
import queue
import threading

import pytest
import torch

from zss_core import protocol
from zss_core.protocol import Job
from zss_core.runner import JobError, auto_chunk, run_job
from zss_core.worker import EventWriter, Worker


@pytest.mark.parametrize(
    "free, per_frame, frames",
    [
        (24 * 2**30, 700 * 2**20, 64),
        (8 * 2**30, 3 * 2**30, 16),
        (2**30, 2**31, 8),
        (10**12, 10**6, 12),
    ],
)
def test_auto_chunk_fits_the_free_memory(free, per_frame, frames):
    chunk = auto_chunk(free, per_frame, frames)
    assert 1 <= chunk <= frames
    assert chunk == 1 or chunk * per_frame <= 0.8 * free
    assert chunk == frames or (chunk + 1) * per_frame > 0.8 * free  # the largest that fits


def test_auto_chunk_without_a_measurement_takes_the_whole_clip():
    assert auto_chunk(None, None, 16) is None
    assert auto_chunk(10**9, None, 16) is None


class FakeOOM:
    """Raise CUDA's out-of-memory error when the UNet gets more than `limit` frames (both CFG halves)."""

    def __init__(self, unet, limit):
        self.limit, self.calls = limit, []
        self.handle = unet.register_forward_pre_hook(self)

    def __call__(self, module, args):
        frames = args[0].shape[0] // 2
        self.calls.append(frames)
        if frames > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {frames} frames")


@pytest.fixture
def oom_pipe():
    from zss_core.models import load_pipeline

    pipe = load_pipeline("tiny", device="cpu")
    fake = FakeOOM(pipe.unet, limit=2)
    yield pipe, fake
    fake.handle.remove()


def make_job(tmp_path, job_id, **kw):
    return dict(
        id=job_id, prompt="p", model="tiny", output_dir=str(tmp_path), frames=4, width=64, height=64, steps=2, **kw
    )


def test_out_of_memory_is_retried_once_with_half_the_chunk(oom_pipe, tmp_path):
    pipe, fake = oom_pipe
    outcome = run_job(Job.from_dict(make_job(tmp_path, "retry", chunk=4)), pipe)
    assert outcome.status == "done" and len(outcome.frames) == 4
    assert 4 in fake.calls and max(fake.calls[fake.calls.index(4) + 1 :]) == 2
    manifest = json.loads((tmp_path / "retry" / "job.json").read_text())
    assert manifest["memory"]["retries"] == [{"chunk": 4, "error": "out of memory"}]
    assert manifest["memory"]["chunk"] == 2
    assert outcome.extra["notes"] == ["Ran out of memory with 4 frames per chunk; finished with 2."]


def test_out_of_memory_twice_reports_what_was_tried(oom_pipe, tmp_path):
    pipe, fake = oom_pipe
    fake.limit = 0
    with pytest.raises(JobError) as info:
        run_job(Job.from_dict(make_job(tmp_path, "fail", chunk=4)), pipe)
    assert info.value.code == "out_of_memory" and info.value.field == "chunk"
    assert "4 and then 2 frames per chunk" in info.value.message and "chunk" in info.value.hint
    assert json.loads((tmp_path / "fail" / "job.json").read_text())["status"] == "failed"


class Cache:
    def __init__(self, pipe):
        self.pipe = pipe

    def get(self, job):
        return self.pipe, 0.0

    def release(self):
        pass


def test_worker_survives_out_of_memory_and_keeps_serving(oom_pipe, tmp_path):
    pipe, fake = oom_pipe
    fake.limit = 0
    requests = queue.Queue()
    stream = io.StringIO()
    worker = Worker(EventWriter(stream), iter(requests.get, None), Cache(pipe))
    threads = [threading.Thread(target=worker.read_requests), threading.Thread(target=worker.run)]
    for t in threads:
        t.start()

    def send(message):
        requests.put(message.to_json())

    def events():
        return [protocol.message_from_json(line) for line in stream.getvalue().splitlines()]

    def wait_for(predicate, timeout=60):
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in events() if predicate(e)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise TimeoutError(str(events()))

    send(protocol.Generate(job=make_job(tmp_path, "big", chunk=2)))
    error = wait_for(lambda e: e.type == "error" and e.id == "big")
    assert error.code == "out_of_memory" and "2 and then 1" in error.message
    fake.limit = 1
    send(protocol.Generate(job=make_job(tmp_path, "small", chunk=2)))
    done = wait_for(lambda e: e.type == "done" and e.id == "small")
    assert done.notes == ["Ran out of memory with 2 frames per chunk; finished with 1."]
    send(protocol.Ping(id="still-here"))
    assert wait_for(lambda e: e.type == "pong").id == "still-here"
    requests.put(None)
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)


def test_download_request_is_queued_and_answered(tmp_path):
    requests = queue.Queue()
    stream = io.StringIO()
    fetched = []

    def downloader(model):
        fetched.append(model)
        return str(tmp_path / "cache" / model.replace("/", "--"))

    worker = Worker(EventWriter(stream), iter(requests.get, None), Cache(None), downloader=downloader)
    threads = [threading.Thread(target=worker.read_requests), threading.Thread(target=worker.run)]
    for t in threads:
        t.start()
    requests.put(protocol.Download(id="d1", model="org/model").to_json())
    requests.put(protocol.Ping(id="x").to_json())
    import time

    deadline = time.monotonic() + 30
    while "downloaded" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    requests.put(None)
    for t in threads:
        t.join(30)
    events = [protocol.message_from_json(line) for line in stream.getvalue().splitlines()]
    done = [e for e in events if e.type == "downloaded"]
    assert fetched == ["org/model"] and done[0].model == "org/model" and done[0].path.endswith("org--model")
    assert [e.type for e in events if e.id == "d1"] == ["accepted", "progress", "downloaded"]
