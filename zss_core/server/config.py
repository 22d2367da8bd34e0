"""The server's settings: command-line options and models.toml, checked once into a frozen ServerConfig."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import tomllib

from .. import defaults
from ..remote import is_loopback

DEFAULT_PORT = 7860
BACKENDS = ("local", "ray")
MAX_BODY_BYTES = 16 * 1024 * 1024  # the protocol's longest line: depth maps of a long clip fit, a flood does not


class ConfigError(ValueError):
    """A setting the server cannot start with; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One name a client may ask for: the server's model (folder, .safetensors or hub id) and ControlNet."""

    name: str
    model: str
    controlnet: str | None = None
    family: str = "sd1"


@dataclasses.dataclass(frozen=True)
class LoraEntry:
    """A LoRA a client may ask for by name (``loras[i].path``): the server's file, folder or hub id."""

    name: str
    path: str


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token_file: str | None = None
    models: tuple[ModelEntry, ...] = ()
    loras: tuple[LoraEntry, ...] = ()  # [loras.NAME] tables of the models file
    workers: int = 1
    gpus: tuple[str, ...] = ()  # CUDA_VISIBLE_DEVICES of each worker; empty: `workers` CPU workers
    tls_cert: str | None = None
    tls_key: str | None = None
    max_frames: int = 256
    max_pixels: int = 1024 * 1024  # width × height of one frame
    max_steps: int = 150
    max_queued: int = 8  # queued + running jobs of one token
    max_body: int = MAX_BODY_BYTES
    keep_hours: float = 24.0
    data: str = "zss-server"
    backend: str = "local"  # where jobs run: "local" worker processes or "ray" actors (ray_backend.py)
    ray_address: str | None = None  # None: start a local Ray cluster; "auto" or host:port: join one
    ray_workers: int | None = None  # actors; None: one per GPU of the cluster, else 1

    def model(self, name: str) -> ModelEntry | None:
        return next((m for m in self.models if m.name == name), None)

    def lora(self, name: str) -> LoraEntry | None:
        return next((m for m in self.loras if m.name == name), None)


def builtin_models() -> tuple[ModelEntry, ...]:
    """Without models.toml: the shipped texture model and its depth ControlNet, as `textures`."""
    model = defaults.DEFAULT_MODEL
    return (ModelEntry("textures", model, defaults.default_controlnet(model) or None),)


def read_models_file(path: str) -> dict[str, Any]:
    """The models file's TOML, read once for its models and its LoRAs."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read the models file {path}: {e.strerror}; pass an existing --models file") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e


def load_models(path: str, data: dict[str, Any] | None = None) -> tuple[ModelEntry, ...]:
    """`[models.NAME]` tables with `model = "..."` and optional `controlnet = "..."` (``data``: the
    file's TOML when the caller has read it)."""
    if data is None:
        data = read_models_file(path)
    tables = data.get("models")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f'{path} names no models; add a table like [models.mine] with model = "/path/to/model"')
    entries = []
    for name, table in tables.items():
        where = f"{path}: [models.{name}]"
        if not isinstance(table, dict) or not isinstance(table.get("model"), str) or not table["model"]:
            raise ConfigError(f'{where} needs model = "<folder, .safetensors file or hub id>"')
        unknown = sorted(set(table) - {"model", "controlnet"})
        if unknown:
            raise ConfigError(f"{where} has unknown keys {', '.join(unknown)}; allowed: model, controlnet")
        controlnet = table.get("controlnet")
        if controlnet is not None and (not isinstance(controlnet, str) or not controlnet):
            raise ConfigError(f"{where}: controlnet must be a non-empty string (or left out)")
        entries.append(ModelEntry(name, table["model"], controlnet))
    return tuple(entries)


def load_loras(path: str, data: dict[str, Any] | None = None) -> tuple[LoraEntry, ...]:
    """`[loras.NAME]` tables with `path = "..."` (a LoRA .safetensors file, a folder or a hub id); optional.
    Clients name these LoRAs; a server never loads a path a client sends. ``data`` as in load_models."""
    if data is None:
        data = read_models_file(path)
    tables = data.get("loras", {})
    if not isinstance(tables, dict):
        raise ConfigError(f'{path}: loras must be tables like [loras.style] with path = "/path/to/lora.safetensors"')
    entries = []
    for name, table in tables.items():
        where = f"{path}: [loras.{name}]"
        if not isinstance(table, dict) or not isinstance(table.get("path"), str) or not table["path"]:
            raise ConfigError(f'{where} needs path = "<LoRA .safetensors file, folder or hub id>"')
        unknown = sorted(set(table) - {"path"})
        if unknown:
            raise ConfigError(f"{where} has unknown keys {', '.join(unknown)}; allowed: path")
        entries.append(LoraEntry(name, table["path"]))
    return tuple(entries)


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"--{name.replace('_', '-')} must be greater than 0, got {value}")


def config_from_options(
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token_file: str | None = None,
    models: str | None = None,
    workers: int | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    max_frames: int = 256,
    max_pixels: int = 1024 * 1024,
    max_steps: int = 150,
    max_queued: int = 8,
    max_body: int = MAX_BODY_BYTES,
    keep_hours: float = 24.0,
    data: str = "zss-server",
    gpus: tuple[str, ...] | None = None,
    backend: str = "local",
    ray_address: str | None = None,
) -> ServerConfig:
    """Check the options; refuses an open address without tokens and half a TLS setup."""
    if not is_loopback(host) and token_file is None:
        raise ConfigError(
            f"refusing to listen on {host} without --token-file: anyone who can reach it could use the GPU. "
            "Make a token with `zss token new --token-file FILE` and pass --token-file FILE."
        )
    if token_file is not None and not os.path.isfile(token_file):
        raise ConfigError(
            f"token file {token_file} not found; create one with `zss token new --token-file {token_file}`"
        )
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together: pass both (or neither, behind a reverse proxy)")
    for path in (tls_cert, tls_key):
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"TLS file {path} not found")
    for name, value in (
        ("max_frames", max_frames),
        ("max_pixels", max_pixels),
        ("max_steps", max_steps),
        ("max_queued", max_queued),
        ("max_body", max_body),
        ("keep_hours", keep_hours),
    ):
        _positive(name, value)
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if ray_address is not None and backend != "ray":
        raise ConfigError("--ray-address goes with --backend ray")
    if backend == "ray":
        gpus = ()  # Ray places the actors on the cluster's GPUs; this machine's do not count
    if gpus is None:
        gpus = detect_gpus()
    if workers is not None:
        _positive("workers", workers)
        gpus = gpus[:workers] if gpus else ()
    count = len(gpus) if gpus else (workers or 1)
    if models:
        toml = read_models_file(models)
        model_entries, lora_entries = load_models(models, toml), load_loras(models, toml)
    else:
        model_entries, lora_entries = builtin_models(), ()
    return ServerConfig(
        host=host,
        port=port,
        token_file=token_file,
        models=model_entries,
        loras=lora_entries,
        workers=count,
        gpus=tuple(gpus),
        tls_cert=tls_cert,
        tls_key=tls_key,
        max_frames=max_frames,
        max_pixels=max_pixels,
        max_steps=max_steps,
        max_queued=max_queued,
        max_body=max_body,
        keep_hours=keep_hours,
        data=os.path.abspath(data),
        backend=backend,
        ray_address=ray_address,
        ray_workers=workers if backend == "ray" else None,
    )


def detect_gpus() -> tuple[str, ...]:
    """The GPUs one worker each gets: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists (none: CPU)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return tuple(v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1")
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(line.strip() for line in out.stdout.splitlines() if line.strip().isdigit())
