"""`zss serve` and `zss token new`: the command-line entry points of the server."""

from __future__ import annotations

import argparse
import logging
import sys

from .config import BACKENDS, DEFAULT_PORT, MAX_BODY_BYTES, ConfigError, ServerConfig, config_from_options
from .tokens import new_token


def add_arguments(serve: argparse.ArgumentParser, token: argparse.ArgumentParser) -> None:
    """The options of `zss serve` and `zss token new` (cli.py calls this; nothing heavy is imported)."""
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (another than loopback needs tokens)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--token-file", default=None, help="accepted tokens, one per line (`zss token new`)")
    serve.add_argument("--models", default=None, help="models.toml: [models.NAME] model = ..., controlnet = ...")
    serve.add_argument("--workers", type=int, default=None, help="worker processes (default: one per GPU, else 1)")
    serve.add_argument(
        "--backend", choices=BACKENDS, default="local", help="local worker processes, or Ray actors on a cluster"
    )
    serve.add_argument(
        "--ray-address", default=None, help="with --backend ray: 'auto' or HOST:PORT of a running cluster (none: local)"
    )
    serve.add_argument("--tls-cert", default=None, metavar="PEM")
    serve.add_argument("--tls-key", default=None, metavar="PEM")
    serve.add_argument("--max-frames", type=int, default=256)
    serve.add_argument("--max-pixels", type=int, default=1024 * 1024, help="width × height of one frame")
    serve.add_argument("--max-steps", type=int, default=150)
    serve.add_argument("--max-queued", type=int, default=8, help="queued + running jobs per token")
    serve.add_argument("--max-body", type=int, default=MAX_BODY_BYTES, help="largest request body in bytes")
    serve.add_argument("--keep-hours", type=float, default=24.0, help="delete finished jobs after this long")
    serve.add_argument("--data", default="zss-server", help="folder of the job store")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    new = token_sub.add_parser("new", help="append a fresh token to the token file and print it once")
    new.add_argument("--token-file", required=True)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return config_from_options(
        host=args.host,
        port=args.port,
        token_file=args.token_file,
        models=args.models,
        workers=args.workers,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        max_frames=args.max_frames,
        max_pixels=args.max_pixels,
        max_steps=args.max_steps,
        max_queued=args.max_queued,
        max_body=args.max_body,
        keep_hours=args.keep_hours,
        data=args.data,
        backend=args.backend,
        ray_address=args.ray_address,
    )


def serve(config: ServerConfig) -> None:
    try:
        import uvicorn

        from .app import create_app
    except ImportError as e:
        raise ConfigError(
            f"zss serve needs FastAPI and uvicorn ({e}); install them with: pip install 'zss-blender[serve]'"
        ) from e
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        ssl_certfile=config.tls_cert,
        ssl_keyfile=config.tls_key,
        timeout_graceful_shutdown=5,
        log_level="info",
    )


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        serve(config_from_args(args))
    except ConfigError as e:
        print(f"zss serve: error: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    try:
        token = new_token(args.token_file)
    except OSError as e:
        print(f"zss token: error: cannot write {args.token_file}: {e.strerror}", file=sys.stderr)
        return 2
    print(token)
    print(f"(appended to {args.token_file}; it is shown only this once)", file=sys.stderr)
    return 0
