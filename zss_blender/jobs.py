"""The running job: owns the WorkerClient (kept warm across jobs); poll() is the timer callback.

poll() is a plain module-level function so that the same object is registered and unregistered as
the bpy.app.timers callback, and so tests (where timers never fire) can call it in a loop. It never
blocks: it drains the events the client's reader threads have already queued.
Runtime state lives here (`state`), not in the .blend, so a saved file never holds a stale job.
"""

import dataclasses
import os
import shutil
import sys
import time
import traceback

import bpy

from ..zss_core import client as worker_client
from . import importers

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
    ready: object = None  # the worker's Ready event (versions, device, GPU memory)


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


state = State()
_client = None
_running = None


def is_running():
    return _running is not None


def running_job():
    return _running


def client():
    """The current WorkerClient or None (tests use it to find the worker process)."""
    return _client


def ensure_worker(python):
    """A started worker for this Python; started without waiting (it reports ready later), restarted
    when it died or when the preference names another Python. Raises worker_client.WorkerStartError."""
    global _client
    if _client is not None and _client.python_executable != python:
        _client.stop()
        _client = None
    if _client is None:
        _client = worker_client.WorkerClient(python)
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


def submit(job, running):
    """Send the job and start polling. The caller validated everything; may raise WorkerNotRunning."""
    global _running
    c = _client
    for event in c.poll_events():  # whatever arrived while idle belongs to no job
        if event.type == "ready":
            state.ready = event
    c.submit(job)
    _running = running
    state.job_id = job["id"]
    state.fraction = 0.0
    state.status = "Starting the generator…" if c.ready is None else "Queued"
    state.error = state.hint = ""
    state.output_dir = os.path.join(job["output_dir"], job["id"])
    start_timer()


def cancel():
    """Ask the worker to stop the running job (it answers `cancelled` within one step)."""
    if _running is None:
        return False
    try:
        _client.cancel(_running.job["id"])
    except worker_client.WorkerNotRunning as e:
        _finish(error=f"The generator is not running: {e}",
                hint="Generate again to restart it.")
        return True
    state.status = "Cancelling…"
    return True


def start_timer():
    if not bpy.app.timers.is_registered(poll):
        bpy.app.timers.register(poll, first_interval=POLL_INTERVAL, persistent=True)


def stop_timer():
    if bpy.app.timers.is_registered(poll):
        bpy.app.timers.unregister(poll)


def poll():
    """Timer callback: drain worker events, update progress, import on done.

    Returns the seconds until the next call, or None (timer ends) when no job is running.
    """
    if _running is None or _client is None:
        return None
    for event in _client.poll_events():
        _handle(event)
        if _running is None:
            break
    _redraw()
    return POLL_INTERVAL if _running is not None else None


def _handle(event):
    kind = event.type
    if kind == "ready":
        state.ready = event
        if state.status.startswith("Starting"):
            state.status = "Queued"
        return
    job_id = _running.job["id"]
    if event.id not in (job_id, None):
        return  # a late event of an earlier job
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
        _finish(error=event.message, hint=event.hint)


def _import(done):
    """Bring the finished clip into the scene it was made for; import nothing elsewhere."""
    r = _running
    job_dir = os.path.dirname(done.manifest) if done.manifest else os.path.join(r.job["output_dir"], r.job["id"])
    scene = bpy.data.scenes.get(r.scene_name)
    if bpy.data.filepath != r.blend_file or scene is None:
        _finish(error="The clip finished, but the .blend file or scene it was made for is no longer open",
                hint=f"Nothing was imported; the frames are in {job_dir}")
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
                hint=f"The frames are in {job_dir}; see the system console for details")
        return
    state.output_dir = job_dir
    _finish(status=f"Done in {done.seconds:.1f} s: {len(done.frames)} frames", fraction=1.0)


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
    for wm in bpy.data.window_managers:
        for window in wm.windows:
            for area in window.screen.areas if window.screen else ():
                if area.type in {'VIEW_3D', 'SEQUENCE_EDITOR'}:
                    area.tag_redraw()


def stop_worker():
    """At interpreter exit: end the generator process without touching bpy."""
    global _client
    if _client is not None:
        _client.stop()
        _client = None


def shutdown():
    """Stop polling and the worker (unregister); a running job is abandoned."""
    stop_timer()
    if _running is not None:
        _finish(error="The add-on was disabled while a clip was being generated",
                hint="Generate again after enabling it")
    stop_worker()
