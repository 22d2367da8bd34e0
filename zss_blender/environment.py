"""Set up, repair, rebuild and check the generator environment from Blender, without a terminal.

Runs ``python -m zss_core.setup_env DIR --json`` (stdlib only, so Blender's own Python can run it) as a
background process; a reader thread queues its stdout lines and poll() — the timer callback, a plain
function like jobs.poll — turns them into `state` for the preferences panel: progress, the last log
lines, the error. On success the Generator Python preference is set to the new environment's python
and the worker is started; poll() keeps going until the worker reports ready, without blocking.

All runtime state is in one object (`state`); shutdown() ends the timer and the process.
"""

import collections
import dataclasses
import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time

import bpy

from ..zss_core import client as worker_client
from . import hints, jobs, jobspec, preferences, timers

SETUP_MODULE = "zss_core.setup_env"  # tests point this at a fake
POLL_INTERVAL = 0.2
LOG_LINES = 8  # log lines shown in the preferences
READY_TIMEOUT = 300.0  # seconds for the new worker's first start (imports torch)
CHECK_TIMEOUT = 300.0
STOP_TIMEOUT = 5.0
LINE_LIMIT = 300  # characters kept of one log line


@dataclasses.dataclass
class SetupState:
    """What the preferences show about the generator environment."""

    phase: str = ""  # "" idle, "installing", "starting" (worker), "done", "failed", "cancelled"
    action: str = ""  # "setup", "repair" or "rebuild"
    directory: str = ""
    fraction: float = 0.0
    message: str = ""  # the last step, or the ready report when done
    log: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=LOG_LINES))
    error: str = ""
    health: dict = None  # the last health report (setup's own, or Check Generator's)
    python: str = ""  # the environment's python once installed
    started: float = 0.0

    @property
    def busy(self):
        return self.phase in ("installing", "starting")

    @property
    def broken(self):
        """A health report said the environment cannot run the generator (offer Repair / Rebuild)."""
        return self.health is not None and not self.health.get("ok", False)


@dataclasses.dataclass
class _Process:
    proc: subprocess.Popen
    lines: queue.Queue
    thread: threading.Thread


state = SetupState()
_process = None


class SetupRefused(RuntimeError):
    """Setup cannot start; the message says what to do."""


def default_directory():
    """The add-on's own folder for the environment (created only when setup starts)."""
    try:
        return bpy.utils.extension_path_user(preferences.ADDON_ID, path="generator", create=False)
    except ValueError:  # not installed as an extension (a legacy add-on, or tests loading the checkout)
        return os.path.join(bpy.utils.user_resource('EXTENSIONS'), ".user", "zss", "generator")


def directory(prefs):
    """Where the environment lives: the Environment Folder preference, else default_directory()."""
    custom = jobspec.user_path(prefs.generator_dir)
    return os.path.abspath(custom) if custom else default_directory()


def repair_directory(prefs):
    """What Repair fixes: the virtual environment Generator Python belongs to, else directory(prefs)."""
    python = jobspec.user_path(prefs.python_path)
    if python:
        python = os.path.abspath(python)
        folder = os.path.dirname(os.path.dirname(python))
        in_scripts = os.path.basename(os.path.dirname(python)) in ("bin", "Scripts")
        if in_scripts and os.path.basename(python).startswith("python") and \
                os.path.isfile(os.path.join(folder, "pyvenv.cfg")):
            return folder
    return directory(prefs)


def env_python(folder):
    """The environment's python (as zss_core.setup_env.env_python, which Blender does not import)."""
    return os.path.join(folder, "Scripts", "python.exe") if os.name == "nt" else os.path.join(folder, "bin", "python")


def base_python(prefs):
    """The Python that runs setup_env: the Base Python preference, else Blender's own (sys.executable)."""
    return jobspec.user_path(prefs.setup_python) or sys.executable


def command(prefs, folder, rebuild=False, check=False):
    """The setup_env command line for the preferences."""
    args = [base_python(prefs), "-u", "-m", SETUP_MODULE, folder, "--json"]
    if check:
        return args + ["--check"]
    if prefs.setup_torch_spec.strip():
        args.append("--torch-spec=" + " ".join(prefs.setup_torch_spec.split()))
    for arg in shlex.split(prefs.setup_pip_args, posix=os.name != "nt"):
        args.append("--pip-arg=" + arg)
    if rebuild:
        args.append("--rebuild")
    return args


