"""The job queue and model download: owns the generator client (kept warm across jobs) and their tasks.

Every submitted job that has not ended is kept in submit order with its JobPlan, Task and staging
folder; events are routed to their job by id. The local generator runs queued jobs one after another,
a server runs them side by side; either way each job ends (imported, cancelled or failed) on its own.

poll() is the bpy.app.timers callback (tests, where timers never fire, call it in a loop). It never
blocks: the client's reader thread has already queued the events, poll() drains them, updates the
job's or download's Task (tasks.py) and tags a redraw only when something changed. The panels read
the tasks; nothing outside this module writes them. Runtime state lives here, not in the .blend, so a
saved file never holds a stale job.

The add-on talks to the generator only through zss_core.client.GeneratorClient, made by make_client()
(the local worker, or zss_core.remote.RemoteClient when the preferences name a server). With
Blender's online access off the local worker runs with HF_HUB_OFFLINE=1, so a model that is not on
disk fails at once instead of trying the network.
"""

import dataclasses
import os
import sys
import traceback

import bpy

from ..zss_core import client as generator_client
from . import hints, importers, jobspec, preferences, tasks, timers

POLL_INTERVAL = 0.1  # seconds between timer calls while a job runs
REDRAW_AREAS = {"VIEW_3D", "SEQUENCE_EDITOR", "PREFERENCES"}


@dataclasses.dataclass
class _Running:
    """A submitted job: its plan, its task, and the staging folder it owns until the task ends."""

    plan: jobspec.JobPlan
    task: tasks.Task
    staging: object  # staging.Folder


_client = None  # the GeneratorClient, kept warm between jobs
_client_settings = None  # what it was made from (see _settings): a change replaces it
_running = {}  # job id → _Running: the submitted jobs that have not ended, in submit order
_batch = []  # the Tasks of every job submitted since the queue was last empty, in submit order
_job_task = None  # the last job's Task that ended (job_task() prefers a running one)
_download_task = None  # the current or last download's Task (result: the model's cache path)
_download_model = ""
_connection_shown = ""  # the connection problem the panel showed at the last poll


# ------------------------------------------------------------------------------------------ reading


def client():
    """The current GeneratorClient or None (tests use it to find the worker process)."""
    return _client


def job_task():
    """The first running job's Task, else the last one that ended; None before the first job."""
    for running in _running.values():
        return running.task
    return _job_task


def job_tasks():
    """The Tasks of the current queue (every job submitted since it was last empty), in submit order;
    the panel lists them with their state while more than one job was queued."""
    return tuple(_batch)


def download_task():
    """The current or last model download's Task, or None."""
    return _download_task


def is_running():
    """Whether any job is running or queued."""
    return bool(_running)


def running_job():
    """The first running (or queued) job's JobPlan, or None."""
    for running in _running.values():
        return running.plan
    return None


def running_jobs():
    """The JobPlans of every running or queued job, in submit order."""
    return [running.plan for running in _running.values()]


def connection_problem():
    """ "Server unreachable, retrying: …" while a remote generator's connection is down, else ""."""
    state = getattr(_client, "connection_state", None)
    if state is None or not (_running or download_running()):
        return ""
    text = state()
    if text == "ok":
        return ""
    return "Server unreachable, retrying" + (text[len("retrying") :] if text.startswith("retrying") else f": {text}")


def download_running():
    return _download_task is not None and not _download_task.done()


def ready():
    """The generator's Ready event (versions, device, GPU memory) once it arrived, else None."""
    return _client.ready if _client is not None else None


def ready_summary(event):
    """One line about the generator: versions, device, GPU memory."""
    versions = event.versions or {}
    parts = [
        f"{name} {versions[name]}"
        for name in ("python", "torch", "diffusers", "transformers", "zss")
        if versions.get(name)
    ]
    memory = ""
    if event.gpu_total_bytes:
        memory = f", GPU memory {_gib(event.gpu_free_bytes)} free of {_gib(event.gpu_total_bytes)}"
    return f"Generator ready on {event.device} ({event.dtype}){memory}: {', '.join(parts)}"


def _gib(value):
    return f"{value / 2**30:.1f} GiB" if value else "?"


# ---------------------------------------------------------------------------------------- the client


def worker_env():
    """The worker's environment: None (inherit Blender's) when online, else HF_HUB_OFFLINE=1."""
    if preferences.online_access():
        return None
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


