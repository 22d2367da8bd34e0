"""The running job (and model download): owns the WorkerClient (kept warm across jobs); poll() is the
timer callback.

poll() is a plain module-level function so that the same object is registered and unregistered as
the bpy.app.timers callback, and so tests (where timers never fire) can call it in a loop. It never
blocks: it drains the events the client's reader threads have already queued.
Runtime state lives here (`state`), not in the .blend, so a saved file never holds a stale job.
A model download (the worker's `download` request) is followed by the same poll(); events are routed
by id. With Blender's online access off the worker runs with HF_HUB_OFFLINE=1, so a model that is not
on disk fails at once with a clear message instead of trying the network.
"""

import dataclasses
import os
import shutil
import sys
import time
import traceback

import bpy

from ..zss_core import client as worker_client
from . import hints, importers, preferences, timers

POLL_INTERVAL = 0.1  # seconds between timer calls while a job runs
STAGE_LABELS = {"load": "Loading model", "denoise": "Denoising", "decode": "Decoding"}


@dataclasses.dataclass
class State:
    """What the panel shows about the current or last job."""

    job_id: str = ""  # the running job, "" when idle
    fraction: float = 0.0
    status: str = ""
    error: str = ""
    hint: str = ""
    output_dir: str = ""  # the last job's folder
    notes: list = dataclasses.field(default_factory=list)  # the last done event's notes (e.g. an OOM retry)
    ready: object = None  # the worker's Ready event (versions, device, GPU memory)
    download_model: str = ""  # the model being (or last) downloaded
    download_status: str = ""
    download_fraction: float = 0.0
    download_error: str = ""
    download_hint: str = ""


@dataclasses.dataclass
class Running:
    """Everything the poller needs to finish a job without an operator context."""

    job: dict
    blend_file: str
    scene_name: str
    collection_name: str
    object_names: list
    frame_start: int
    target: str
    use_emission: bool
    use_movie: bool
    staging: str


@dataclasses.dataclass
class Download:
    task_id: str
    model: str


state = State()
_client = None
_running = None
_download = None


def is_running():
    return _running is not None


def running_job():
    return _running


def client():
    """The current WorkerClient or None (tests use it to find the worker process)."""
    return _client


def download_running():
    return _download is not None


def worker_env():
    """The worker's environment: None (inherit Blender's) when online, else HF_HUB_OFFLINE=1."""
    if preferences.online_access():
        return None
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


def _offline(env):
    return env is not None and env.get("HF_HUB_OFFLINE") == "1"


def ensure_worker(python):
    """A started worker for this Python; started without waiting (it reports ready later), restarted
    when it died, when the preference names another Python or when online access changed.
    Raises worker_client.WorkerStartError."""
    global _client
    env = worker_env()
    if _client is not None and (_client.python_executable != python or
                                (_offline(_client.env) != _offline(env) and not _running and not _download)):
        _client.stop()
        _client = None
        if _download is not None:  # stopping the worker ended it without an event
            _finish_download(error="The download stopped because the generator was restarted with another Python",
                             hint=hints.fix("download_restart"))
    if _client is None:
        _client = worker_client.WorkerClient(python, env=env)
    if not _client.is_alive():
        _client.start(wait=False)
    return _client


def wait_ready(python, timeout=120.0):
    """Start the worker if needed and block until it reports ready; returns the Ready event."""
    c = ensure_worker(python)
    deadline = time.monotonic() + timeout
    while c.ready is None:
        if not c.is_alive():
            code = c.process.returncode if c.process is not None else None
            raise worker_client.WorkerStartError(
                f"The generator exited during start-up (exit code {code}).\n{c.stderr_tail()}")
        if time.monotonic() > deadline:
            raise worker_client.WorkerStartError(
                f"The generator did not report ready within {timeout:g} s.\n{c.stderr_tail()}")
        time.sleep(0.05)
    state.ready = c.ready
    return c.ready


def _drain_idle(c):
    """Whatever arrived while nothing was running belongs to no job."""
    if _running is None and _download is None:
        for event in c.poll_events():
            if event.type == "ready":
                state.ready = event


