"""Set up, repair, rebuild and check the generator environment from Blender, without a terminal.

Runs ``python -m zss_core.setup_env DIR --json`` (stdlib only, so Blender's own Python can run it) as a
background process; a reader thread queues its stdout lines and poll() — the timer callback, a plain
function like jobs.poll — turns them into the set-up's Task (tasks.py) and `state` for the preferences
panel: progress, the last log lines, the error. On success the Generator Python preference is set to
the new environment's python and the worker is started (jobs.ensure_client); poll() keeps going until
the worker reports ready, without blocking.

check() imports the generator's packages in Generator Python (setup_env --check); generator_problem()
runs it before a Generate and remembers a healthy result per python and installed packages, so a Python
without torch is refused with what is missing instead of failing in the worker.

All runtime state is in one object (`state`), written only here; shutdown() ends the timer and the process.
"""

import collections
import contextlib
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

from ..zss_core import client as generator_client
from ..zss_core import process as child_process
from . import hints, jobs, jobspec, preferences, tasks, timers

SETUP_MODULE = "zss_core.setup_env"  # tests point this at a fake
POLL_INTERVAL = 0.2
LOG_LINES = 8  # log lines shown in the preferences
READY_TIMEOUT = 300.0  # seconds for the new worker's first start (imports torch)
CHECK_TIMEOUT = 300.0
STOP_TIMEOUT = 5.0
LINE_LIMIT = 300  # characters kept of one log line


@dataclasses.dataclass
class SetupState:
    """What the preferences show about the generator environment (written only by this module)."""

    task: tasks.Task = None  # the running or last Set Up / Repair / Rebuild
    phase: str = ""  # while the task runs: "installing", then "starting" (waiting for the worker's ready)
    action: str = ""  # "setup", "repair" or "rebuild"
    directory: str = ""
    log: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=LOG_LINES))
    health: dict = None  # the last health report (setup's own, Check Generator's, or Generate's check)
    python: str = ""  # the environment's python once installed
    errors: list = dataclasses.field(default_factory=list)  # the setup process's own error events
    waiting_since: float = 0.0  # when the installed worker was started (phase "starting")

    @property
    def busy(self):
        return self.task is not None and not self.task.done()

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
_healthy = set()  # (python, its mtime, its site-packages' mtimes) that passed check()


class SetupRefused(RuntimeError):
    """Setup cannot start; the message says what to do."""


def default_directory(create=False):
    """The add-on's own folder for the environment (Blender creates it with create=True, when setup starts)."""
    try:
        return bpy.utils.extension_path_user(preferences.ADDON_ID, path="generator", create=create)
    except ValueError:  # not installed as an extension (a legacy add-on, or tests loading the checkout)
        return os.path.join(bpy.utils.user_resource("EXTENSIONS"), ".user", "zss", "generator")


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
        if (
            in_scripts
            and os.path.basename(python).startswith("python")
            and os.path.isfile(os.path.join(folder, "pyvenv.cfg"))
        ):
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
        return [*args, "--check"]
    if prefs.setup_torch_spec.strip():
        args.append("--torch-spec=" + " ".join(prefs.setup_torch_spec.split()))
    for arg in shlex.split(prefs.setup_pip_args, posix=os.name != "nt"):
        args.append("--pip-arg=" + arg)
    if rebuild:
        args.append("--rebuild")
    return args


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
        raise SetupRefused(
            hints.message(
                "setup_offline",
                "Online access is off, so the generator cannot be installed (it downloads torch and diffusers)",
            )
        )
    if _process is not None:
        raise SetupRefused(hints.message("setup_running", "The generator is already being set up"))
    if jobs.is_running() or jobs.download_running():
        raise SetupRefused(hints.message("setup_busy", "A clip or download is running"))
    folder = repair_directory(prefs) if repair and not rebuild else directory(prefs)
    if folder == default_directory():
        folder = default_directory(create=True)  # the extension's user folder, created by Blender
    repairing = os.path.exists(env_python(folder))
    jobs.stop_worker()  # it may run from this environment, which pip is about to change
    args = command(prefs, folder, rebuild=rebuild)
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            env=generator_client.child_env(),
            **child_process.session_kwargs(),
        )
    except OSError as e:
        raise SetupRefused(
            hints.message("setup_failed", f"Setting up the generator failed: could not run {args[0]}: {e}")
        ) from e
    lines = queue.Queue()
    thread = threading.Thread(target=_read, args=(proc, lines), daemon=True, name="zss-setup")
    thread.start()
    _process = _Process(proc, lines, thread)
    state.__init__()
    state.task = tasks.Task("setup")
    state.task.update("Starting…")
    state.phase = "installing"
    state.action = "rebuild" if rebuild else ("repair" if repair or repairing else "setup")
    state.directory = folder
    state.log.append("$ " + " ".join(args))
    start_timer()
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
        message = str(event.get("message", ""))
        state.task.update(message, float(event.get("fraction", event.get("step", 0) / total)))
        state.log.append(f"[{event.get('step')}/{total}] {message}"[:LINE_LIMIT])
    elif kind == "log":
        text = str(event.get("line", ""))
        if text.strip():
            state.log.append(text[:LINE_LIMIT])
    elif kind == "health":
        state.health = event
        state.python = str(event.get("python", ""))
    elif kind == "error":
        state.errors.append(str(event.get("message", "setup failed")))


