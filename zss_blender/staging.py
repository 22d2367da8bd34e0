"""The staging folder of one job: where its depth maps are rendered before the worker copies them.

One context manager owns it on every path. Leaving the `with` block removes the folder (an error,
a refused job, an exception) unless the job took it over with hand_over(); then jobs.py removes it
when the job's task ends (done, failed, cancelled). The worker keeps its own copies in the job folder.
The job removes it on a background thread: deleting a few dozen files can take tens of milliseconds,
too long for the timer callback that noticed the job ended.
"""

import os
import shutil
import sys
import threading


class Folder:
    """A job's staging folder (or nothing, for a plan without depth frames)."""

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
        """remove() on a daemon thread; returns the thread."""
        thread = threading.Thread(target=self.remove, daemon=True, name="zss-staging")
        thread.start()
        return thread

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
    return Folder(plan.depth.folder if plan.depth is not None else "")
