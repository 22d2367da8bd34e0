"""Background work as a small task object, shaped like concurrent.futures.Future.

A running job, a model download and the generator set-up are each one Task. The module that runs the
work (jobs.py for jobs and downloads, environment.py for the set-up) creates and writes its task; the
panels only read it. A task never goes back: pending → running → done | failed | cancelled.
"""

import dataclasses
import time

PENDING = "pending"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
ENDED = (DONE, FAILED, CANCELLED)


@dataclasses.dataclass(eq=False)
class Task:
    """One piece of background work: status, progress (0..1), message, and its outcome."""

    kind: str  # "job", "download" or "setup"
    id: str = ""
    status: str = PENDING
    progress: float = 0.0
    message: str = ""
    result: object = None  # what the work produced (e.g. the job's folder and notes)
    error: str = ""  # what went wrong — shown in red
    hint: str = ""  # what to do about it
    started: float = dataclasses.field(default_factory=time.monotonic)

    # ------------------------------------------------------------- reading (Future's names)

    def done(self):
        """Finished in any way: done, failed or cancelled."""
        return self.status in ENDED

    def running(self):
        return self.status in (PENDING, RUNNING)  # pending counts: the panel shows a bar and Cancel

    def cancelled(self):
        return self.status == CANCELLED

    def failed(self):
        return self.status == FAILED

    # ---------------------------------------------- writing (only by the module that owns the work)

    def update(self, message=None, progress=None):
        """Report progress while the work runs; returns True when anything visible changed."""
        if self.done():
            return False
        changed = self.status != RUNNING
        self.status = RUNNING
        if message is not None and message != self.message:
            self.message, changed = message, True
        if progress is not None:
            progress = max(0.0, min(1.0, float(progress)))
            if progress != self.progress:
                self.progress, changed = progress, True
        return changed

    def finish(self, message, result=None):
        self._end(DONE, message, progress=1.0)
        self.result = result

    def fail(self, error, hint="", message="Failed"):
        self._end(FAILED, message, progress=0.0)
        self.error, self.hint = error, hint

    def cancel(self, message="Cancelled"):
        self._end(CANCELLED, message, progress=self.progress)

    def _end(self, status, message, progress):
        self.status, self.message, self.progress = status, message, progress