def _finish_install(returncode, prefs):
    """The setup process ended: record the outcome; on success set Generator Python and start the worker."""
    global _process
    _process = None
    health = state.health
    if returncode == 0 and health is not None and health.get("ok"):
        prefs.python_path = state.python or env_python(state.directory)
        try:
            jobs.ensure_client(prefs)
        except generator_client.WorkerStartError as e:
            _fail(hints.message("worker_start", f"The generator was installed but did not start: {e}"))
            return
        state.phase = "starting"
        state.task.update("Installed; starting the generator…", 1.0)
        state.waiting_since = time.monotonic()
        return
    problem = (
        "; ".join(state.errors) or (health or {}).get("problem") or f"the setup process exited with code {returncode}"
    )
    _fail(hints.message("setup_failed", f"Setting up the generator failed: {problem}"))


def _fail(error):
    state.phase = ""
    state.task.fail(error)
    print(f"ZS²: {error}\n" + "\n".join(state.log), file=sys.stderr)


def _follow_worker():
    """After an install: wait (without blocking) for the new worker's ready report."""
    c = jobs.client()
    if c is not None and c.ready is not None:
        state.phase = ""
        state.health = {**(state.health or {}), "ok": True}
        state.task.finish(jobs.ready_summary(c.ready))
        return
    if c is None or not c.is_alive():
        tail = c.diagnostics(LOG_LINES) if c is not None else ""
        for line in tail.splitlines():
            state.log.append(line[:LINE_LIMIT])
        _fail(hints.message("worker_start", "The generator was installed but exited during start-up"))
    elif time.monotonic() - state.waiting_since > READY_TIMEOUT:
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
                subprocess.run(
                    ["taskkill", "/F", "/T", "/PID", str(proc.pid)], check=False, capture_output=True, timeout=10
                )
            else:
                os.killpg(proc.pid, signal.SIGTERM)
        except (OSError, subprocess.SubprocessError):
            proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            if os.name != "nt":
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.kill()
            proc.wait()


def cancel():
    """Stop a running setup (the process and pip); a half-finished environment is repaired next time."""
    global _process
    if _process is None:
        if state.phase == "starting":  # stop waiting for the worker; it keeps starting in the background
            state.phase = ""
            state.task.cancel("Installed; press Check Generator to see whether it started")
            return True
        return False
    running = _process
    _process = None
    _kill(running.proc)
    running.thread.join(timeout=2.0)
    state.phase = ""
    state.task.cancel("Cancelled — press Set Up Generator again to finish (what was installed is kept)")
    _redraw()
    return True


def check(prefs, python, timeout=CHECK_TIMEOUT):
    """Health of the environment `python` belongs to (setup_env --check, which imports torch, diffusers …
    in that Python): a dict with ok, missing, problem. Recorded as state.health for the preferences.

    Blocking; Check Generator and generator_problem() call it.
    """
    state.health = _run_check(command(prefs, python, check=True), python, timeout)
    return state.health


def _run_check(args, python, timeout):
    try:
        result = subprocess.run(
            args,
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=generator_client.child_env(),
            timeout=timeout,
        )
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


def _missing(health):
    missing = health.get("missing") or []
    return f"missing {', '.join(missing)}" if missing else (health.get("problem") or "it does not work")


def health_problem(health):
    """A message for a broken health report: the missing packages and Repair / Rebuild."""
    return hints.message("environment", f"The generator environment is not usable: {_missing(health)}")


def _fingerprint(python):
    """What a healthy check depends on: the python and the mtimes of its environment's site-packages
    (installing or removing a package changes them)."""
    try:
        stamps = [os.stat(python).st_mtime_ns]
    except OSError:
        return None
    root = os.path.dirname(os.path.dirname(os.path.abspath(python)))
    for lib in ("lib", "Lib", "lib64"):
        folder = os.path.join(root, lib)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
            for candidate in (os.path.join(folder, name, "site-packages"), os.path.join(folder, "site-packages")):
                if os.path.isdir(candidate):
                    stamps.append((candidate, os.stat(candidate).st_mtime_ns))
    return os.path.abspath(python), tuple(stamps)


def generator_problem(prefs):
    """Why Generator Python cannot run the generator ("what — what to do"), or None.

    A warm worker of that Python proves it; otherwise check() imports the generator's packages there.
    A healthy result is remembered until the python or its installed packages change.
    """
    python = jobspec.user_path(prefs.python_path)
    c = jobs.client()
    if c is not None and c.ready is not None and c.is_alive() and getattr(c, "python_executable", None) == python:
        return None
    key = _fingerprint(python)
    if key is not None and key in _healthy:
        return None
    health = check(prefs, python)
    if health.get("ok"):
        _healthy.add(key)
        return None
    return hints.message(
        "generator_missing", f"The generator Python {python} cannot run the generator: {_missing(health)}"
    )


def start_timer():
    timers.start(poll, POLL_INTERVAL)


def stop_timer():
    timers.stop(poll)


def _redraw():
    timers.redraw({"PREFERENCES"})


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
        state.phase = ""
        state.task.cancel("Cancelled: the add-on was disabled")