def make_client(prefs):
    """The one place a GeneratorClient is made: the local worker of Generator Python, or the remote
    client of a ZS² server (Generator: A Server). Raises WorkerStartError for an unusable server URL."""
    if preferences.uses_server(prefs):
        from ..zss_core import remote  # stdlib only, like client.py; loaded when a server is used

        try:
            return remote.RemoteClient(
                prefs.server_url, preferences.server_token(prefs), cafile=jobspec.user_path(prefs.server_cafile) or None
            )
        except (ValueError, OSError) as e:  # a malformed URL; an unreadable certificate file
            raise generator_client.WorkerStartError(hints.message("server_url", str(e))) from None
    return generator_client.LocalClient(jobspec.user_path(prefs.python_path), env=worker_env())


def _settings(prefs):
    """What a client is made from: the generator (Python, or the server, token and certificate) and
    whether it runs offline."""
    if preferences.uses_server(prefs):
        generator = ("SERVER", prefs.server_url.strip(), preferences.server_token(prefs), prefs.server_cafile.strip())
    else:
        generator = jobspec.user_path(prefs.python_path)
    return generator, not preferences.online_access()


def _stale(prefs):
    """The preferences name another generator, or (while idle) online access changed since it started."""
    generator, offline = _settings(prefs)
    if generator != _client_settings[0]:
        return True
    idle = not _running and not download_running()
    return idle and offline != _client_settings[1]


def ensure_client(prefs):
    """A started client for the preferences; started without waiting (it reports ready later), replaced
    when it died, when the generator (Python or server) changed, or when online access changed. Raises
    WorkerStartError."""
    global _client, _client_settings
    if _client is not None and _stale(prefs):
        _client.close()
        _client = None
        for running in list(_running.values()):  # the closed client sends them no ending event
            _finish_job(
                running,
                error="The clip stopped because the generator was changed in the preferences",
                hint=hints.fix("not_running"),
            )
        if download_running():
            _download_task.fail(
                "The download stopped because the generator was restarted with another Python",
                hints.fix("download_restart"),
            )
    if _client is None:
        _client, _client_settings = make_client(prefs), _settings(prefs)
    if not _client.is_alive():
        _client.start(wait=False)
    return _client


def check_server(prefs, timeout):
    """Connect to the preferences' server and wait for its answer; returns (Ready, models, workers) and
    remembers the model names for the Model field. Raises WorkerStartError."""
    c = ensure_client(prefs)
    ready = c.wait_ready(timeout=timeout)
    preferences.remember_server_models(prefs, c.models)
    return ready, list(c.models), list(c.workers)


def server_status():
    """The connected server's summary line (after Check Server or a job), else ""."""
    if _client is None or _client.ready is None or not hasattr(_client, "workers"):  # the local worker
        return ""
    return server_summary(_client.ready, _client.models, _client.workers)


def server_summary(ready, models, workers):
    """One line about a server: version, workers (GPUs) and model names."""
    gpus = [w for w in workers if w.get("gpu") is not None]
    where = f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''}" if gpus else f"{len(workers)} CPU worker(s)"
    names = ", ".join(m["name"] + (" (depth)" if m.get("controlnet") else "") for m in models) or "none"
    return f"Server ZS² {ready.versions.get('zss', '?')} with {where}: models {names}"


def stop_worker():
    """End the generator process (also at interpreter exit: touches no bpy)."""
    global _client
    if _client is not None:
        _client.close()
        _client = None


# ------------------------------------------------------------------------------------------- actions


def submit(plan, staging):
    """Send the planned job (queued behind the running ones) and start polling; the job owns `staging`
    (a staging.Folder) from here on.

    The caller validated everything and called ensure_client. Raises WorkerNotRunning.
    """
    c = _client
    c.submit(plan.job)
    staging.hand_over()
    task = tasks.Task("job", id=plan.id, result={"output_dir": plan.job_dir, "notes": []})
    task.update("Starting the generator…" if c.ready is None else "Queued")
    if not _running:
        _batch.clear()
    _batch.append(task)
    _running[plan.id] = _Running(plan, task, staging)
    start_timer()


def start_download(prefs, model, task_id):
    """Ask the worker to fetch a hub model into the local cache; poll() follows it.
    Raises WorkerStartError / WorkerNotRunning."""
    global _download_task, _download_model
    c = ensure_client(prefs)
    c.download(model, task_id)
    _download_model = model
    _download_task = tasks.Task("download", id=task_id)
    _download_task.update("Starting the generator…" if c.ready is None else "Queued")
    start_timer()


