"""The HTTP API of `zss serve` (docs/server.md): `create_app(config)` builds the FastAPI app.

Every call but /v1/health needs `Authorization: Bearer <token>` (when the server has a token file);
a job is seen only by the token that made it. A submitted job is checked in full (size, limits, model
name, PNG depth maps, `protocol.validate_job`) before it reaches a worker.
"""

import asyncio
import base64
import binascii
import contextlib
import datetime
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__, protocol
from .backend import Backend, LocalBackend
from .config import ConfigError, ServerConfig
from .store import JobRecord, JobStore, relative_paths
from .tokens import LOCAL_IDENTITY, TokenSet

MAX_WAIT_S = 30.0
POLL_INTERVAL_S = 0.02
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Fields a client may not send: the server makes the id and the folders, and names the ControlNet.
SERVER_FIELDS = {
    "id": "the server makes the job id (it is in the answer)",
    "output_dir": "the server keeps the files; download them from /v1/jobs/{id}/frames/{index}",
    "controlnet_model": "the ControlNet comes with the model name (models.toml)",
}


class ApiError(Exception):
    """An answer other than success: HTTP status and the protocol-style error object."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, problems: list[dict] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.problems = status, code, message, field, problems

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "field": self.field}
        if self.problems:
            error["problems"] = self.problems
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse({"error": error}, status_code=self.status, headers=headers)


def new_job_id() -> str:
    return f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(6)}"


def _decode_png(text: Any, field: str, code: str = "control_image_invalid") -> bytes:
    if not isinstance(text, str):
        raise ApiError(422, code, f"{field} must be a base64 PNG string", field)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, code, f"{field} is not valid base64", field) from None
    if not data.startswith(PNG_SIGNATURE):
        raise ApiError(422, code, f"{field} is not a PNG image (send frames as PNG)", field)
    return data


class JobIntake:
    """Turns a client's job body into a protocol Job with the server's id, folders and model paths."""

    def __init__(self, config: ServerConfig, store: JobStore) -> None:
        self.config = config
        self.store = store

    def too_many(self) -> ApiError:
        return ApiError(
            429,
            "too_many_jobs",
            f"you have {self.config.max_queued} jobs queued or running; wait for one to end or cancel one",
        )

    def check_limits(self, body: dict[str, Any]) -> None:
        c = self.config
        frames, width, height, steps = (body.get(k) for k in ("frames", "width", "height", "steps"))
        if isinstance(frames, int) and frames > c.max_frames:
            raise ApiError(
                422, "bad_request", f"frames: this server makes at most {c.max_frames} frames per job", "frames"
            )
        if isinstance(steps, int) and steps > c.max_steps:
            raise ApiError(422, "bad_request", f"steps: this server runs at most {c.max_steps} steps", "steps")
        w = width if isinstance(width, int) else 512
        h = height if isinstance(height, int) else 512
        if w * h > c.max_pixels:
            field = "width" if isinstance(width, int) and width >= h else "height"
            raise ApiError(
                422, "bad_request", f"{field}: {w}×{h} is over this server's {c.max_pixels} pixels per frame", field
            )

    def build(self, body: Any, owner: str) -> tuple[str, dict[str, Any]]:
        """Check, stage the depth maps, validate, commit; returns the new id and the protocol job."""
        if not isinstance(body, dict):
            raise ApiError(422, "bad_request", "the body must be a JSON object (a job)", "job")
        for field, why in SERVER_FIELDS.items():
            if field in body:
                raise ApiError(422, "bad_request", f"{field}: leave it out; {why}", field)
        if body.get("allow_pickle"):
            raise ApiError(
                422, "bad_request", "allow_pickle: a client cannot enable pickle checkpoints", "allow_pickle"
            )
        name = body.get("model")
        entry = self.config.model(name) if isinstance(name, str) else None
        if entry is None:
            names = ", ".join(m.name for m in self.config.models)
            raise ApiError(
                422, "model_not_found", f"model: {name!r} is not a model of this server; use one of: {names}", "model"
            )
        self.check_limits(body)
        if self.store.active_count(owner) >= self.config.max_queued:
            raise self.too_many()
        record = self.store.create(new_job_id(), owner, entry.name)
        try:
            job = {**body, "id": record.id, "output_dir": record.output_dir, "model": entry.model}
            if isinstance(body.get("loras"), list):
                job["loras"] = self._loras(body["loras"])
            # Live previews only for a client that names the field: one that does not may not know the
            # `preview` event (a RemoteClient before it stopped its job on an unknown event type).
            job.setdefault("preview_every", 0)
            control = body.get("control")
            if isinstance(control, dict):
                if entry.controlnet is None:
                    raise ApiError(
                        422, "bad_request", f"control: model {entry.name!r} has no depth ControlNet", "control"
                    )
                job["controlnet_model"] = entry.controlnet
                images = self._stage(control.get("images"), record.control_dir, "control", "control.images")
                job["control"] = {**control, "images": images}
            if body.get("init") is not None:  # restyle: the source frames, like the depth maps
                job["init"] = self._stage(body["init"], record.init_dir, "init", "init", "init_image_invalid")
            problems = protocol.validate_job(job)
            if problems:
                error = protocol.error_for_problems(None, problems)
                raise ApiError(422, "bad_request", error.message, error.field, error.problems)
            if not self.store.commit(record, max_active=self.config.max_queued):
                raise self.too_many()
        except BaseException:
            self.store.discard(record)
            raise
        return record.id, job

    def _loras(self, loras: list) -> list:
        """LoRA names (``[loras.NAME]`` of the models file) → the server's paths; a client never names a path."""
        mapped = []
        for i, lora in enumerate(loras):
            name = lora.get("path") if isinstance(lora, dict) else None
            if not isinstance(name, str):
                mapped.append(lora)  # validate_job names the problem
                continue
            entry = self.config.lora(name)
            if entry is None:
                names = ", ".join(m.name for m in self.config.loras) or "none (the models file has no [loras.NAME])"
                field = f"loras[{i}].path"
                raise ApiError(
                    422, "model_not_found", f"{field}: {name!r} is not a LoRA of this server; its LoRAs: {names}", field
                )
            mapped.append({**lora, "path": entry.path})
        return mapped

    @staticmethod
    def _stage(images: Any, folder: str, prefix: str, field: str, code: str = "control_image_invalid") -> Any:
        """Write base64 PNGs (depth maps, restyle sources) into the job's folder; returns their server paths."""
        if not isinstance(images, list):
            return images  # validate_job names the problem
        os.makedirs(folder, exist_ok=True)
        paths = []
        for i, text in enumerate(images[: protocol.MAX_LIST]):
            path = os.path.join(folder, f"{prefix}_{i + 1:04d}.png")
            with open(path, "wb") as f:
                f.write(_decode_png(text, f"{field}[{i}]", code))
            paths.append(path)
        return paths


