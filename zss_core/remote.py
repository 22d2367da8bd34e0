"""RemoteClient: the generator behind `zss serve` (docs/server.md), as a `GeneratorClient`.

    RemoteClient(url: str, token: str | None = None, *, cafile: str | None = None,
                 poll_wait: float = 10.0, timeout: float = 30.0, max_backoff: float = 10.0,
                 allow_http: bool = False)

- ``url``: ``https://host:port``; ``http://`` only for a loopback server (127.0.0.1, ::1,
  localhost) unless ``allow_http`` (the token would cross the network in the clear). A bad URL
  raises ValueError with what to write instead.
- ``token``: the server token; None reads the ``ZSS_TOKEN`` environment variable. It lives only in
  this object's memory and the ``Authorization`` header: never written to a file.
- ``cafile``: a PEM certificate (or CA bundle) to trust instead of the system's, for a server with a
  self-signed certificate.

It takes the job dict the add-on builds for a local worker: ``id`` is the add-on's (local) id,
``output_dir`` a local folder, ``model`` a **server model name** (``wait_ready()`` fills ``models``
with them), ``control.images`` local PNG paths (sent as base64). Events carry the local id and local
paths: frames are downloaded into ``<output_dir>/<id>/frame_XXXX.png`` as they are made, then
``clip.mp4``, ``contact_sheet.png`` and ``job.json`` on ``done`` — the same folder a local worker fills.

Standard library only (Blender's Python has no requests). All network I/O runs in one background
thread per job (a long poll of ``/events?after=N``); ``poll_events`` only drains a queue. When the
server cannot be reached, the thread retries with backoff and ``connection_state()`` says
``"retrying: <reason>"`` (``"ok"`` otherwise) for the panel; the job resumes from the last event it
saw. A job the server no longer knows ends as an ``error`` ``worker_died`` with the frames already
downloaded kept.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import http.client
import ipaddress
import json
import os
import queue
import ssl
import threading
import time
import urllib.parse
from typing import Any

from . import protocol
from .client import ENDING_EVENTS, GeneratorClient, WorkerNotRunning, WorkerStartError
from .protocol import Error, Job, Message, Ready

__all__ = ["RemoteClient", "ServerError", "Unreachable"]

LOG_LINES = 200
PREVIEW_DIR = "previews"  # previews.PREVIEW_DIR (that module needs torch; this one runs in Blender)
SKIPPED = object()  # _RemoteJob.localize: an event not handed out


def is_loopback(host: str) -> bool:
    """localhost or a loopback address (plain http and a token-less server are allowed only there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Unreachable(ConnectionError):
    """The server could not be reached (or answered 5xx): worth retrying."""


class ServerError(RuntimeError):
    """The server refused a request (4xx); `code`, `field` as in its JSON error."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None, problems: Any = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message, self.field, self.problems = status, code, message, field, problems


class RemoteClient(GeneratorClient):
    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        cafile: str | None = None,
        poll_wait: float = 10.0,
        timeout: float = 30.0,
        max_backoff: float = 10.0,
        allow_http: bool = False,
    ) -> None:
        parsed = urllib.parse.urlsplit(url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"server URL must look like https://host:port, got {url!r}")
        if parsed.scheme == "http" and not allow_http and not is_loopback(parsed.hostname):
            raise ValueError(
                f"{url} is plain http: the token would cross the network unencrypted. "
                "Use https:// (zss serve --tls-cert/--tls-key, or a reverse proxy)."
            )
        self.url = f"{parsed.scheme}://{parsed.netloc}"
        self._host = parsed.hostname
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._local = threading.local()
        self._token = token if token is not None else os.environ.get("ZSS_TOKEN")
        self._ssl = ssl.create_default_context(cafile=cafile) if parsed.scheme == "https" else None
        self.poll_wait = poll_wait
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.ready: Ready | None = None
        self.models: list[dict[str, Any]] = []  # the server's model names (GET /v1/models)
        self.workers: list[dict[str, Any]] = []
        self._events: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._jobs: dict[str, _RemoteJob] = {}  # local id → its thread, until its ending event is handed out
        self._closed = threading.Event()
        self._state = "ok"
        self._log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)

    # ------------------------------------------------------------------ HTTP

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        """This thread's kept-alive connection (one TLS handshake per thread, not per call)."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._ssl is not None:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            self._local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def drop_connection(self) -> None:
        """Close this thread's connection (after an error, or when the thread ends)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> bytes:
        """One call: the answer's body, ServerError for a 4xx, Unreachable for no answer or a 5xx."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if method != "GET":
            self.drop_connection()  # never resend a POST that a stale connection may have delivered
        for attempt in range(2):
            conn = self._connection(timeout or self.timeout)
            fresh = conn.sock is None
            try:
                conn.request(method, path, body=data, headers=headers)
                answer = conn.getresponse()
                payload: bytes = answer.read()
                break
            except (http.client.HTTPException, OSError) as e:
                self.drop_connection()
                if fresh or attempt:
                    raise Unreachable(f"{self.url}: {e}") from None
                # a kept-alive connection the server closed meanwhile: once more on a fresh one
        if answer.status >= 500:
            raise Unreachable(f"the server answered {answer.status}")
        if answer.status >= 400:
            try:
                err = json.loads(payload)["error"]
                error = ServerError(answer.status, err["code"], err["message"], err.get("field"), err.get("problems"))
            except (ValueError, KeyError, TypeError):
                error = ServerError(answer.status, "bad_request", payload[:200].decode("utf-8", "replace"))
            raise error
        self._set_state("ok")
        return payload

    def get_json(self, path: str, timeout: float | None = None) -> Any:
        return json.loads(self.request("GET", path, timeout=timeout))

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self._log.append(f"{time.strftime('%H:%M:%S')} {state}")

    def connection_state(self) -> str:
        """ "ok", or "retrying: <reason>" while the server cannot be reached (for the panel)."""
        return self._state

    # ------------------------------------------------------------------ life

    def describe(self) -> str:
        return f"server: {self.url}"

    def diagnostics(self, lines: int = 40) -> str:
        return "\n".join(list(self._log)[-lines:])

    def start(self, wait: bool = True, timeout: float = 120.0) -> Ready | None:
        self._closed.clear()
        return self.wait_ready(timeout) if wait else None

    def wait_ready(self, timeout: float = 120.0) -> Ready:
        """Ask /v1/health and /v1/models until they answer (or `timeout`); raises WorkerStartError."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                health = self.get_json("/v1/health", timeout=min(self.timeout, max(1.0, timeout)))
                listing = self.get_json("/v1/models", timeout=min(self.timeout, max(1.0, timeout)))
                break
            except ServerError as e:
                what = "the token was refused" if e.status == 401 else e.message
                raise WorkerStartError(
                    f"The server {self.url} answered but {what}. Check the token (preferences or ZSS_TOKEN)."
                ) from None
            except Unreachable as e:
                self._set_state(f"retrying: {e}")
                if time.monotonic() + 1.0 > deadline:
                    raise WorkerStartError(
                        f"Cannot reach the server {self.url} ({e}). Check the URL, that `zss serve` runs there, "
                        "and for a self-signed certificate that this computer trusts it."
                    ) from None
                time.sleep(1.0)
        if health.get("protocol") != protocol.PROTOCOL_VERSION:
            raise WorkerStartError(
                f"The server speaks protocol {health.get('protocol')}, this add-on speaks "
                f"{protocol.PROTOCOL_VERSION}; install the same zss version on both."
            )
        self.models = list(listing.get("models", []))
        self.workers = list(listing.get("workers", []))
        totals = [w["gpu_total_bytes"] for w in self.workers if w.get("gpu_total_bytes")]
        devices = sorted({str(w.get("device")) for w in self.workers if w.get("device")})
        self.ready = Ready(
            protocol=health["protocol"],
            versions={"zss": str(health.get("version")), "server": self.url},
            device=", ".join(devices) or "server",
            dtype="auto",
            gpu_free_bytes=None,
            gpu_total_bytes=sum(totals) if totals else None,
            pid=0,
        )
        return self.ready

    def is_alive(self) -> bool:
        return not self._closed.is_set() and self._state == "ok"

    def close(self) -> None:
        """Stop following the jobs (they go on on the server); safe to call twice."""
        self._closed.set()

    # -------------------------------------------------------------- requests

    def submit(self, job: Job | dict[str, Any]) -> str:
        d = job.to_dict() if isinstance(job, Job) else dict(job)
        local_id = d.get("id")
        if not isinstance(local_id, str) or not protocol.JOB_ID_PATTERN.fullmatch(local_id):
            raise ValueError(f"job id must match {protocol.JOB_ID_PATTERN.pattern}, got {local_id!r}")
        if local_id in self._jobs:
            raise ValueError(f"job {local_id!r} is already queued or running")
        if not isinstance(d.get("output_dir"), str):
            raise ValueError("job output_dir must be the local folder the frames are downloaded into")
        if self._closed.is_set():
            raise WorkerNotRunning("The server client is closed; start it again.")
        remote = self._jobs[local_id] = _RemoteJob(self, d)
        remote.thread.start()
        return local_id

    def cancel(self, job_id: str) -> None:
        remote = self._jobs.get(job_id)
        if remote is None:
            self._events.put(Error(id=job_id, code="unknown_job", message=f"no job {job_id!r} is running"))
            return
        remote.cancel()

    @property
    def pending(self) -> list[str]:
        return list(self._jobs)

    def server_id(self, job_id: str) -> str | None:
        """The server's id of a local job (None before it was accepted)."""
        remote = self._jobs.get(job_id)
        return None if remote is None else remote.server_id

    # ---------------------------------------------------------------- events

    def poll_events(self) -> list[Message]:
        """Every event the job threads delivered since the last call; never blocks."""
        out: list[Message] = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return out
            job_id = getattr(event, "id", None)
            if event.type in ENDING_EVENTS and job_id in self._jobs:
                del self._jobs[job_id]
            out.append(event)


class _RemoteJob:
    """One job's thread: submit it, follow its events, download its files, hand out local events."""

    def __init__(self, client: RemoteClient, job: dict[str, Any]) -> None:
        self.client = client
        self.job = job
        self.local_id: str = job["id"]
        self.folder = os.path.join(job["output_dir"], self.local_id)
        self.server_id: str | None = None
        self.after = -1
        self.frames: dict[int, str] = {}  # index → local path
        self.cancel_requested = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"zss-remote-{self.local_id}", daemon=True)

    # ----------------------------------------------------------- plumbing

    def emit(self, event: dict[str, Any]) -> None:
        self.client._events.put(protocol.message_from_dict({**event, "id": self.local_id}, expect="event"))

    def fail(self, code: str, message: str, hint: str = "", field: str | None = None, problems: Any = None) -> None:
        code = code if code in protocol.ERROR_CODES else "bad_request"
        self.emit(
            {"type": "error", "code": code, "message": message, "hint": hint, "field": field, "problems": problems}
        )

    def retrying(self, call: Any, *args: Any) -> Any:
        """Run `call` until it reaches the server (backoff doubling up to max_backoff); None once closed."""
        delay = 0.5
        while not self.client._closed.is_set():
            try:
                return call(*args)
            except Unreachable as e:
                self.client._set_state(f"retrying: {e}")
                self.client._closed.wait(delay)
                delay = min(delay * 2, self.client.max_backoff)
        return None

    def body(self) -> dict[str, Any]:
        """The job as the server takes it: no id, folder or ControlNet path; depth maps and restyle
        sources inline (base64 PNG)."""
        body = {k: v for k, v in self.job.items() if k not in ("id", "output_dir", "controlnet_model")}
        # Named always: the server sends previews only to clients that ask (see docs/server.md).
        body.setdefault("preview_every", protocol.PREVIEW_EVERY)
        control = body.get("control")
        if isinstance(control, dict) and isinstance(control.get("images"), list):
            body["control"] = {**control, "images": _inline(control["images"])}
        if isinstance(body.get("init"), list):
            body["init"] = _inline(body["init"])
        return body

    def download(self, remote_path: str, name: str, subfolder: str = "") -> str:
        """GET a file of the job into the local folder (or its `subfolder`, atomically); returns its local path."""
        data = self.client.request("GET", f"/v1/jobs/{self.server_id}/{remote_path}")
        folder = os.path.join(self.folder, subfolder) if subfolder else self.folder
        os.makedirs(folder, exist_ok=True)
        local = os.path.join(folder, os.path.basename(name))
        tmp = local + ".part"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, local)
        return local

    def cancel(self) -> None:
        self.cancel_requested.set()
        if self.server_id is not None:
            threading.Thread(target=self.send_cancel, daemon=True).start()

    def send_cancel(self) -> None:
        with contextlib.suppress(ServerError):  # already over: its ending event is on its way
            self.retrying(self.client.request, "POST", f"/v1/jobs/{self.server_id}/cancel", {})

    # ---------------------------------------------------------------- run

    def run(self) -> None:
        try:
            self.follow()
        except ServerError as e:
            self.fail(e.code, e.message, "Fix the job and send it again.", e.field, e.problems)
        except OSError as e:
            self.fail("output_not_writable", f"cannot read or write {e.filename}: {e.strerror}")
        finally:
            self.client.drop_connection()

    def follow(self) -> None:
        try:
            body = self.body()
        except OSError as e:
            source = e.filename in (self.job.get("init") or [])  # a restyle source frame, else a depth map
            self.fail(
                "control_image_invalid",
                f"cannot read the {'source frame' if source else 'depth image'} {e.filename}: {e.strerror}",
                field="init" if source else "control.images",
            )
            return
        os.makedirs(self.folder, exist_ok=True)
        answer = self.retrying(self.client.request, "POST", "/v1/jobs", body)
        if answer is None:
            return
        self.server_id = json.loads(answer)["id"]
        if self.cancel_requested.is_set():
            self.cancel()
        while not self.client._closed.is_set():
            path = f"/v1/jobs/{self.server_id}/events?after={self.after}&wait={self.client.poll_wait:g}"
            try:
                events = self.retrying(self.client.get_json, path, self.client.poll_wait + self.client.timeout)
            except ServerError as e:
                if e.status != 404:
                    raise
                count = len(self.frames)
                self.fail(
                    "worker_died",
                    f"The server no longer has this job (restarted without its data, or the job was deleted); "
                    f"the {count} frame{'s' if count != 1 else ''} downloaded are kept.",
                    "Generate again.",
                )
                return
            for event in events or ():
                self.after += 1
                if event.get("type") not in protocol.EVENTS:  # a newer server's event: not for this client
                    continue
                local = self.retrying(self.localize, event)
                if local is None:
                    return
                if local is SKIPPED:
                    continue
                self.emit(local)
                if event.get("type") in ENDING_EVENTS:
                    return

    def localize(self, event: dict[str, Any]) -> dict[str, Any] | object:
        """The event with local paths, after downloading the files it names (SKIPPED: a preview that is
        gone already; a later one follows, and a missing preview must not end the job)."""
        kind = event.get("type")
        event = dict(event)
        if kind == "preview":
            try:
                event["path"] = self.download(f"previews/{int(event['step'])}", event["path"], PREVIEW_DIR)
            except ServerError:
                return SKIPPED
        elif kind == "frame":
            index = int(event["index"])
            self.frames[index] = event["path"] = self.download(f"frames/{index}", event["path"])
        elif kind in ("done", "cancelled"):
            event["frames"] = [
                self.frames.get(i, os.path.join(self.folder, os.path.basename(p)))
                for i, p in enumerate(event["frames"])
            ]
            if event.get("video"):
                event["video"] = self.download("video", event["video"])
            if event.get("contact_sheet"):
                event["contact_sheet"] = self.download("contact_sheet", event["contact_sheet"])
            if event.get("manifest"):
                event["manifest"] = self.write_manifest()
        return event

    def write_manifest(self) -> str:
        """job.json as the server has it, with this computer's job (id, folder, model name, depth files)."""
        manifest = self.client.get_json(f"/v1/jobs/{self.server_id}/manifest")
        inner = manifest.get("job")
        if isinstance(inner, dict):
            inner.update({k: self.job[k] for k in ("id", "output_dir", "model") if k in self.job})
            if self.job.get("control") is not None:
                inner["control"] = self.job["control"]
                inner["controlnet_model"] = self.job.get("controlnet_model")
            if self.job.get("init") is not None:
                inner["init"] = self.job["init"]
        path = os.path.join(self.folder, "job.json")
        tmp = path + ".part"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
        os.replace(tmp, path)
        return path


def _inline(paths: list[str]) -> list[str]:
    """Local PNG files as base64 strings, for a job body."""
    encoded = []
    for path in paths:
        with open(path, "rb") as f:
            encoded.append(base64.b64encode(f.read()).decode("ascii"))
    return encoded
