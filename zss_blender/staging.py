"""The staging folder of one job: where its depth maps and restyle source frames are written before the
worker copies them.

One context manager owns it on every path. Leaving the `with` block removes the folder (an error,
a refused job, an exception) unless the job took it over with hand_over(); then jobs.py removes it
when the job's task ends (done, failed, cancelled). The worker keeps its own copies in the job folder.
The job removes it on a background thread: deleting a few dozen files can take tens of milliseconds,
too long for the timer callback that noticed the job ended. One long-lived thread does all removals
(fed by a queue): starting a new thread per job blocked the timer ~13 ms on a loaded machine.
"""

import os
import queue
import shutil
import sys
import threading


class _Remover:
    """One daemon thread that removes the folders queued to it, started on first use."""

    def __init__(self):
        self._queue = queue.SimpleQueue()
        self._thread = None
        self._lock = threading.Lock()

    def put(self, folder):
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="zss-staging")
                self._thread.start()
        self._queue.put(folder)

    def _run(self):
        while True:
            self._queue.get().remove()

    def wait_idle(self, timeout=10.0):
        """Block until every queued folder is gone (tests, unregister); True when idle in time."""
        done = threading.Event()
        self._queue.put(_Signal(done))
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
        return done.wait(timeout) if alive else True


class _Signal:
    """A queue item that marks the point where every earlier removal has finished."""

    def __init__(self, event):
        self._event = event

    def remove(self):
        self._event.set()


_remover = _Remover()


def wait_idle(timeout=10.0):
    """Wait for the background removals queued so far (unregister, tests)."""
    return _remover.wait_idle(timeout)


class Folder:
    """A job's staging folder (or nothing, for a plan without depth maps or source frames)."""

    def __init__(self, path):
        self.path = path
        self._owned = True

    def __enter__(self):
        if self.path:
            os.makedirs(self.path, exist_ok=True)
        return self

    def __exit__(self, *exc):
        if self._owned:
            self.remove()
        return False

    def hand_over(self):
        """The running job owns the folder now: leaving the `with` block keeps it. Returns self."""
        self._owned = False
        return self

    def remove_in_background(self):
        """remove() on the one cleanup thread; returns at once."""
        _remover.put(self)

    def remove(self):
        """Delete the folder and its .staging parent when that is empty; never raises."""
        path = self.path
        if not path or not os.path.isdir(path):
            return
        try:
            shutil.rmtree(path)
            parent = os.path.dirname(path)
            if not os.listdir(parent):
                os.rmdir(parent)
        except FileNotFoundError:  # another job's removal took the shared .staging parent first
            return
        except OSError as e:  # a file still open on Windows: leave it, the job itself is fine
            print(f"ZS²: could not remove the staging folder {path}: {e}", file=sys.stderr)


def folder(plan):
    """`with staging.folder(plan) as folder:` — the plan's staging folder, removed on every path."""
    return Folder(plan.staging_folder)
