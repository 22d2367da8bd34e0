"""A real `zss serve` for the server and remote-client tests: a subprocess on 127.0.0.1 with a free
port, the tiny model by name, tokens, and a TLS certificate made here (clients trust only it).

No tests in this module; test_server.py and test_remote.py import it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(folder) -> tuple[str, str]:
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def write_models(folder) -> str:
    path = os.path.join(folder, "models.toml")
    with open(path, "w") as f:
        f.write('[models.tiny]\nmodel = "tiny"\ncontrolnet = "tiny"\n\n[models.plain]\nmodel = "tiny"\n')
    return path


def write_depth(folder, count: int, size: int = 64) -> list[str]:
    """`count` 16-bit depth PNGs (a moving gradient), as the add-on renders them."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        ramp = np.linspace(0, 65535, size, dtype=np.float64)
        image = ((ramp[None, :] + ramp[:, None] * 0.5 + i * 2000) % 65536).astype(np.uint16)
        path = os.path.join(folder, f"depth_{i:04d}.png")
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


class Server:
    """`zss serve` in a subprocess (its own session); `call` speaks raw HTTP(S) so paths stay as written."""

    def __init__(self, folder, *, tokens: int = 2, tls: bool = True, args=(), data=None) -> None:
        self.folder = str(folder)
        os.makedirs(self.folder, exist_ok=True)
        self.port = free_port()
        self.data = data or os.path.join(self.folder, "data")
        self.token_file = os.path.join(self.folder, "tokens.txt")
        self.tokens = []
        with open(self.token_file, "w") as f:
            f.write("# tokens of the test server\n")
        for _ in range(tokens):
            out = subprocess.run(
                [sys.executable, "-m", "zss_core.cli", "token", "new", "--token-file", self.token_file],
                check=True,
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            self.tokens.append(out.stdout.strip())
        self.cert = self.key = None
        if tls:
            self.cert, self.key = make_cert(self.folder)
        self.args = list(args)
        self.models = write_models(self.folder)
        self.process = None
        self.log_path = os.path.join(self.folder, "server.log")

    @property
    def url(self) -> str:
        return f"{'https' if self.cert else 'http'}://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "zss_core.cli", "serve", "--port", str(self.port), "--data", self.data]
        cmd += ["--token-file", self.token_file, "--models", self.models, "--workers", "1", *self.args]
        if self.cert:
            cmd += ["--tls-cert", self.cert, "--tls-key", self.key]
        return cmd

    def start(self, wait_worker: bool = True) -> Server:
        log = open(self.log_path, "a")  # noqa: SIM115 - the child keeps it
        env = dict(os.environ, PYTHONPATH=ROOT)
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.process.poll() is None, self.log()
            try:
                status, body = self.call("GET", "/v1/models", token=self.tokens[0] if self.tokens else None)
                if status == 200 and (not wait_worker or all(w["ready"] for w in body["workers"])):
                    return self
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "server did not start:\n" + self.log()
            time.sleep(0.3)

    def stop(self, kill: bool = False) -> None:
        """SIGKILL (a crash: the whole session, workers included) or SIGTERM (a clean stop)."""
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            os.killpg(self.process.pid, signal.SIGKILL)
        else:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=self.cert) if self.cert else None

    def connection(self, timeout: float = 60) -> http.client.HTTPConnection:
        if self.cert:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.ssl_context())
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def call(self, method, path, *, token=None, body=None, raw=None, headers=None, timeout=60):
        """(status, decoded JSON or bytes); `raw` sends bytes as they are."""
        conn = self.connection(timeout)
        head = dict(headers or {})
        if token is not None:
            head["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            head.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=head)
            answer = conn.getresponse()
            payload = answer.read()
        finally:
            conn.close()
        if answer.getheader("content-type", "").startswith("application/json"):
            return answer.status, json.loads(payload)
        return answer.status, payload

    def wait_end(self, job_id: str, token: str, timeout: float = 180) -> list[dict]:
        """Long-poll the job's events until an ending one; returns them all."""
        events: list[dict] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, new = self.call("GET", f"/v1/jobs/{job_id}/events?after={len(events) - 1}&wait=5", token=token)
            assert status == 200, new
            events += new
            if events and events[-1]["type"] in ("done", "error", "cancelled"):
                return events
        raise AssertionError(f"job {job_id} did not end in {timeout} s: {[e['type'] for e in events][-5:]}")