def make_backend(config: ServerConfig, store: JobStore) -> Backend:
    """The backend `--backend` names (Ray is imported only when asked for: it is the `ray` extra)."""
    if config.backend == "ray":
        try:
            from .ray_backend import RayBackend
        except ImportError as e:
            raise ConfigError(f"--backend ray needs Ray ({e}); install it with: pip install 'zss-blender[ray]'") from e
        return RayBackend(config, store)
    return LocalBackend(config, store)


def create_app(config: ServerConfig, backend: Backend | None = None) -> FastAPI:
    store = JobStore(config.data, config.keep_hours)
    work = backend or make_backend(config, store)
    tokens = TokenSet.from_file(config.token_file)
    intake = JobIntake(config, store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        work.start()
        yield
        await run_in_threadpool(work.close)

    app = FastAPI(title="zss serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.store = store
    app.state.backend = work

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        field = str(first.get("loc", ["", "request"])[-1])
        return ApiError(422, "bad_request", f"{field}: {first.get('msg', 'invalid value')}", field).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "unknown_job" if exc.status_code == 404 else "bad_request"
        return ApiError(exc.status_code, code, str(exc.detail)).response()

    def owner(authorization: str | None = Header(default=None)) -> str:
        if tokens is None:
            return LOCAL_IDENTITY
        scheme, _, given = (authorization or "").partition(" ")
        identity = tokens.identify(given.strip()) if scheme.lower() == "bearer" and given.strip() else None
        if identity is None:
            raise ApiError(401, "unauthorized", "a valid token is required: send 'Authorization: Bearer <token>'")
        return identity

    Caller = Annotated[str, Depends(owner)]

    def job_of(job_id: str, who: Caller) -> JobRecord:
        job = store.get(job_id, who) if protocol.JOB_ID_PATTERN.fullmatch(job_id) else None
        if job is None:
            raise ApiError(404, "unknown_job", f"no job {job_id!r} (it never existed, was deleted, or is not yours)")
        return job

    OwnJob = Annotated[JobRecord, Depends(job_of)]

    async def read_body(request: Request) -> bytes:
        """The body, refused with 413 as soon as it is over the limit (header or stream)."""
        limit = config.max_body
        declared = request.headers.get("content-length")
        too_big = ApiError(413, "body_too_large", f"the request is over this server's limit of {limit} bytes")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise too_big
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "protocol": protocol.PROTOCOL_VERSION}

    @app.get("/v1/models")
    async def models(who: Caller) -> dict[str, Any]:
        return {
            "models": [
                {"name": m.name, "family": m.family, "controlnet": m.controlnet is not None} for m in config.models
            ],
            "loras": [m.name for m in config.loras],
            "workers": work.workers(),
        }

    @app.post("/v1/jobs", status_code=201)
    async def submit(request: Request, who: Caller) -> dict[str, str]:
        raw = await read_body(request)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise ApiError(400, "bad_request", f"the body is not valid JSON: {e}", "job") from None
        job_id, job = await run_in_threadpool(intake.build, body, who)
        work.submit(job_id, job)
        return {"id": job_id}

    @app.get("/v1/jobs")
    async def jobs(who: Caller) -> dict[str, Any]:
        return {"jobs": [j.summary() for j in store.owned(who)]}

    @app.get("/v1/jobs/{job_id}")
    async def status(job: OwnJob) -> dict[str, Any]:
        return {**job.summary(), "events": store.events_after(job, -1)}

    @app.get("/v1/jobs/{job_id}/events")
    async def events(job: OwnJob, after: int = -1, wait: float = 0.0) -> list[dict[str, Any]]:
        if after < -1:
            raise ApiError(422, "bad_request", "after must be -1 (all events) or an event index ≥ 0", "after")
        deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT_S)
        while True:
            found = store.events_after(job, after)
            if found or not job.active or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(POLL_INTERVAL_S)

    def job_file(job: JobRecord, relative: str | None, what: str) -> str:
        path = job.file(relative)
        if path is None:
            raise ApiError(404, "unknown_job", f"job {job.id} has no {what} (yet)")
        return path

    @app.get("/v1/jobs/{job_id}/frames/{index}")
    async def frame(index: int, job: OwnJob) -> FileResponse:
        if index < 0:
            raise ApiError(404, "unknown_job", "frame indices start at 0")
        return FileResponse(job_file(job, job.frames.get(index), f"frame {index}"), media_type="image/png")

    @app.get("/v1/jobs/{job_id}/previews/{step}")
    async def preview(step: int, job: OwnJob) -> FileResponse:
        return FileResponse(job_file(job, job.previews.get(step), f"preview at step {step}"), media_type="image/png")

    def done_field(job: JobRecord, name: str) -> str | None:
        done = next((e for e in reversed(store.events_after(job, -1)) if e.get("type") == "done"), None)
        return done.get(name) if done else None

    @app.get("/v1/jobs/{job_id}/video")
    async def video(job: OwnJob) -> FileResponse:
        return FileResponse(job_file(job, done_field(job, "video"), "video"), media_type="video/mp4")

    @app.get("/v1/jobs/{job_id}/contact_sheet")
    async def contact_sheet(job: OwnJob) -> FileResponse:
        return FileResponse(job_file(job, done_field(job, "contact_sheet"), "contact sheet"), media_type="image/png")

    @app.get("/v1/jobs/{job_id}/manifest")
    async def manifest(job: OwnJob) -> dict[str, Any]:
        path = job_file(job, "job.json", "manifest")
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return _client_manifest(data, job, {m.path: m.name for m in config.loras})

    @app.post("/v1/jobs/{job_id}/cancel", status_code=202)
    async def cancel(job: OwnJob) -> dict[str, str]:
        if job.active:
            work.cancel(job.id)
        return {"id": job.id, "state": job.state}

    @app.delete("/v1/jobs/{job_id}")
    async def delete(job: OwnJob) -> Response:
        if job.active:
            work.cancel(job.id)
        store.delete(job)
        return Response(status_code=204)

    return app


def _client_manifest(data: dict[str, Any], job: JobRecord, lora_names: dict[str, str]) -> dict[str, Any]:
    """job.json with its paths relative to the job and the model and LoRAs by name, as a client may see it."""
    data = relative_paths(data, job.job_dir)
    inner = data.get("job")
    if isinstance(inner, dict):
        inner["output_dir"] = "."
        inner["model"] = job.model
        if inner.get("controlnet_model"):
            inner["controlnet_model"] = job.model  # the name's ControlNet
        for lora in inner.get("loras") or []:
            lora["path"] = lora_names.get(lora["path"], "?")
    for applied, asked in zip(data.get("loras") or [], (inner or {}).get("loras") or []):
        applied["path"] = asked["path"]  # the file the server resolved is the server's business
    return data
