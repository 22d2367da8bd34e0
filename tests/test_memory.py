"""GPU-memory handling without a GPU: automatic chunk size, out-of-memory retry, worker survival."""

import io
import json
import os
import queue
import sys
import threading
from pathlib import Path

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
    base = dict(id=job_id, prompt="p", model="tiny", output_dir=str(tmp_path), frames=4, width=64, height=64, steps=2)
    return {**base, **kw}


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


# -- issue 12: cancel inside the model's work, CPU out-of-memory, memory budget, unwritable output -----


def _cancel_latency(pipe, tmp_path, stage_name, delay):
    """Run a 1024² one-step frame; cancel ``delay`` s after ``stage_name`` starts; return seconds to land."""
    import time

    from zss_core.runner import JobCallbacks

    cancel = threading.Event()
    asked: list[float] = []

    def stage(name, step, total):
        if name == stage_name and step == 0 and not asked:
            asked.append(0.0)

            def later():
                time.sleep(delay)
                asked[0] = time.perf_counter()
                cancel.set()

            threading.Thread(target=later, daemon=True).start()

    job = Job.from_dict(make_job(tmp_path, f"big-{stage_name}", frames=1, width=1024, height=1024, steps=1))
    outcome = run_job(job, pipe, JobCallbacks(should_cancel=cancel.is_set, stage=stage))
    landed = time.perf_counter() - asked[0]
    assert outcome.status == "cancelled" and outcome.frames == []
    return landed


@pytest.mark.parametrize("stage_name, delay", [("denoise", 1.0), ("decode", 0.5)])
def test_cancel_lands_within_two_seconds_inside_a_large_frame(tiny_pipe, tmp_path, stage_name, delay):
    """One 1024² step takes ~7 s of UNet and ~6 s of VAE on a CPU here; the sampler checks only between
    chunks, so before the block hooks a cancel waited for the whole call (2048²: over 150 s)."""
    landed = _cancel_latency(tiny_pipe, tmp_path, stage_name, delay)
    print(f"cancel in {stage_name} landed after {landed:.2f} s")
    assert landed < 2.0, landed


def test_cancel_hooks_are_removed_and_the_sliced_vae_attention_is_exact(tiny_pipe):
    from zss_core.cancel import SlicedAttention, cancel_modules, cancel_points, vae_attentions

    before = [len(m._forward_pre_hooks) for m in cancel_modules(tiny_pipe)]
    processors = [attn.processor for attn in vae_attentions(tiny_pipe)]
    latents = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = tiny_pipe.vae.decode(latents).sample
        with cancel_points(tiny_pipe, lambda: False) as checks:
            assert checks > 20 and processors
            for attn in vae_attentions(tiny_pipe):
                assert isinstance(attn.processor, SlicedAttention)
                attn.processor.slice_elements = 100 * 1024  # 1024 tokens → 10 slices of ~100 queries
            sliced = tiny_pipe.vae.decode(latents).sample
    assert torch.equal(sliced, reference)
    assert [len(m._forward_pre_hooks) for m in cancel_modules(tiny_pipe)] == before
    assert [attn.processor for attn in vae_attentions(tiny_pipe)] == processors


class RaiseInUnet:
    """Raise ``error`` from the UNet's first call (what the CPU allocator does when RAM runs out)."""

    def __init__(self, unet, error):
        self.error = error
        self.handle = unet.register_forward_pre_hook(self)

    def __call__(self, module, args):
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] err == 0. DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)"
        ),
    ],
)
def test_cpu_out_of_memory_is_reported_as_out_of_memory(tiny_pipe, tmp_path, error):
    fake = RaiseInUnet(tiny_pipe.unet, error)
    try:
        with pytest.raises(JobError) as info:
            run_job(Job.from_dict(make_job(tmp_path, "cpu-oom", frames=1)), tiny_pipe)
    finally:
        fake.handle.remove()
    assert info.value.code == "out_of_memory" and "CPU" in info.value.message and info.value.hint


def test_an_absurd_job_is_refused_before_the_model_loads(tmp_path):
    """2048² × 1024 frames unchunked on the CPU: refused from the estimate, naming the fields to lower."""
    import time

    from zss_core.runner import check_memory

    job = Job.from_dict(make_job(tmp_path, "absurd", frames=1024, width=2048, height=2048, device="cpu"))
    started = time.perf_counter()
    with pytest.raises(JobError) as info:
        check_memory(job)
    assert time.perf_counter() - started < 1.0
    assert info.value.code == "out_of_memory" and info.value.field == "chunk"
    assert "chunk" in info.value.hint and "width" in info.value.hint and "GiB" in info.value.message
    assert not (tmp_path / "absurd").exists()