def cancel(job_id=None):
    """Ask the generator to stop a job (default: the first running one); it answers `cancelled` within
    one step, at once for a job still waiting in the queue. False when no such job runs."""
    running = _running.get(job_id) if job_id else next(iter(_running.values()), None)
    if running is None:
        return False
    try:
        _client.cancel(running.plan.id)
    except generator_client.WorkerNotRunning as e:
        _finish_job(running, error=f"The generator is not running: {e}", hint=hints.fix("not_running"))
        return True
    running.task.update("Cancelling…")
    return True


def start_timer():
    timers.start(poll, POLL_INTERVAL)


def stop_timer():
    timers.stop(poll)


def shutdown():
    """Stop polling and the worker (unregister); a running job or download is abandoned."""
    stop_timer()
    abandon("The add-on was disabled while a clip was being generated", hints.fix("disabled"))
    stop_worker()


def abandon(error, hint=""):
    """End the running jobs and download without waiting for the generator (their tasks fail)."""
    for running in list(_running.values()):
        _finish_job(running, error=error, hint=hint)
    if download_running():
        _download_task.fail(error, hint)


# ------------------------------------------------------------------------------------------- polling


def poll():
    """Timer callback: drain the client's events, update the tasks, import on done.

    Returns the seconds until the next call, or None (the timer ends) when nothing runs.
    """
    if (not _running and not download_running()) or _client is None:
        return None
    changed = False
    for event in _client.poll_events():
        changed |= _route(event)
    if _client.ready is not None:
        for running in list(_running.values()):
            if running.task.message.startswith("Starting the generator"):
                changed |= running.task.update("Queued")
    changed |= _connection_changed()
    if changed:
        timers.redraw(REDRAW_AREAS)
    return POLL_INTERVAL if (_running or download_running()) else None


def _connection_changed():
    """Whether "server unreachable" appeared or went away since the last poll (the panel redraws)."""
    global _connection_shown
    now = connection_problem()
    changed, _connection_shown = now != _connection_shown, now
    return changed


def _route(event):
    """Hand an event to the job or download it belongs to (an event without an id to all of them);
    True when a task changed."""
    if event.type == "ready":
        return False  # the client keeps it (ready()); the next poll moves "Starting" on
    changed = False
    for running in _addressed(event.id):
        changed |= _on_job_event(running, event)
    if download_running() and event.id in (_download_task.id, None):
        changed |= _on_download_event(event)
    return changed  # False: a late event of an earlier job


def _addressed(job_id):
    """The running jobs an event is for: the one with its id, or all of them for an event without one."""
    if job_id is None:
        return list(_running.values())
    return [_running[job_id]] if job_id in _running else []


def _eta(seconds):
    if seconds is None:
        return ""
    if seconds < 90:
        return f", about {max(1, round(seconds))} s left"
    return f", about {round(seconds / 60)} min left"


def progress_message(event):
    """A progress event as the panel shows it: stage, k/N, and the time left once sampling started."""
    stage, step, total = event.stage, event.step, event.total
    if stage == "load":
        return "Loading model…"
    if stage == "encode":
        return "Encoding prompt…"
    if stage == "denoise":
        return f"Sampling {step}/{total}{_eta(event.eta)}"
    if stage == "decode":
        return f"Decoding frame {step}/{total}{_eta(event.eta)}"
    if stage == "write":
        return f"Writing frames{_eta(event.eta)}"
    return f"{stage.capitalize()} {step}/{total}"


def _on_job_event(running, event):
    task = running.task
    kind = event.type
    if kind == "accepted":
        return task.update("Waiting in the queue" if event.queue_position else "Starting")
    if kind == "progress":
        return task.update(progress_message(event), event.fraction)
    if kind == "done":
        _import(running, event)
    elif kind == "cancelled":
        _finish_job(running, cancelled=f"Cancelled ({len(event.frames)} frames were written)")
    elif kind == "error":
        kept = _frames_kept(running.plan) if event.code in ("worker_died", "worker_stalled") else 0
        _finish_job(
            running,
            error=event.message + (f" ({kept} frames are in {running.plan.job_dir})" if kept else ""),
            hint=hints.worker_hint(event.code, event.hint),
            interrupted=bool(kept),
        )
    else:
        return False
    return True


