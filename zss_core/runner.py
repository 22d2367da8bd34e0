"""Running one job: a validated ``protocol.Job`` in, a job folder on disk out.

Shared by the worker process and the ``zss generate`` command so both produce the same folder:
``frame_0001.png …``, ``control/`` (the control images used), ``init/`` (the restyle source frames used),
``clip.mp4``, ``contact_sheet.png``
and ``job.json``. The manifest is written when the job starts (status ``running``) and again when
it ends (``done``, ``cancelled`` or ``failed``) with the frames that exist, so a folder is never
ambiguous, even after a crash: a ``running`` manifest means the process died mid-job.

Progress is reported by stage (``JobCallbacks.stage``): ``encode`` (the prompt), ``denoise`` (step
k of N), ``decode`` (frame f of F) and ``write`` (the MP4, the contact sheet and the manifest);
the worker adds ``load`` before it and turns them into protocol events.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import export
from .protocol import Job

if TYPE_CHECKING:
    from .sampler import SamplingOptions

log = logging.getLogger(__name__)


class JobError(Exception):
    """A job failed for a reason the user can act on; ``code`` is a protocol error code."""

    def __init__(self, code: str, message: str, hint: str = "", field: str | None = None):
        super().__init__(message)
        self.code, self.message, self.hint, self.field = code, message, hint, field


@dataclass
class JobCallbacks:
    """How a running job reports back (the worker turns these into protocol events).

    ``stage(name, step, total)``: every stage as it starts (step 0) and advances (see the module's
    docstring); ``progress(step, total)``: the denoising steps alone (a progress bar's view);
    ``preview(p)``: each live preview (a ``previews.Preview``) once its PNG is written, every
    ``job.preview_every`` steps.
    """

    progress: Callable[[int, int], None] = lambda step, total: None
    frame: Callable[[int, str], None] = lambda index, path: None
    should_cancel: Callable[[], bool] = lambda: False
    stage: Callable[[str, int, int], None] = lambda name, step, total: None
    preview: Callable[[Any], None] = lambda preview: None


@dataclass
class JobOutcome:
    status: str  # done | cancelled
    job_dir: str
    frames: list[str]
    video: str | None = None
    contact_sheet: str | None = None
    manifest: str = ""  # job.json (always written: at start, and again when the job ends)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def create_job_dir(job: Job) -> Path:
    """Create ``<output_dir>/<id>`` fresh: an existing folder is never reused or overwritten."""
    job_dir = Path(job.output_dir) / job.id
    try:
        job_dir.parent.mkdir(parents=True, exist_ok=True)
        job_dir.mkdir()
    except FileExistsError as exc:
        raise JobError(
            "output_exists",
            f"The job folder '{job_dir}' already exists.",
            "Use a new job id or another output folder; existing clips are never overwritten.",
            "id",
        ) from exc
    except OSError as exc:
        raise JobError(
            "output_not_writable",
            f"Cannot create the job folder '{job_dir}': {exc.strerror}.",
            "Choose an output folder you can write to.",
            "output_dir",
        ) from exc
    return job_dir


def kept_control_paths(job: Job, job_dir: Path) -> list[Path]:
    """Where the job folder keeps its copy of each control image: ``control/control_0001.png`` …"""
    from .control_images import kept_path

    if job.control is None:
        return []
    return [kept_path(job_dir, index) for index in range(len(job.control.images))]


def load_control_images(job: Job, job_dir: Path, should_cancel: Callable[[], bool] = lambda: False) -> list | None:
    """Open each control image as an image (bounded, one at a time, at the job's size) and keep it as PNG
    in ``<job>/control/``; the client's bytes are never copied (see ``control_images``)."""
    from . import control_images
    from .sampler import SamplingCancelled

    if job.control is None:
        return None

    def check_cancel():
        if should_cancel():
            raise SamplingCancelled("cancelled while reading the control images")

    try:
        return control_images.load_control_images(job.control.images, (job.width, job.height), job_dir, check_cancel)
    except control_images.ControlImageError as exc:
        raise JobError(
            "control_image_invalid",
            str(exc),
            "Render the depth maps again, or point the job at valid image files (PNG, JPEG, WebP, TIFF or BMP).",
            exc.field,
        ) from exc


def load_init_images(job: Job, job_dir: Path, should_cancel: Callable[[], bool] = lambda: False) -> list | None:
    """The restyle source frames, read like the control images (bounded, at the job's size, kept as PNG
    in ``<job>/init/``); frames of differing sizes are refused, naming ``init[i]``."""
    from . import control_images
    from .sampler import SamplingCancelled

    if job.init is None:
        return None

    def check_cancel():
        if should_cancel():
            raise SamplingCancelled("cancelled while reading the source frames")

    try:
        return control_images.load_images(
            job.init, (job.width, job.height), job_dir, check_cancel, kind=control_images.INIT
        )
    except control_images.ControlImageError as exc:
        raise JobError(
            "control_image_invalid",
            str(exc),
            "Point init at the clip's frames again: readable image files (PNG, JPEG, WebP, TIFF or BMP) of one size.",
            exc.field,
        ) from exc


class Manifest:
    """``job.json``: the one place that builds and writes it, at every change of the job's status.

    The job it records points at the job folder's own copies of the control images (the paths the
    job named are staging files that the client deletes), so the folder reproduces the clip.
    """

    def __init__(self, job: Job, job_dir: Path, **common):
        self.job, self.job_dir, self.common = job, job_dir, common
        self.path = job_dir / export.MANIFEST_NAME

    def job_record(self) -> dict:
        """The job as run: control images are the kept copies (the named source where none was made)."""
        record = self.job.to_dict()
        if record.get("control"):
            kept = kept_control_paths(self.job, self.job_dir)
            record["control"]["images"] = [
                str(copy) if copy.exists() else source for copy, source in zip(kept, record["control"]["images"])
            ]
        if record.get("init"):
            from .control_images import INIT, kept_path

            record["init"] = [
                str(copy) if copy.exists() else source
                for copy, source in ((kept_path(self.job_dir, i, INIT), p) for i, p in enumerate(record["init"]))
            ]
        return record

    def write(self, status: str, **fields) -> str:
        export.write_manifest(
            self.path,
            {
                "status": status,
                "job": self.job_record(),
                "frames": [os.path.basename(p) for p in export.existing_frames(self.job_dir, self.job.frames)],
                "versions": export.library_versions(),
                **self.common,
                **fields,
            },
        )
        return str(self.path)


CPU_OOM_TELLS = ("out of memory", "can't allocate memory", "defaultcpuallocator")


def is_out_of_memory(exc: BaseException) -> bool:
    """Out-of-memory errors arrive as several exception types (CUDA, MPS, the CPU allocator's
    ``RuntimeError: [enforce fail at alloc_cpu.cpp] ... can't allocate memory``, Python's
    ``MemoryError``); for the RuntimeErrors their message is the tell."""
    import torch

    if isinstance(exc, (MemoryError, getattr(torch.cuda, "OutOfMemoryError", MemoryError))):
        return True
    return isinstance(exc, RuntimeError) and any(tell in str(exc).lower() for tell in CPU_OOM_TELLS)


OUTPUT_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)


def is_output_error(exc: BaseException, job_dir: Path) -> bool:
    """A file in the job folder could not be written (disk full, file-size limit, read-only, …)."""
    if not isinstance(exc, OSError) or exc.errno not in OUTPUT_ERRNOS:
        return False
    return exc.filename is None or str(exc.filename).startswith(str(job_dir))


def check_memory(job: Job, profile=None, device=None, dtype_bytes: int | None = None):
    """Refuse ``job`` with ``out_of_memory`` when its estimated peak exceeds what the device has free.

    Before loading (the worker, the CLI): the profile comes from the model's config files; after
    (``run_job``): from the loaded pipeline, weights excluded since the free memory already lacks them.
    Returns the estimate (recorded in the manifest).
    """
    from . import budget
    from .models import resolve_device, resolve_dtype

    device = device if device is not None else resolve_device(job.device)
    if dtype_bytes is None:
        dtype_bytes = resolve_dtype(job.dtype, device).itemsize
    found = budget.job_estimate(job, profile or budget.model_profile(job.model), device, dtype_bytes)
    refused = budget.refusal(job, found, budget.available_bytes(device), "GPU" if device.type == "cuda" else "machine")
    if refused is not None:
        message, hint, field_name = refused
        raise JobError("out_of_memory", message, hint, field_name)
    return found


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def auto_chunk(free_bytes: int | None, per_frame_bytes: int | None, frames: int, headroom: float = 0.8) -> int | None:
    """The largest chunk whose estimated memory fits ``headroom`` of the free memory (≥ 1).

    Without a measurement (CPU: no fixed budget to fit) the whole clip is one chunk (None).
    """
    if not free_bytes or not per_frame_bytes:
        return None
    return max(1, min(frames, int(free_bytes * headroom // per_frame_bytes)))


def sampling_options(job: Job, chunk: int | None = None) -> SamplingOptions:
    """The sampler's knobs for ``job`` (with ``chunk`` resolved: a number or None), built once."""
    from .sampler import SamplingOptions

    return SamplingOptions(
        prompt=job.prompt_schedule(),
        negative_prompt=job.negative_prompt,
        frames=job.frames,
        width=job.width,
        height=job.height,
        steps=job.steps,
        guidance=job.guidance,
        seed=job.seed,
        lam=job.lam,
        mu=job.mu,
        noise=job.noise,
        search=job.search,
        candidates=job.candidates,
        scheduler=job.scheduler,
        chunk=chunk,
        loop=job.loop,
        tile_x=job.tile_x,
        tile_y=job.tile_y,
        prompt_interpolation=job.prompt_interpolation,
        control_scale=job.control.scale if job.control else 1.0,
        cache_interval=job.cache_interval,
        fast=job.fast,
        strength=job.strength if job.init is not None else 1.0,
        image_guidance=job.image_guidance,
    )


def measure_frame_memory(pipe, job: Job) -> int | None:
    """Peak GPU bytes one frame adds to a denoising step at the job's size (one probe step), or None.

    Measured, not guessed: attention memory depends on the model, the resolution and the kernels.
    """
    import torch
    from PIL import Image

    from .sampler import SamplingOptions, sample

    device = pipe._execution_device
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    blank = [Image.new("RGB", (job.width, job.height))] * 2 if getattr(pipe, "controlnet", None) is not None else None
    edited = [Image.new("RGB", (job.width, job.height))] * 2 if job.image_guidance is not None else None
    probe = SamplingOptions(
        prompt=job.prompt,
        frames=2,
        width=job.width,
        height=job.height,
        steps=1,
        guidance=job.guidance,
        chunk=2,
        output_type="latent",
        image_guidance=job.image_guidance,
    )
    sample(pipe, probe, control_images=blank, init_images=edited)
    peak = torch.cuda.max_memory_allocated(device) - base
    free_memory()
    return max(1, peak // 2)


def _peak_memory(pipe) -> int | None:
    import torch

    device = pipe._execution_device
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def _reset_peak_memory(pipe) -> None:
    import torch

    device = pipe._execution_device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def run_job(
    job: Job,
    pipe,
    callbacks: JobCallbacks | None = None,
    *,
    model_load_seconds: float = 0.0,
    free_bytes: int | None = None,
) -> JobOutcome:
    """Sample ``job`` with ``pipe`` into a fresh job folder; raises ``JobError`` on failures.

    ``chunk="auto"`` picks the largest chunk that fits ``free_bytes`` (measured per frame on CUDA).
    An out-of-memory error is retried once with half the chunk; the manifest records what was tried.
    The job's LoRAs (none: disabled) are put on ``pipe`` first (``loras.apply_loras``).
    """
    from dataclasses import replace

    from . import budget
    from .cancel import cancel_points
    from .sampler import SamplingCancelled

    callbacks = callbacks or JobCallbacks()
    started = time.perf_counter()
    device = pipe._execution_device
    profile, dtype_bytes = replace(budget.profile_from_pipe(pipe), weight_bytes=0), pipe.unet.dtype.itemsize
    estimated = check_memory(job, profile, device, dtype_bytes)
    check_outputs(job)
    from .loras import apply_loras

    loras = apply_loras(pipe, job.loras)  # before the folder: a refused LoRA leaves nothing behind
    job_dir = create_job_dir(job)
    manifest = Manifest(
        job,
        job_dir,
        device=str(pipe._execution_device),
        dtype=str(pipe.unet.dtype).replace("torch.", ""),
        model_load_seconds=model_load_seconds,
        loras=[lora.to_dict() for lora in loras],
    )
    try:
        control = load_control_images(job, job_dir, callbacks.should_cancel)
        init = load_init_images(job, job_dir, callbacks.should_cancel)
    except SamplingCancelled:
        shutil.rmtree(job_dir)  # nothing was made yet: nothing to keep
        return JobOutcome("cancelled", str(job_dir), [], seconds=time.perf_counter() - started)
    except BaseException:
        shutil.rmtree(job_dir)  # a refused job leaves nothing behind: a retry with the same id works
        raise
    try:
        manifest.write("running")
        chunk = job.chunk
        if chunk == "auto":
            chunk = auto_chunk(free_bytes, measure_frame_memory(pipe, job), job.frames)
            if chunk is None and device.type == "cpu":  # nothing measured: the estimate picks it
                chunk = budget.largest_chunk(job, profile, device, dtype_bytes, budget.available_bytes(device))
        options = sampling_options(job, chunk)
        attempts: list[dict] = []
        while True:
            _reset_peak_memory(pipe)
            try:
                with cancel_points(pipe, callbacks.should_cancel):
                    result = _sample(pipe, options, control, job_dir, callbacks, job.preview_every, init)
                break
            except Exception as exc:
                tried = options.chunk or job.frames
                smaller = max(1, tried // 2)
                if not is_out_of_memory(exc):
                    raise
                free_memory()
                if attempts or smaller == tried:
                    raise _oom_error(job, attempts, options.chunk, device.type) from exc
                attempts.append({"chunk": tried, "error": "out of memory"})
                log.warning("job %s: out of memory at chunk %s, retrying with chunk %s", job.id, tried, smaller)
                options = options.replace(chunk=smaller)
        chunk = options.chunk or job.frames
        peak = _peak_memory(pipe)
        memory = {
            "chunk": chunk,
            "retries": attempts,
            "peak_bytes": peak,
            "peak_bytes_per_frame": peak // chunk if peak else None,
            "estimated_bytes": estimated.total,
        }
        notes = [f"Ran out of memory with {a['chunk']} frames per chunk; finished with {chunk}." for a in attempts]
        video, sheet = _write_outputs(job, job_dir, result.frames, callbacks)
    except SamplingCancelled:
        path = manifest.write("cancelled", seconds=time.perf_counter() - started)
        return JobOutcome(
            "cancelled",
            str(job_dir),
            export.existing_frames(job_dir, job.frames),
            manifest=path,
            seconds=time.perf_counter() - started,
        )
    except BaseException as exc:
        error = _as_job_error(exc, job_dir)
        details = (
            {"code": error.code, "message": error.message}
            if isinstance(error, JobError)
            else {"code": "interrupted", "message": repr(error)}
        )
        try:
            manifest.write("failed", error=details)
        except OSError as unwritten:  # a full disk: the error itself is what the user must hear
            log.warning("job %s: could not record the failure in %s: %s", job.id, manifest.path, unwritten)
        if error is exc:
            raise
        raise error from exc
    frames = export.existing_frames(job_dir, job.frames)
    if not job.outputs.frames:
        for path in frames:  # PNGs were the safe intermediate; the user asked only for the video
            os.unlink(path)
        frames = []
    seconds = time.perf_counter() - started
    path = manifest.write(
        "done",
        seconds=seconds,
        seed=result.seed,
        video=video and os.path.basename(video),
        contact_sheet=sheet and os.path.basename(sheet),
        noise=result.noise_stats.to_dict(),
        timings=result.timings,
        memory=memory,
        notes=notes,
    )
    callbacks.stage("write", _write_steps(job), _write_steps(job))
    return JobOutcome("done", str(job_dir), frames, video, sheet, path, seconds, {"notes": notes})


def _sample(
    pipe,
    options: SamplingOptions,
    control,
    job_dir: Path,
    callbacks: JobCallbacks,
    preview_every: int = 0,
    init=None,
):
    """The sampler with the job's callbacks: frames go to disk as they are decoded; stages are reported;
    a preview PNG every ``preview_every`` steps (0: none).

    A restyle (``init``) runs only the steps its strength selects: the denoise total counts those."""
    from .previews import PreviewWriter
    from .restyle import denoise_steps
    from .sampler import sample

    totals = {"encode": 1, "denoise": denoise_steps(options.steps, options.strength), "decode": options.frames}

    def on_stage(name):
        callbacks.stage(name, 0, totals[name])

    def progress(step, total):
        callbacks.progress(step, total)
        callbacks.stage("denoise", step, total)

    def on_frame(index, image):
        path = export.write_frame(job_dir, index, image)
        callbacks.frame(index, str(path))
        callbacks.stage("decode", index + 1, options.frames)

    previews = None
    if preview_every > 0:
        size = (options.frames, options.width, options.height)
        previews = PreviewWriter(pipe.vae, job_dir, preview_every, *size, sink=callbacks.preview)
    return sample(
        pipe,
        options,
        control_images=control,
        init_images=init,
        progress=progress,
        should_cancel=callbacks.should_cancel,
        on_frame=on_frame,
        on_stage=on_stage,
        on_latents=previews,
    )


def _write_steps(job: Job) -> int:
    """Files the write stage makes: the MP4 and the contact sheet when asked for, and the manifest."""
    return int(job.outputs.mp4) + int(job.outputs.contact_sheet) + 1


def _write_outputs(job: Job, job_dir: Path, frames: list, callbacks: JobCallbacks) -> tuple[str | None, str | None]:
    """The MP4 and the contact sheet (as asked for), reporting the write stage file by file."""
    total, done = _write_steps(job), 0
    callbacks.stage("write", done, total)
    video = sheet = None
    if job.outputs.mp4:
        video = str(export.write_mp4(job_dir / export.VIDEO_NAME, frames, job.fps))
        done += 1
        callbacks.stage("write", done, total)
    if job.outputs.contact_sheet:
        sheet = str(export.write_contact_sheet(job_dir / export.SHEET_NAME, frames))
        done += 1
        callbacks.stage("write", done, total)
    return video, sheet


def check_outputs(job: Job) -> None:
    """Refuse before sampling an output this Python cannot write (minutes of work would be lost at the end)."""
    import importlib.util

    if job.outputs.mp4 and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise JobError(
            "bad_request",
            "outputs.mp4: writing the clip's MP4 needs the imageio-ffmpeg package, which the generator's Python lacks",
            "Install it there (pip install imageio-ffmpeg; in Blender: Set Up Generator ▸ Repair), "
            "or turn the MP4 off (outputs.mp4 false, zss generate --no-mp4)",
            "outputs.mp4",
        )


def _oom_error(job: Job, attempts: list[dict], chunk, device_type: str = "cuda") -> JobError:
    tried = [a["chunk"] for a in attempts] + [chunk or job.frames]
    what = "The GPU" if device_type == "cuda" else f"The {device_type.upper()} memory"
    return JobError(
        "out_of_memory",
        f"{what} ran out of memory at {job.width}×{job.height} with "
        f"{' and then '.join(str(c) for c in tried)} frames per chunk.",
        "Lower 'chunk' (frames processed together) or the resolution, use float16, or turn on "
        "model CPU offload in the preferences.",
        "chunk",
    )


def _as_job_error(exc: BaseException, job_dir: Path) -> BaseException:
    """Map an exception to a JobError the user can act on (KeyboardInterrupt etc. pass through)."""
    if isinstance(exc, JobError) or not isinstance(exc, Exception):
        return exc
    if isinstance(exc, OSError) and is_output_error(exc, job_dir):
        where = exc.filename or job_dir
        return JobError(
            "output_not_writable",
            f"Cannot write '{where}': {exc.strerror or exc}. The frames written so far are kept in '{job_dir}'.",
            "Free disk space (or raise the file-size or disk quota), or choose another output folder.",
            "output_dir",
        )
    return JobError(
        "internal",
        f"Generation failed: {type(exc).__name__}: {exc}",
        "This is likely a bug; the generator log has the details.",
    )