def submit(job, running):
    """Send the job and start polling. The caller validated everything; may raise WorkerNotRunning."""
    global _running
    c = _client
    _drain_idle(c)
    c.submit(job)
    _running = running
    state.job_id = job["id"]
    state.fraction = 0.0
    state.status = "Starting the generator…" if c.ready is None else "Queued"
    state.error = state.hint = ""
    state.notes = []
    state.output_dir = os.path.join(job["output_dir"], job["id"])
    start_timer()


def start_download(python, model, task_id):
    """Ask the worker to fetch a hub model into the local cache; poll() follows it.
    Raises WorkerStartError / WorkerNotRunning."""
    global _download
    c = ensure_worker(python)
    _drain_idle(c)
    c.download(model, task_id)
    _download = Download(task_id, model)
    state.download_model = model
    state.download_status = "Starting the generator…" if c.ready is None else "Queued"
    state.download_fraction = 0.0
    state.download_error = state.download_hint = ""
    start_timer()


def cancel():
    """Ask the worker to stop the running job (it answers `cancelled` within one step)."""
    if _running is None:
        return False
    try:
        _client.cancel(_running.job["id"])
    except worker_client.WorkerNotRunning as e:
        _finish(error=f"The generator is not running: {e}", hint=hints.fix("not_running"))
        return True
    state.status = "Cancelling…"
    return True


def start_timer():
    timers.start(poll, POLL_INTERVAL)


def stop_timer():
    timers.stop(poll)


def poll():
    """Timer callback: drain worker events, update progress, import on done.

    Returns the seconds until the next call, or None (timer ends) when no job is running.
    """
    if (_running is None and _download is None) or _client is None:
        return None
    for event in _client.poll_events():
        _route(event)
        if _running is None and _download is None:
            break
    _redraw()
    return POLL_INTERVAL if (_running is not None or _download is not None) else None


def _route(event):
    if event.type == "ready":
        state.ready = event
        if _running is not None and state.status.startswith("Starting"):
            state.status = "Queued"
        if _download is not None and state.download_status.startswith("Starting"):
            state.download_status = "Queued"
        return
    if _running is not None and event.id in (_running.job["id"], None):
        _handle(event)
    elif _download is not None and event.id in (_download.task_id, None):
        _handle_download(event)
    # else: a late event of an earlier job


def _handle_download(event):
    kind = event.type
    if kind == "accepted":
        state.download_status = "Waiting in the queue" if event.queue_position else "Starting"
    elif kind == "progress":
        state.download_fraction = event.fraction
        state.download_status = f"Downloading {_download.model}…"
    elif kind == "downloaded":
        _finish_download(status=f"Downloaded {event.model} in {event.seconds:.0f} s")
        report('INFO', f"ZS²: {state.download_status} ({event.path})")
    elif kind == "error":
        _finish_download(error=event.message, hint=hints.worker_hint(event.code, event.hint))
    elif kind == "cancelled":
        _finish_download(status="Download cancelled")


def _finish_download(status="", error="", hint=""):
    global _download
    _download = None
    state.download_fraction = 1.0 if status and not error else 0.0
    state.download_status = status or ("Failed" if error else "")
    state.download_error = error
    state.download_hint = hint
    if error:
        print(f"ZS²: {error}\n{hint}", file=sys.stderr)


def report(kind, message):
    """Put a message in Blender's status bar and Info log from a timer (no operator is running)."""
    try:
        bpy.ops.zss.report(kind=kind, message=message)
    except (RuntimeError, AttributeError) as e:  # no window (background), or the add-on is being disabled
        print(f"{message} ({e})" if kind != 'INFO' else message, file=sys.stderr)


def ready_summary(ready):
    """One line about the generator: versions, device, GPU memory."""
    versions = ready.versions or {}
    parts = [f"{name} {versions[name]}" for name in ("python", "torch", "diffusers", "transformers", "zss")
             if versions.get(name)]
    memory = ""
    if ready.gpu_total_bytes:
        memory = f", GPU memory {_format_bytes(ready.gpu_free_bytes)} free of {_format_bytes(ready.gpu_total_bytes)}"
    return f"Generator ready on {ready.device} ({ready.dtype}){memory}: {', '.join(parts)}"