def child_env():
    """The add-on's zss_core on PYTHONPATH (setup_env is not installed anywhere), UTF-8, unbuffered."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = worker_client.PACKAGE_PARENT + (os.pathsep + old if old else "")
    return env


def _popen_kwargs():
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}  # its own process group: cancel ends pip too


def _read(proc, lines):
    for line in proc.stdout:
        lines.put(line.rstrip("\r\n"))
    lines.put(None)  # end of output


def is_running():
    return _process is not None


def process():
    """The running setup's Popen, or None (tests)."""
    return _process.proc if _process is not None else None


def start(prefs, rebuild=False, repair=False):
    """Start setting up (or repairing / rebuilding) the environment; raises SetupRefused.

    Set up and Rebuild work in the add-on's folder (directory()); Repair installs what is missing
    into the environment Generator Python belongs to (repair_directory()), so a rebuild never deletes
    an environment the add-on did not make. Refuses before touching the disk when online access is
    off, and while a clip or download runs (their worker may be the one being replaced).
    """
    global _process
    if not preferences.online_access():
        raise SetupRefused(hints.message("setup_offline", "Online access is off, so the generator cannot be "
                                                          "installed (it downloads torch and diffusers)"))
    if _process is not None:
        raise SetupRefused(hints.message("setup_running", "The generator is already being set up"))
    if jobs.is_running() or jobs.download_running():
        raise SetupRefused(hints.message("setup_busy", "A clip or download is running"))
    folder = repair_directory(prefs) if repair and not rebuild else directory(prefs)
    if folder == default_directory():
        try:  # the extension's user folder, created by Blender
            folder = bpy.utils.extension_path_user(preferences.ADDON_ID, path="generator", create=True)
        except ValueError:
            pass
    repairing = os.path.exists(env_python(folder))
    jobs.stop_worker()  # it may run from this environment, which pip is about to change
    args = command(prefs, folder, rebuild=rebuild)
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, encoding="utf-8", errors="replace", bufsize=1, env=child_env(),
                                **_popen_kwargs())
    except OSError as e:
        raise SetupRefused(hints.message("setup_failed", f"Setting up the generator failed: could not run "
                                                         f"{args[0]}: {e}")) from e
    lines = queue.Queue()
    thread = threading.Thread(target=_read, args=(proc, lines), daemon=True, name="zss-setup")
    thread.start()
    _process = _Process(proc, lines, thread)
    state.__init__()
    state.phase = "installing"
    state.action = "rebuild" if rebuild else ("repair" if repair or repairing else "setup")
    state.directory = folder
    state.message = "Starting…"
    state.started = time.monotonic()
    state.log.append("$ " + " ".join(args))
    _start_timer()
    return folder


def _handle_line(line):
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict) or "type" not in event:
        if line.strip():
            state.log.append(line[:LINE_LIMIT])  # a traceback or other output of the process
        return
    kind = event["type"]
    if kind == "step":
        total = event.get("total") or 1
        state.fraction = max(0.0, min(1.0, float(event.get("fraction", event.get("step", 0) / total))))
        state.message = str(event.get("message", ""))
        state.log.append(f"[{event.get('step')}/{total}] {state.message}"[:LINE_LIMIT])
    elif kind == "log":
        text = str(event.get("line", ""))
        if text.strip():
            state.log.append(text[:LINE_LIMIT])
    elif kind == "health":
        state.health = event
        state.python = str(event.get("python", ""))
    elif kind == "error":
        state.error = str(event.get("message", "setup failed"))


def _finish_install(returncode, prefs):
    """The setup process ended: record the outcome; on success set Generator Python and start the worker."""
    global _process
    _process = None
    health = state.health
    if returncode == 0 and health is not None and health.get("ok"):
        state.fraction = 1.0
        prefs.python_path = state.python or env_python(state.directory)
        try:
            jobs.ensure_worker(jobspec.user_path(prefs.python_path))
        except worker_client.WorkerStartError as e:
            _fail(hints.message("worker_start", f"The generator was installed but did not start: {e}"))
            return
        state.phase = "starting"
        state.message = "Installed; starting the generator…"
        state.started = time.monotonic()
        return
    problem = state.error or (health or {}).get("problem") or f"the setup process exited with code {returncode}"
    _fail(hints.message("setup_failed", f"Setting up the generator failed: {problem}"))


