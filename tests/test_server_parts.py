"""The server's stdlib parts on their own: options and models.toml, the token file, the job store
(restart, deletion, --keep-hours). Fast: no subprocess, no FastAPI."""

from __future__ import annotations

import json
import os
import time

import pytest

from zss_core.server.config import ConfigError, config_from_options, is_loopback, load_models
from zss_core.server.store import JobStore
from zss_core.server.tokens import TokenSet, new_token, read_tokens, token_identity


def test_models_toml(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text('[models.a]\nmodel = "/m/a"\ncontrolnet = "/m/cn"\n\n[models.b]\nmodel = "hub/b"\n')
    a, b = load_models(str(path))
    assert (a.name, a.model, a.controlnet) == ("a", "/m/a", "/m/cn") and b.controlnet is None
    for bad, says in [
        ("[models.a]\n", "model ="),
        ('[models.a]\nmodel = "x"\npath = "y"\n', "unknown keys path"),
        ("models = 3\n", "names no models"),
        ("[models.a\n", "not valid TOML"),
    ]:
        path.write_text(bad)
        with pytest.raises(ConfigError, match=says):
            load_models(str(path))


def test_default_models_and_refusals(tmp_path):
    config = config_from_options(data=str(tmp_path), workers=2, gpus=())
    assert [(m.name, m.model, m.controlnet) for m in config.models] == [
        ("textures", "builtin:textures", "builtin:textures-depth")
    ]
    assert config.workers == 2 and config.host == "127.0.0.1"
    assert config_from_options(data=str(tmp_path), gpus=("0", "1", "2"), workers=2).gpus == ("0", "1")
    with pytest.raises(ConfigError, match="--token-file"):
        config_from_options(host="0.0.0.0", data=str(tmp_path), gpus=())
    with pytest.raises(ConfigError, match="together"):
        config_from_options(tls_cert=str(tmp_path), data=str(tmp_path), gpus=())
    with pytest.raises(ConfigError, match="max-steps"):
        config_from_options(max_steps=0, data=str(tmp_path), gpus=())
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("gpu-box")


def test_token_file(tmp_path):
    path = str(tmp_path / "tokens.txt")
    first, second = new_token(path), new_token(path)
    assert first != second and len(first) >= 40
    assert os.stat(path).st_mode & 0o777 == 0o600
    with open(path, "a") as f:
        f.write("# a comment\n\n   \n")
    assert read_tokens(path) == [first, second]
    tokens = TokenSet.from_file(path)
    assert tokens.identify(first) == token_identity(first) != tokens.identify(second)
    assert tokens.identify(first[:-1]) is None and tokens.identify("") is None
    assert TokenSet.from_file(None) is None


def frame_event(job_id, index):
    return {"type": "frame", "id": job_id, "index": index, "path": "ignored"}


def test_store_restart_keeps_finished_and_interrupts_unfinished(tmp_path):
    store = JobStore(str(tmp_path))
    running, finished = store.create("run", "alice", "tiny"), store.create("fin", "alice", "tiny")
    for job in (running, finished):
        store.commit(job)
        store.append(job.id, {"type": "accepted", "id": job.id, "queue_position": 0})
        store.append(job.id, {**frame_event(job.id, 0), "path": os.path.join(job.job_dir, "frame_0001.png")})
    store.append("fin", {"type": "done", "id": "fin", "frames": [os.path.join(finished.job_dir, "frame_0001.png")]})
    assert store.get("run", "alice").events[-1]["path"] == "frame_0001.png"  # relative: no server path
    assert store.get("run", "bob") is None  # another owner sees nothing
    with open(os.path.join(running.folder, "events.jsonl"), "a") as f:
        f.write('{"type": "progr')  # a line cut short by a crash

    again = JobStore(str(tmp_path))
    run, fin = again.get("run", "alice"), again.get("fin", "alice")
    assert run.state == "interrupted" and len(run.frames) == 1
    assert run.events[-1]["code"] == "worker_died" and "1 frame " in run.events[-1]["message"]
    assert fin.state == "done" and fin.events[-1]["type"] == "done"
    with open(os.path.join(run.folder, "state.json")) as f:
        state = json.load(f)
    assert state["state"] == "interrupted" and state["owner"] == "alice"
    assert JobStore(str(tmp_path)).get("run", "alice").events == run.events  # interrupted once only


def test_store_delete_and_expiry(tmp_path):
    store = JobStore(str(tmp_path), keep_hours=1)
    active, old, new = (store.create(i, "a", "tiny") for i in ("active", "old", "new"))
    for job in (active, old, new):
        store.commit(job)
    for job in (old, new):
        store.append(job.id, {"type": "cancelled", "id": job.id, "frames": []})
    store.get("old", "a").ended = time.time() - 7200
    assert store.expire() == ["old"] and not os.path.exists(old.folder)
    assert store.active_count("a") == 1
    store.delete(active)  # still running: the folder goes with its ending event
    assert store.get("active", "a") is None and os.path.exists(active.folder)
    store.append("active", {"type": "cancelled", "id": "active", "frames": []})
    assert not os.path.exists(active.folder)
    store.delete(store.get("new", "a"))
    assert not os.path.exists(new.folder) and store.owned("a") == []


def test_commit_refuses_past_the_owners_limit(tmp_path):
    """Parallel submits of one token: the limit is checked again when the job is added (under the lock)."""
    store = JobStore(str(tmp_path))
    first, second, other = (
        store.create("j1", "a", "tiny"),
        store.create("j2", "a", "tiny"),
        store.create("j3", "b", "tiny"),
    )
    assert store.commit(first, max_active=1)
    assert not store.commit(second, max_active=1) and store.get("j2", "a") is None
    assert store.commit(other, max_active=1)  # another token has its own count


def test_backend_options():
    ray = config_from_options(backend="ray", ray_address="auto", gpus=("0", "1"))
    assert (ray.backend, ray.ray_address, ray.ray_workers, ray.gpus) == ("ray", "auto", None, ())
    assert config_from_options(backend="ray", workers=3).ray_workers == 3  # actors, wherever Ray puts them
    assert config_from_options(workers=3, gpus=()).ray_workers is None
    with pytest.raises(ConfigError, match="--ray-address goes with --backend ray"):
        config_from_options(ray_address="auto")
    with pytest.raises(ConfigError, match="--backend must be one of local, ray"):
        config_from_options(backend="slurm")