def _format_bytes(value):
    return f"{value / 2**30:.1f} GiB" if value else "?"


def _handle(event):
    kind = event.type
    if kind == "accepted":
        state.status = "Waiting in the queue" if event.queue_position else "Starting"
    elif kind == "progress":
        state.fraction = event.fraction
        label = STAGE_LABELS.get(event.stage, event.stage)
        eta = f", {event.eta:.0f} s left" if event.eta is not None else ""
        state.status = f"{label} {event.step}/{event.total}{eta}"
    elif kind == "done":
        _import(event)
    elif kind == "cancelled":
        _finish(status=f"Cancelled ({len(event.frames)} frames were written)")
    elif kind == "error":
        _finish(error=event.message, hint=hints.worker_hint(event.code, event.hint))


def _import(done):
    """Bring the finished clip into the scene it was made for; import nothing elsewhere."""
    r = _running
    job_dir = os.path.dirname(done.manifest) if done.manifest else os.path.join(r.job["output_dir"], r.job["id"])
    scene = bpy.data.scenes.get(r.scene_name)
    _remember(r.job["model"])
    if bpy.data.filepath != r.blend_file or scene is None:
        _finish(error="The clip finished, but the .blend file or scene it was made for is no longer open",
                hint=hints.fix("blend_closed") + f": {job_dir}")
        return
    collection = bpy.data.collections.get(r.collection_name) or scene.collection
    try:
        if r.target in ("MATERIAL", "BOTH"):
            importers.import_material(scene, collection, done.frames, r.job, job_dir, r.frame_start,
                                      r.object_names, r.use_emission)
        if r.target in ("STRIP", "BOTH"):
            importers.import_strip(scene, done.frames, done.video, r.job, job_dir, r.frame_start, r.use_movie)
    except Exception as e:  # noqa: BLE001 — bpy raises many types; the timer must report, not die
        traceback.print_exc()
        _finish(error=f"The clip finished, but importing it failed: {e}",
                hint=hints.fix("import") + f" ({job_dir})")
        return
    state.output_dir = job_dir
    _finish(status=f"Done in {done.seconds:.1f} s: {len(done.frames)} frames", fraction=1.0)
    state.notes = list(done.notes or [])
    for note in state.notes:
        report('INFO', f"ZS²: {note}")


def _remember(model):
    """A model that finished a clip goes to the top of the preferences' Recent list."""
    try:
        preferences.remember_model(preferences.get(), model)
    except LookupError:
        pass


def _finish(status="", error="", hint="", fraction=0.0):
    global _running
    if _running is not None:
        remove_staging(_running.staging)
    _running = None
    state.job_id = ""
    state.fraction = fraction
    state.status = status or ("Failed" if error else "")
    state.error = error
    state.hint = hint
    if error:
        print(f"ZS²: {error}\n{hint}", file=sys.stderr)


def remove_staging(path):
    """Delete a job's depth maps; the worker copied them into the job folder."""
    if not path or not os.path.isdir(path):
        return
    try:
        shutil.rmtree(path)
        parent = os.path.dirname(path)
        if not os.listdir(parent):
            os.rmdir(parent)
    except OSError as e:
        print(f"ZS²: could not remove the staging folder {path}: {e}", file=sys.stderr)


def _redraw():
    timers.redraw({'VIEW_3D', 'SEQUENCE_EDITOR', 'PREFERENCES'})


def stop_worker():
    """At interpreter exit: end the generator process without touching bpy."""
    global _client
    if _client is not None:
        _client.stop()
        _client = None


def shutdown():
    """Stop polling and the worker (unregister); a running job is abandoned."""
    global _download
    stop_timer()
    if _running is not None:
        _finish(error="The add-on was disabled while a clip was being generated", hint=hints.fix("disabled"))
    _download = None
    stop_worker()