def _fail(error):
    state.phase = "failed"
    state.error = error
    print(f"ZS²: {error}\n" + "\n".join(state.log), file=sys.stderr)


def _follow_worker():
    """After an install: wait (without blocking) for the new worker's ready report."""
    c = jobs.client()
    if c is not None and c.ready is not None:
        jobs.state.ready = c.ready
        state.phase = "done"
        state.message = jobs.ready_summary(c.ready)
        state.health = {**(state.health or {}), "ok": True}
        jobs.state.status = state.message
        return
    if c is None or not c.is_alive():
        tail = c.stderr_tail(LOG_LINES) if c is not None else ""
        for line in tail.splitlines():
            state.log.append(line[:LINE_LIMIT])
        _fail(hints.message("worker_start", "The generator was installed but exited during start-up"))
    elif time.monotonic() - state.started > READY_TIMEOUT:
        _fail(hints.message("worker_start", f"The generator did not report ready within {READY_TIMEOUT:g} s"))


def poll():
    """Timer callback: drain the setup's output; never blocks. Returns the next delay, or None when done."""
    if state.phase == "installing" and _process is not None:
        ended = False
        while True:
            try:
                line = _process.lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                ended = True
                break
            _handle_line(line)
        if ended:
            returncode = _process.proc.wait()
            try:
                prefs = preferences.get()
            except LookupError:
                prefs = None
            if prefs is None:
                _fail("The add-on was disabled during setup — enable it and press Set Up Generator again")
            else:
                _finish_install(returncode, prefs)
    if state.phase == "starting":
        _follow_worker()
    _redraw()
    return POLL_INTERVAL if state.busy else None


def _kill(proc):
    """End the setup process and everything it started (pip), then reap it."""
    if proc.poll() is None:
        try:
            if os.name == "nt":
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, timeout=10)
            else:
                os.killpg(proc.pid, signal.SIGTERM)
        except (OSError, subprocess.SubprocessError):
            proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            if os.name != "nt":
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            proc.kill()
            proc.wait()


def cancel():
    """Stop a running setup (the process and pip); a half-finished environment is repaired next time."""
    global _process
    if _process is None:
        if state.phase == "starting":  # stop waiting for the worker; it keeps starting in the background
            state.phase = "cancelled"
            state.message = "Installed; press Check Generator to see whether it started"
            return True
        return False
    running = _process
    _process = None
    _kill(running.proc)
    running.thread.join(timeout=2.0)
    state.phase = "cancelled"
    state.message = "Cancelled — press Set Up Generator again to finish (what was installed is kept)"
    _redraw()
    return True


def check(prefs, python, timeout=CHECK_TIMEOUT):
    """Health of the environment `python` belongs to (setup_env --check): a dict with ok, missing, problem.

    Blocking (it imports torch in that Python); Check Generator calls it.
    """
    args = command(prefs, python, check=True)
    try:
        result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, encoding="utf-8",
                                errors="replace", env=child_env(), timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"ok": False, "python": python, "missing": [], "problem": f"the check could not run: {e}"}
    for line in reversed(result.stdout.splitlines()):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("type") == "health":
            return event
    output = (result.stderr or result.stdout).strip()[-500:]
    return {"ok": False, "python": python, "missing": [], "problem": f"the check failed: {output}"}


def health_problem(health):
    """A message for a broken health report: the missing packages and Repair / Rebuild."""
    missing = health.get("missing") or []
    what = f"missing {', '.join(missing)}" if missing else (health.get("problem") or "it does not work")
    return hints.message("environment", f"The generator environment is not usable: {what}")


def _start_timer():
    timers.start(poll, POLL_INTERVAL)


def stop_timer():
    timers.stop(poll)


def _redraw():
    timers.redraw({'PREFERENCES'})


def stop_process():
    """At interpreter exit: end a running setup without touching bpy."""
    global _process
    if _process is not None:
        running, _process = _process, None
        _kill(running.proc)


def shutdown():
    """unregister(): stop the timer and any running setup."""
    stop_timer()
    stop_process()
    if state.busy:
        state.phase = "cancelled"