def _on_download_event(event):
    task = _download_task
    kind = event.type
    if kind == "accepted":
        return task.update("Waiting in the queue" if event.queue_position else "Starting")
    if kind == "progress":
        return task.update(f"Downloading {_download_model}…", event.fraction)
    if kind == "downloaded":
        task.finish(f"Downloaded {event.model} in {event.seconds:.0f} s", result=event.path)
        report("INFO", f"ZS²: {task.message} ({event.path})")
    elif kind == "error":
        task.fail(event.message, hints.worker_hint(event.code, event.hint))
        print(f"ZS²: {task.error}\n{task.hint}", file=sys.stderr)
    elif kind == "cancelled":
        task.cancel("Download cancelled")
    else:
        return False
    return True


def _frames_kept(plan):
    """How many frames a job that stopped half-way left in its folder (downloaded, for a server)."""
    try:
        return sum(name.startswith("frame_") and name.endswith(".png") for name in os.listdir(plan.job_dir))
    except OSError:  # the generator never created the folder
        return 0


def _import(running, done):
    """Bring the finished clip into the scene it was planned for; import nothing elsewhere."""
    plan = running.plan
    job_dir = os.path.dirname(done.manifest) if done.manifest else plan.job_dir
    _remember(plan.job["model"])
    targets = plan.targets
    scene = bpy.data.scenes.get(targets.scene_name)
    if bpy.data.filepath != targets.blend_file or scene is None:
        _finish_job(
            running,
            error="The clip finished, but the .blend file or scene it was made for is no longer open",
            hint=hints.fix("blend_closed") + f": {job_dir}",
        )
        return
    try:
        notes = _import_clip(plan, scene, done, job_dir)
    except Exception as e:
        traceback.print_exc()
        _finish_job(
            running,
            error=f"The clip finished, but importing it failed: {e}",
            hint=hints.fix("import") + f" ({job_dir})",
        )
        return
    notes = list(done.notes or []) + notes
    _finish_job(
        running,
        done=f"Done in {done.seconds:.1f} s: {len(done.frames)} frames",
        result={"output_dir": job_dir, "notes": notes},
    )
    for note in notes:
        report("INFO", f"ZS²: {note}")


def _import_clip(plan, scene, done, job_dir):
    """The plan's import targets: material and/or strip, replacing Regenerate's clip in place.
    Returns the notes the import has for the user (e.g. what F12 renders)."""
    targets = plan.targets
    collection = bpy.data.collections.get(targets.collection_name) or scene.collection
    notes = []
    restyled = {}
    if targets.restyle_source != "NONE":
        restyled = importers.restyle_params(targets.restyle_source, targets.source_strip)
    if targets.target in ("MATERIAL", "BOTH"):
        material, image, _objects = importers.import_material(
            scene,
            collection,
            done.frames,
            plan.job,
            job_dir,
            targets.frame_start,
            list(targets.object_names),
            targets.use_emission,
            mapping=targets.mapping,
            camera=bpy.data.objects.get(targets.camera_name) if targets.camera_name else None,
            replace=targets.replace.material or None,
        )
        for block in (material, image):
            importers.store_params(block, restyled)
    if targets.target in ("STRIP", "BOTH"):
        placed = importers.place_strip(
            scene,
            done.frames,
            done.video,
            plan.job,
            job_dir,
            targets.frame_start,
            targets.use_movie,
            placement=targets.strip_placement,
            replace=targets.replace.strip or None,
            above=targets.source_strip or None,
        )
        importers.store_params(placed.strip, restyled)
        notes.extend(placed.notes)
    return notes


def _remember(model):
    """A model that finished a clip goes to the top of the preferences' Recent list."""
    try:
        preferences.remember_model(preferences.get(), model)
    except LookupError:  # the add-on was disabled meanwhile: nothing to remember it in
        return


def _finish_job(running, done="", cancelled="", error="", hint="", result=None, interrupted=False):
    """End a job's task (done, cancelled or failed — "Interrupted" when the generator stopped half-way
    and frames were kept), take it off the queue and remove its staging folder."""
    global _job_task
    if _running.pop(running.plan.id, None) is None:
        return
    running.staging.remove_in_background()
    task = _job_task = running.task
    if error:
        task.fail(error, hint, message="Interrupted" if interrupted else "Failed")
        print(f"ZS²: {error}\n{hint}", file=sys.stderr)
    elif cancelled:
        task.cancel(cancelled)
    else:
        task.finish(done, result=result)


def report(kind, message):
    """Put a message in Blender's status bar and Info log from a timer (no operator is running)."""
    try:
        bpy.ops.zss.report(kind=kind, message=message)
    except (RuntimeError, AttributeError) as e:  # no window (background), or the add-on is being disabled
        print(f"{message} ({e})" if kind != "INFO" else message, file=sys.stderr)