def test_the_worker_refuses_an_absurd_job_without_loading_and_keeps_serving(tmp_path):
    """Through the real worker process: out_of_memory naming fields, no model load, the next job runs."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "zss_core.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["type"] == "ready"
        absurd = make_job(tmp_path, "absurd", frames=1024, width=2048, height=2048, device="cpu")
        small = make_job(tmp_path, "small", frames=1, steps=1, device="cpu")
        for job in (absurd, small):
            proc.stdin.write(protocol.Generate(job=job).to_json() + "\n")
        proc.stdin.flush()
        ends = {}
        while len(ends) < 2:
            event = json.loads(proc.stdout.readline())
            if event["type"] in ("done", "error", "cancelled"):
                ends[event["id"]] = event
        assert ends["absurd"]["type"] == "error" and ends["absurd"]["code"] == "out_of_memory"
        assert ends["absurd"]["field"] == "chunk" and "width" in ends["absurd"]["hint"]
        assert ends["small"]["type"] == "done"
        assert not (tmp_path / "absurd").exists()
    finally:
        proc.stdin.close()
        proc.wait(60)
        proc.stderr.close()
        proc.stdout.close()


WRAPPER = """
import resource, runpy, signal, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
sys.argv = ["zss_core.worker"]
runpy.run_module("zss_core.worker", run_name="__main__")
"""


def test_a_file_size_limit_is_output_not_writable_with_the_path_and_frames_stay(tmp_path):
    """RLIMIT_FSIZE stands in for a full disk: the write fails with EFBIG (SIGXFSZ ignored by the worker)."""
    import subprocess
    import sys

    from PIL import Image

    wrapper = tmp_path / "limited_worker.py"
    wrapper.write_text(WRAPPER)
    # 64² tiny frames are ~12 KB each as PNG; the MP4 of 8 of them too; the limit lets frames through, not all
    proc = subprocess.Popen(
        [sys.executable, str(wrapper), str(14 * 1024)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=str(tmp_path.parent),
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        assert json.loads(proc.stdout.readline())["type"] == "ready"
        job = make_job(tmp_path, "full", frames=6, steps=1, device="cpu")
        job["outputs"] = {"frames": True, "mp4": False, "contact_sheet": True}
        proc.stdin.write(protocol.Generate(job=job).to_json() + "\n")
        proc.stdin.write(protocol.Ping(id="after").to_json() + "\n")
        proc.stdin.flush()
        events = []
        while not any(e["type"] == "pong" for e in events) or not any(e["type"] in ("done", "error") for e in events):
            events.append(json.loads(proc.stdout.readline()))
        end = next(e for e in events if e["type"] in ("done", "error"))
        assert end["type"] == "error" and end["code"] == "output_not_writable", end
        assert str(tmp_path / "full") in end["message"] and end["field"] == "output_dir"
        frames = sorted((tmp_path / "full").glob("frame_*.png"))
        assert frames, "the frames written before the failure are kept"
        for frame in frames:
            with Image.open(frame) as image:
                image.load()  # whole, not truncated
        assert not [p.name for p in (tmp_path / "full").iterdir() if p.name.startswith(".")]
    finally:
        proc.stdin.close()
        proc.wait(60)
        proc.stdout.close()


def test_recover_job_removes_a_killed_writers_temporary_file(tmp_path):
    from zss_core import export

    job = Job.from_dict(make_job(tmp_path, "killed", frames=2))
    job_dir = tmp_path / "killed"
    job_dir.mkdir()
    export.write_manifest(job_dir / "job.json", {"status": "running", "job": job.to_dict()})
    export.write_frame(job_dir, 0, image_of_zeros())
    (job_dir / ".frame_0002.k1l2m3.png").write_bytes(b"\x89PNG half")  # SIGKILL mid-write
    state = export.recover_job(job_dir)
    assert state["status"] == "interrupted" and len(state["frames"]) == 1
    assert sorted(p.name for p in job_dir.iterdir()) == ["frame_0001.png", "job.json"]


def image_of_zeros():
    import numpy as np

    return np.zeros((8, 8, 3), np.uint8)


MP4_UNDER_LIMIT = """
import resource, signal, sys
import numpy as np
from zss_core import export
export.ignore_file_size_signal()
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
frames = [np.random.default_rng(i).integers(0, 255, (128, 128, 3), np.uint8) for i in range(24)]
try:
    export.write_mp4(sys.argv[1], frames)
except OSError as exc:
    print(exc.errno, exc.filename)
"""


def test_an_mp4_cut_short_by_a_file_size_limit_raises_naming_the_file(tmp_path):
    """ffmpeg reports the failed write only on its stderr and imageio-ffmpeg ignores its exit status:
    before the check the truncated MP4 (20000 bytes, unplayable) was moved into place as a finished clip."""
    import errno
    import subprocess
    import sys

    target = tmp_path / "clip.mp4"
    proc = subprocess.run(
        [sys.executable, "-c", MP4_UNDER_LIMIT, str(target)], capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.split() == [str(errno.EFBIG), str(target)], proc.stdout + proc.stderr
    assert not target.exists() and not list(tmp_path.iterdir())  # no truncated clip, no temporary


def test_an_mp4_this_python_cannot_write_is_refused_before_sampling(tiny_pipe, tmp_path, monkeypatch):
    """A generator without imageio-ffmpeg (an incomplete environment) refuses the job up front, naming
    outputs.mp4 and what to do, instead of failing as an internal error after sampling."""
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # what find_spec reports for a missing package
    with pytest.raises(JobError) as refused:
        run_job(Job.from_dict(make_job(tmp_path, "no-ffmpeg")), tiny_pipe)
    assert refused.value.field == "outputs.mp4" and "imageio-ffmpeg" in refused.value.message
    assert not (tmp_path / "no-ffmpeg").exists()
    job = Job.from_dict(make_job(tmp_path, "frames-only", outputs={"mp4": False}))
    assert run_job(job, tiny_pipe).status == "done"
