"""`zss batch jobs.jsonl`: many clips through a server or a Ray cluster, resumable.

Each line of the file is one protocol job (docs/protocol.md) without ``output_dir``: every clip is
written to ``<--out>/<id>/`` (``id`` from the line, else one derived from the line's content, so the
same line always names the same folder). The jobs go to ``--server URL`` (a `zss serve`, through
`RemoteClient`) or straight to a Ray cluster with ``--backend ray`` (`RayClient`). ``model`` is a
model name as a server offers them — with ``--backend ray`` resolved here from ``--models
models.toml`` (default: the built-in ``textures``), anything else kept as a path or hub id — so one
file runs both ways. One progress bar counts the clips.

Resumable: a job whose folder holds a ``job.json`` with status ``done`` is skipped, a folder left
unfinished by an earlier run (killed, failed, cancelled) is removed and its job sent again — so
running the same command again finishes exactly what is missing.

Exit status: 0 when every clip is done, 1 when some failed (each listed on stderr), 2 for a bad file
or options, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from typing import Any

from . import protocol
from .client import ENDING_EVENTS, GeneratorClient, WorkerNotRunning, WorkerStartError

SERVER_PARALLEL = 8  # jobs in flight at once through a server: its default --max-queued per token
POLL_S = 0.05


class BatchError(ValueError):
    """The jobs file or the options cannot be run; the message says what to fix."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("jobs", help="JSON lines file: one protocol job per line (no output_dir)")
    parser.add_argument("--out", default="zss-batch", help="folder of the clips: one <id>/ folder each")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", metavar="URL", help="a `zss serve` (https://host:port); model = its model names")
    where.add_argument("--backend", choices=("ray",), help="run on a Ray cluster directly, without a server")
    parser.add_argument("--token", default=None, help="the server token (default: the ZSS_TOKEN variable)")
    parser.add_argument("--cafile", default=None, metavar="PEM", help="trust this certificate (self-signed server)")
    parser.add_argument("--ray-address", default=None, help="'auto' or HOST:PORT of a running cluster (none: local)")
    parser.add_argument("--workers", type=int, default=None, help="Ray actors (default: one per GPU, else 1)")
    parser.add_argument(
        "--models", default=None, help="with --backend ray: models.toml naming the models as a server does"
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=None,
        help=f"jobs in flight at once (default: {SERVER_PARALLEL} with --server, all with --backend ray)",
    )


def derived_id(job: dict[str, Any]) -> str:
    """A stable id for a line without one: its content's hash (an edited line is a new job)."""
    digest = hashlib.sha256(json.dumps(job, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
    return f"job-{digest[:12]}"


def read_jobs(path: str) -> list[dict[str, Any]]:
    """The jobs of a JSON lines file (blank lines skipped), each with its id; raises BatchError."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError as e:
        raise BatchError(f"cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise BatchError(f"{path} is not UTF-8 text: {e}") from e
    jobs: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            job = json.loads(line)
        except ValueError as e:
            raise BatchError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(job, dict):
            raise BatchError(f"{where}: a line must be one job object, got {type(job).__name__}")
        if "output_dir" in job:
            raise BatchError(f"{where}: leave output_dir out; every clip goes to <--out>/<id>/")
        job_id = job.get("id", derived_id(job))
        if not isinstance(job_id, str) or not protocol.JOB_ID_PATTERN.fullmatch(job_id):
            raise BatchError(f"{where}: id {job_id!r} must be letters, digits, '_', '.' or '-' (it names the folder)")
        if job_id in seen:
            raise BatchError(f"{where}: id {job_id!r} is already used on line {seen[job_id]}; give each job its own")
        seen[job_id] = number
        jobs.append({**job, "id": job_id})
    if not jobs:
        raise BatchError(f"{path} has no jobs")
    return jobs


def resolve_models(jobs: list[dict[str, Any]], models: str | None) -> list[dict[str, Any]]:
    """Model names as a server has them (models.toml, else the built-in `textures`) made into the
    model (and ControlNet) they stand for, so one jobs file runs through a server or straight on Ray.
    A model that is not a name stays as written (a folder, file or hub id)."""
    from .server.config import builtin_models, load_models

    entries = {m.name: m for m in (load_models(models) if models else builtin_models())}
    out = []
    for job in jobs:
        name = job.get("model")
        entry = entries.get(name) if isinstance(name, str) else None
        if entry is not None:
            job = {**job, "model": entry.model}
            if job.get("control") is not None and "controlnet_model" not in job:
                job["controlnet_model"] = entry.controlnet
        out.append(job)
    return out


def finished(out: str, job_id: str) -> bool:
    """Whether `<out>/<id>/job.json` says the clip is done."""
    try:
        with open(os.path.join(out, job_id, "job.json"), encoding="utf-8") as f:
            return json.load(f).get("status") == "done"
    except (OSError, ValueError, AttributeError):
        return False


@dataclasses.dataclass
class BatchResult:
    done: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # id → why


def run_batch(
    jobs: list[dict[str, Any]],
    client: GeneratorClient,
    out: str,
    parallel: int | None = None,
    validate: bool = False,
    show_progress: bool = True,
) -> BatchResult:
    """Run the jobs not done yet in `out` through `client` (started here, closed by the caller).

    validate: check each job here first (its paths are this machine's: the Ray backend), so a bad
    line fails alone instead of reaching a worker.
    """
    from tqdm import tqdm

    out = os.path.abspath(out)
    result = BatchResult()
    todo: collections.deque[dict[str, Any]] = collections.deque()
    for job in jobs:
        if finished(out, job["id"]):
            result.skipped.append(job["id"])
            continue
        folder = os.path.join(out, job["id"])
        if os.path.exists(folder):  # an earlier run's unfinished clip: made again from the start
            print(f"zss batch: {job['id']}: unfinished clip removed, making it again", file=sys.stderr)
            shutil.rmtree(folder)
        todo.append({**job, "output_dir": out})
    os.makedirs(out, exist_ok=True)
    limit = parallel or len(jobs)
    running: set[str] = set()
    with tqdm(total=len(jobs), initial=len(result.skipped), unit="clip", file=sys.stderr,
              disable=not show_progress) as bar:  # fmt: skip
        if todo:
            client.start(wait=True)
        while todo or running:
            while todo and len(running) < limit:
                job = todo.popleft()
                problems = protocol.validate_job(job) if validate else []
                if problems:
                    result.failed[job["id"]] = protocol.error_for_problems(job["id"], problems).message
                    bar.update(1)
                    continue
                try:
                    client.submit(job)
                except (ValueError, WorkerNotRunning) as e:
                    result.failed[job["id"]] = str(e)
                    bar.update(1)
                    continue
                running.add(job["id"])
            for event in client.poll_events():
                job_id = getattr(event, "id", None)
                if event.type not in ENDING_EVENTS or job_id not in running:
                    continue
                running.discard(job_id)
                if event.type == "done":
                    result.done.append(job_id)
                else:
                    message = getattr(event, "message", None) or event.type
                    result.failed[job_id] = f"{getattr(event, 'code', event.type)}: {message}"
                bar.set_postfix(failed=len(result.failed), refresh=False)
                bar.update(1)
            time.sleep(POLL_S)
    return result


def make_client(args: argparse.Namespace) -> GeneratorClient:
    if args.server:
        from .remote import RemoteClient

        return RemoteClient(args.server, args.token, cafile=args.cafile)
    try:
        from .server.ray_backend import RayClient
    except ImportError as e:
        raise BatchError(f"--backend ray needs Ray ({e}); install it with: pip install 'zss-blender[ray]'") from e
    return RayClient(address=args.ray_address, workers=args.workers)


def cmd_batch(args: argparse.Namespace) -> int:
    try:
        if args.server and (args.ray_address or args.workers or args.models):
            raise BatchError("--ray-address, --workers and --models go with --backend ray (a server has its own)")
        if args.parallel is not None and args.parallel < 1:
            raise BatchError(f"--parallel must be at least 1, got {args.parallel}")
        jobs = read_jobs(args.jobs)
        if not args.server:
            jobs = resolve_models(jobs, args.models)
        client = make_client(args)
    except (BatchError, ValueError) as e:
        print(f"zss batch: error: {e}", file=sys.stderr)
        return 2
    parallel = args.parallel or (SERVER_PARALLEL if args.server else None)
    try:
        result = run_batch(jobs, client, args.out, parallel, validate=not args.server)
    except WorkerStartError as e:
        print(f"zss batch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zss batch: interrupted; run the same command again to finish the missing clips", file=sys.stderr)
        return 130
    finally:
        client.close()
    print(
        f"zss batch: {len(result.done)} made, {len(result.skipped)} already done, {len(result.failed)} failed "
        f"(clips in {os.path.abspath(args.out)})",
        file=sys.stderr,
    )
    for job_id, why in result.failed.items():
        print(f"zss batch: {job_id} failed: {why}", file=sys.stderr)
    return 1 if result.failed else 0
