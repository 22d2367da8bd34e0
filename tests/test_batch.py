"""`zss batch`: a jobs file through a real Ray cluster (in-process, `ray.shutdown()` after) and a real
`zss serve`; a second run makes only the clips that are missing."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.test_server_harness import Server
from zss_core import cli, defaults
from zss_core.batch import derived_id, read_jobs, resolve_models


def write_jobs(path, jobs: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(job) + "\n" for job in jobs)
    return str(path)


def small(seed: int, lam: float, model: str = "tiny") -> dict:
    return {"id": f"s{seed}-lam{lam}", "prompt": "mossy stone wall", "model": model, "seed": seed, "lam": lam,
            "frames": 2, "width": 64, "height": 64, "steps": 2, "device": "cpu"}  # fmt: skip


def status_of(out, job_id: str) -> str:
    with open(os.path.join(out, job_id, "job.json"), encoding="utf-8") as f:
        return json.load(f)["status"]


def frame(out, job_id: str, index: int = 1) -> np.ndarray:
    return np.asarray(Image.open(os.path.join(out, job_id, f"frame_{index:04d}.png")).convert("RGB"))


# ------------------------------------------------------------------------------------- the jobs file


def test_ids_are_stable_and_bad_files_are_refused(tmp_path, capsys):
    line = {"prompt": "a", "model": "tiny"}
    path = write_jobs(tmp_path / "a.jsonl", [line, {**line, "id": "mine"}])
    jobs = read_jobs(path)
    assert [j["id"] for j in jobs] == [derived_id(line), "mine"]
    assert read_jobs(path)[0]["id"] == jobs[0]["id"]  # the same line names the same folder every run
    assert derived_id({**line, "seed": 1}) != derived_id(line)
    cases = {
        "b.jsonl": ([{**line, "id": "x"}, {**line, "id": "x"}], "already used on line 1"),
        "c.jsonl": ([{**line, "output_dir": "/tmp"}], "leave output_dir out"),
        "d.jsonl": ([{**line, "id": "../up"}], "it names the folder"),
    }
    for name, (lines, message) in cases.items():
        bad = write_jobs(tmp_path / name, lines)
        assert cli.main(["batch", bad, "--backend", "ray", "--out", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "e.jsonl").write_text('{"prompt": "a"}\nnot json\n')
    assert cli.main(["batch", str(tmp_path / "e.jsonl"), "--backend", "ray"]) == 2
    assert "e.jsonl:2: not valid JSON" in capsys.readouterr().err


def test_model_names_resolve_as_on_the_server(tmp_path):
    jobs = [{"id": "a", "model": "textures"}, {"id": "b", "model": "/some/folder"}]
    assert [j["model"] for j in resolve_models(jobs, None)] == [defaults.DEFAULT_MODEL, "/some/folder"]
    models = tmp_path / "models.toml"
    models.write_text('[models.mine]\nmodel = "tiny"\ncontrolnet = "tiny-cn"\n')
    depth = {"id": "c", "model": "mine", "control": {"type": "depth", "images": []}}
    resolved = resolve_models([depth, {"id": "d", "model": "mine"}], str(models))
    assert resolved[0]["model"] == "tiny" and resolved[0]["controlnet_model"] == "tiny-cn"
    assert "controlnet_model" not in resolved[1]  # no depth: no ControlNet to load


# ---------------------------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_batch_resumes_only_the_missing_clips(cluster, tmp_path, capsys):
    jobs = [small(seed, lam) for seed in (1, 2) for lam in (0.01, 0.02)]
    path = write_jobs(tmp_path / "jobs.jsonl", jobs)
    out = tmp_path / "clips"
    args = ["batch", path, "--backend", "ray", "--workers", "2", "--out", str(out)]
    assert cli.main(args) == 0, capsys.readouterr().err
    assert "4 made, 0 already done, 0 failed" in capsys.readouterr().err
    ids = [j["id"] for j in jobs]
    assert [status_of(out, i) for i in ids] == ["done"] * 4
    before = {i: os.stat(out / i / "job.json").st_mtime_ns for i in ids}
    deleted, unfinished = ids[0], ids[2]
    kept_frame = frame(out, deleted)
    shutil.rmtree(out / deleted)
    manifest = out / unfinished / "job.json"  # as a run killed mid-clip leaves it
    manifest.write_text(manifest.read_text().replace('"status": "done"', '"status": "running"'))

    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "2 made, 2 already done, 0 failed" in err
    assert f"{unfinished}: unfinished clip removed" in err
    assert [status_of(out, i) for i in ids] == ["done"] * 4
    for i in ids:
        touched = os.stat(out / i / "job.json").st_mtime_ns != before[i]
        assert touched == (i in (deleted, unfinished)), i
    np.testing.assert_array_equal(frame(out, deleted), kept_frame)  # the same job makes the same clip


@pytest.mark.slow
def test_ray_batch_reports_a_bad_job_and_makes_the_rest(cluster, tmp_path, capsys):
    path = write_jobs(tmp_path / "jobs.jsonl", [small(1, 0.01), {**small(2, 0.01), "steps": 0}])
    out = tmp_path / "clips"
    assert cli.main(["batch", path, "--backend", "ray", "--workers", "1", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "1 made, 0 already done, 1 failed" in err and "s2-lam0.01 failed: " in err and "steps" in err
    assert status_of(out, "s1-lam0.01") == "done"


# ------------------------------------------------------------------------------------------- server


@pytest.mark.slow
def test_server_batch_downloads_each_clip_and_skips_done_ones(tmp_path, capsys):
    server = Server(tmp_path / "server").start()
    try:
        jobs = [small(seed, 0.01, model="plain") for seed in (1, 2)]
        path = write_jobs(tmp_path / "jobs.jsonl", jobs)
        out = tmp_path / "clips"
        args = ["batch", path, "--server", server.url, "--token", server.tokens[0], "--cafile", server.cert]
        assert cli.main([*args, "--out", str(out)]) == 0, capsys.readouterr().err
        for job in jobs:
            assert status_of(out, job["id"]) == "done"
            assert sorted(os.listdir(out / job["id"])) == [
                "clip.mp4", "contact_sheet.png", "frame_0001.png", "frame_0002.png", "job.json"
            ]  # fmt: skip
        capsys.readouterr()
        assert cli.main([*args, "--out", str(out)]) == 0
        assert "0 made, 2 already done, 0 failed" in capsys.readouterr().err
        status, listing = server.call("GET", "/v1/jobs", token=server.tokens[0])
        assert status == 200 and len(listing["jobs"]) == 2, "the second run must not submit anything"
    finally:
        server.stop()
