"""The wire format: message round trips, job validation, per-frame λ/μ (no torch needed)."""

import json
import math
import os

import pytest

from zss_core import protocol as p


@pytest.fixture
def good_job(tmp_path):
    return {"id": "clip-001", "prompt": "a red brick wall", "model": "tiny", "output_dir": str(tmp_path / "out")}


def control_images(tmp_path, n):
    paths = []
    for i in range(n):
        path = tmp_path / f"depth_{i:04d}.png"
        path.write_bytes(b"\x89PNG fake")
        paths.append(str(path))
    return paths


# ---------------------------------------------------------------- messages

MESSAGES = [
    p.Generate(job={"id": "a", "prompt": "über\u2028line\nnext", "lam": [0.0, 0.1]}),
    p.Cancel(id="a"),
    p.Ping(),
    p.Ping(id="p-1"),
    p.Shutdown(),
    p.Ready(
        protocol=1,
        versions={"python": "3.11.7", "torch": None},
        device="cuda:0",
        dtype="float16",
        gpu_free_bytes=10**10,
        gpu_total_bytes=8 * 10**10,
        pid=1234,
    ),
    p.Accepted(id="a", queue_position=2),
    p.Progress(id="a", step=3, total=30, fraction=0.1, elapsed=1.5, eta=None, stage="denoise"),
    p.Frame(id="a", index=0, path="/tmp/out/a/frame_0001.png"),
    p.Preview(id="a", step=5, steps=30, frame=4, path="/tmp/out/a/previews/step_0005.png", width=256, height=144),
    p.Heartbeat(interval=5.0, running="a", queued=1),
    p.Done(
        id="a",
        frames=["f1.png", "f2.png"],
        video=None,
        contact_sheet="sheet.png",
        manifest="job.json",
        seconds=12.5,
        model_load_seconds=3.0,
    ),
    p.Error(
        code="bad_request",
        message="1 problem: frames: ...",
        hint="fix it",
        field="frames",
        problems=[{"field": "frames", "message": "..."}],
        id="a",
    ),
    p.Error(code="internal", message="boom"),
    p.Cancelled(id="a", frames=["f1.png"], manifest=None),
    p.Pong(id="p-1"),
    p.Download(id="d1", model="org/name"),
    p.Downloaded(id="d1", model="org/name", path="/cache/x", seconds=2.5),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m.type)
def test_message_round_trip(msg):
    line = msg.to_json()
    assert "\n" not in line and "\u2028" not in line
    assert line.splitlines() == [line]
    back = p.message_from_json(line)
    assert back == msg and type(back) is type(msg)
    assert json.loads(line)["type"] == msg.type


def test_every_message_type_is_covered():
    assert {m.type for m in MESSAGES} == set(p.MESSAGES)
    assert set(p.REQUESTS) == {"generate", "cancel", "ping", "shutdown", "download"}


def test_event_lines_carry_id_and_defaults_apply():
    assert json.loads(p.Ready(1, {}, "cpu", "float32", None, None, 1).to_json())["id"] is None
    err = p.message_from_json('{"type": "error", "id": null, "code": "internal", "message": "x"}')
    assert err == p.Error(code="internal", message="x", hint="", field=None, problems=None, id=None)


def test_float_fields_accept_ints_and_become_floats():
    line = '{"type":"progress","id":"a","step":1,"total":2,"fraction":1,"elapsed":0,"eta":3,"stage":"load"}'
    ev = p.message_from_json(line)
    assert isinstance(ev.fraction, float) and isinstance(ev.eta, float)


def test_to_json_refuses_nan():
    with pytest.raises(ValueError):
        p.Progress("a", 1, 2, math.nan, 0.0, None, "denoise").to_json()


def test_expect_direction():
    assert isinstance(p.message_from_json('{"type": "ping"}', expect="request"), p.Ping)
    with pytest.raises(p.ProtocolError) as info:
        p.message_from_json('{"type": "pong", "id": null}', expect="request")
    assert info.value.field == "type"
    with pytest.raises(p.ProtocolError):
        p.message_from_json('{"type": "shutdown"}', expect="event")


PROGRESS = '"id":"a","step":1,"total":2,"fraction":0.5,"elapsed":1.0,"eta":null'
BAD_LINES = [
    ("not json", None),
    ("", None),
    ('{"type": "ping"', None),
    ("[1, 2]", None),
    ('"ping"', None),
    ('{"type": "explode"}', "type"),
    ('{"id": "x"}', "type"),
    ('{"type": 5}', "type"),
    ('{"type": ["generate"]}', "type"),
    ('{"type": "cancel"}', "id"),
    ('{"type": "cancel", "id": 5}', "id"),
    ('{"type": "generate"}', "job"),
    ('{"type": "generate", "job": []}', "job"),
    ('{"type": "ping", "extra": 1}', "extra"),
    ('{"type": "progress", ' + PROGRESS.replace('"step":1', '"step":1.0') + ', "stage": "denoise"}', "step"),
    ('{"type": "progress", ' + PROGRESS + ', "stage": "warp"}', "stage"),
    ('{"type": "error", "id": null, "code": "oops", "message": "x"}', "code"),
    (
        '{"type": "done", "id": "a", "frames": [1], "video": null, "contact_sheet": null, '
        '"manifest": "m", "seconds": 1, "model_load_seconds": 0}',
        "frames[0]",
    ),
    ('{"type": "ready", "protocol": 1}', "versions"),
]


@pytest.mark.parametrize("line,field", BAD_LINES)
def test_bad_lines_raise_protocol_error(line, field):
    with pytest.raises(p.ProtocolError) as info:
        p.message_from_json(line)
    assert isinstance(info.value, ValueError)
    assert info.value.field == field


def test_overlong_and_binary_lines():
    with pytest.raises(p.ProtocolError, match="limit"):
        p.message_from_json('{"type": "ping", "id": "' + "x" * p.MAX_LINE_BYTES + '"}')
    with pytest.raises(p.ProtocolError):
        p.message_from_json(b"\xff\xfe{")
    assert p.message_from_json(b'{"type": "ping"}') == p.Ping()


# --------------------------------------------------------------------- jobs


def test_good_job_validates_and_round_trips(good_job, tmp_path):
    assert p.validate_job(good_job) == []
    job = p.Job.from_dict(good_job)
    assert (job.frames, job.width, job.steps, job.guidance, job.lam, job.mu) == (8, 512, 30, 7.5, 0.01, 0.98)
    d = job.to_dict()
    assert set(d) == set(p._JOB_FIELDS)
    assert p.Job.from_dict(json.loads(json.dumps(d))) == job
    assert job.job_dir() == os.path.join(str(tmp_path / "out"), "clip-001")


def test_full_job_round_trips(good_job, tmp_path):
    images = control_images(tmp_path, 4)
    good_job.update(
        frames=4,
        width=64,
        height=96,
        guidance=3,
        lam=[0.0, 0.1, 0.2, 0.3],
        mu=[0.5, 0.6, 0.7],
        controlnet_model="lllyasviel/control_v11f1p_sd15_depth",
        chunk=2,
        fps=12,
        control={"type": "depth", "images": images, "scale": 0.5},
        outputs={"mp4": False},
        device="cuda:1",
        dtype="bfloat16",
        scheduler="euler_a",
    )
    assert p.validate_job(good_job) == []
    job = p.Job.from_dict(good_job)
    assert job.control == p.Control(images=images, type="depth", scale=0.5)
    assert job.outputs == p.Outputs(frames=True, mp4=False, contact_sheet=True)
    assert isinstance(job.guidance, float) and job.lam == [0.0, 0.1, 0.2, 0.3]
    d = job.to_dict()
    assert d["control"] == {"images": images, "type": "depth", "scale": 0.5}
    assert d["outputs"] == {"frames": True, "mp4": False, "contact_sheet": True}
    assert p.Job.from_dict(json.loads(json.dumps(d))).to_dict() == d


def test_from_dict_raises_with_every_problem(good_job):
    good_job.update(frames=0, width=65)
    with pytest.raises(p.ProtocolError) as info:
        p.Job.from_dict(good_job)
    assert [pr.field for pr in info.value.problems] == ["frames", "width"]
    assert info.value.field == "frames"


def test_five_problems_reported_at_once(good_job):
    good_job.update(frames=True, width=65, scheduler="ddpm", fps2=30)
    del good_job["prompt"]
    problems = p.validate_job(good_job)
    assert sorted(pr.field for pr in problems) == ["fps2", "frames", "prompt", "scheduler", "width"]
    assert all(pr.message for pr in problems)


def test_messages_say_what_is_allowed(good_job):
    good_job["frames"] = 0
    [problem] = p.validate_job(good_job)
    assert problem.message == "frames must be an integer from 1 to 1024, got 0"
    good_job["frames"] = 8
    good_job["fps2"] = 30
    [problem] = p.validate_job(good_job)
    assert "unknown field 'fps2'" in problem.message and "'fps'" in problem.message


def test_error_for_problems(good_job):
    good_job.update(frames=0, width=65, steps=0)
    problems = p.validate_job(good_job)
    err = p.error_for_problems("clip-001", problems)
    assert err.code == "bad_request" and err.id == "clip-001" and err.field == "frames"
    assert err.message.startswith("3 problems: frames: ")
    assert "; width: " in err.message and "; steps: " in err.message
    assert err.hint == "Fix the listed fields and send the job again."
    assert err.problems == [{"field": pr.field, "message": pr.message} for pr in problems]
    assert p.message_from_json(err.to_json()) == err


def test_nan_literal_in_a_generate_line_is_caught_by_validation(good_job):
    line = p.Generate(job=good_job).to_json().replace('"model"', '"lam": NaN, "guidance": Infinity, "model"')
    msg = p.message_from_json(line)  # Python's json accepts NaN; the job check must not
    assert isinstance(msg, p.Generate)
    assert sorted(pr.field for pr in p.validate_job(msg.job)) == ["guidance", "lam"]


def _file_as_output_parent(tmp):
    (tmp / "a_file").write_text("x")
    return {"output_dir": str(tmp / "a_file" / "out")}


def _file_as_output_dir(tmp):
    (tmp / "a_file").write_text("x")
    return {"output_dir": str(tmp / "a_file")}


def _control(tmp, n=8, **extra):
    return {"controlnet_model": "cn", "control": {"images": control_images(tmp, n), **extra}}


def _missing_image(tmp):
    d = _control(tmp)
    os.remove(d["control"]["images"][3])
    return d


def _directory_image(tmp):
    d = _control(tmp)
    d["control"]["images"][0] = str(tmp)
    return d


DELETE = object()
BAD_JOBS = [
    ({"frames": True}, "frames"),
    ({"frames": 8.0}, "frames"),
    ({"frames": "8"}, "frames"),
    ({"frames": 0}, "frames"),
    ({"frames": -1}, "frames"),
    ({"frames": 10**9}, "frames"),
    ({"width": 65}, "width"),
    ({"width": 56}, "width"),
    ({"height": 4096}, "height"),
    ({"height": 512.0}, "height"),
    ({"steps": 0}, "steps"),
    ({"steps": 10**6}, "steps"),
    ({"guidance": -1}, "guidance"),
    ({"guidance": "7.5"}, "guidance"),
    ({"guidance": True}, "guidance"),
    ({"guidance": math.nan}, "guidance"),
    ({"guidance": math.inf}, "guidance"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**63}, "seed"),
    ({"lam": math.nan}, "lam"),
    ({"lam": -math.inf}, "lam"),
    ({"lam": math.inf}, "lam"),
    ({"lam": -0.5}, "lam"),
    ({"lam": "0.1"}, "lam"),
    ({"lam": [0.1] * 5}, "lam"),
    ({"lam": [0.1, 0.1, math.nan, 0.1, 0.1, 0.1, 0.1]}, "lam[2]"),
    ({"lam": [0.1] * 2000}, "lam"),
    ({"mu": 1.5}, "mu"),
    ({"mu": [0.5] * 6 + [-0.1]}, "mu[6]"),
    ({"mu": [0.5] * 3}, "mu"),
    ({"noise": "gaussian"}, "noise"),
    ({"search": "grid"}, "search"),
    ({"scheduler": "ddpm"}, "scheduler"),
    ({"dtype": "float64"}, "dtype"),
    ({"device": "gpu"}, "device"),
    ({"device": "cuda:x"}, "device"),
    ({"candidates": 0}, "candidates"),
    ({"chunk": 0}, "chunk"),
    ({"chunk": 2.0}, "chunk"),
    ({"fps": 0.5}, "fps"),
    ({"fps": 1000}, "fps"),
    ({"id": "../x"}, "id"),
    ({"id": "a/b"}, "id"),
    ({"id": ""}, "id"),
    ({"id": ".hidden"}, "id"),
    ({"id": "x" * 65}, "id"),
    ({"id": "abc\n"}, "id"),
    ({"id": 5}, "id"),
    ({"id": DELETE}, "id"),
    ({"prompt": DELETE}, "prompt"),
    ({"model": DELETE}, "model"),
    ({"output_dir": DELETE}, "output_dir"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x" * 5000}, "prompt"),
    ({"prompt": None}, "prompt"),
    ({"negative_prompt": "x" * 2001}, "negative_prompt"),
    ({"model": ""}, "model"),
    ({"fps2": 30}, "fps2"),
    ({"outputs": {"mp4": 1}}, "outputs.mp4"),
    ({"outputs": {"gif": True}}, "outputs.gif"),
    ({"outputs": "all"}, "outputs"),
    ({"control": {"images": []}}, "controlnet_model"),
    ({"controlnet_model": "cn", "control": "depth"}, "control"),
    ({"controlnet_model": "cn", "control": {"type": "depth"}}, "control.images"),
    ({"controlnet_model": "cn", "control": {"images": ["x"] * 2000}}, "control.images"),
    (lambda tmp: _control(tmp, n=5), "control.images"),
    (_missing_image, "control.images[3]"),
    (_directory_image, "control.images[0]"),
    (lambda tmp: _control(tmp, type="canny"), "control.type"),
    (lambda tmp: _control(tmp, scale=99), "control.scale"),
    (lambda tmp: _control(tmp, strength=1), "control.strength"),
    (_file_as_output_dir, "output_dir"),
    (_file_as_output_parent, "output_dir"),
    ({"output_dir": ""}, "output_dir"),
    ({"output_dir": "/tmp/a\0b"}, "output_dir"),
]


@pytest.mark.parametrize("patch,field", BAD_JOBS)
def test_bad_job_names_the_field(patch, field, good_job, tmp_path):
    if callable(patch):
        patch = patch(tmp_path)
    job = {**good_job, **patch}
    job = {k: v for k, v in job.items() if v is not DELETE}
    problems = p.validate_job(job)
    assert field in [pr.field for pr in problems], problems
    assert all(isinstance(pr.message, str) and len(pr.message) < 1000 for pr in problems)
    line = json.dumps({"type": "generate", "job": job}, allow_nan=True)
    assert p.validate_job(p.message_from_json(line).job) == problems  # same verdict after the wire


def test_job_that_is_not_an_object():
    assert [pr.field for pr in p.validate_job([1, 2])] == ["job"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write to a 0o500 folder")
def test_output_dir_not_writable(good_job, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        for path in (locked, locked / "new"):
            problems = p.validate_job({**good_job, "output_dir": str(path)})
            assert [pr.field for pr in problems] == ["output_dir"]
            assert "not writable" in problems[0].message
    finally:
        locked.chmod(0o700)


def test_output_dir_existing_or_nested_new_is_fine(good_job, tmp_path):
    assert p.validate_job({**good_job, "output_dir": str(tmp_path)}) == []
    assert p.validate_job({**good_job, "output_dir": str(tmp_path / "a" / "b" / "c")}) == []


def test_control_image_unreadable(good_job, tmp_path):
    if os.name != "posix" or os.geteuid() == 0:
        pytest.skip("root can read a 0o000 file")
    d = {**good_job, **_control(tmp_path)}
    os.chmod(d["control"]["images"][2], 0)
    assert [pr.field for pr in p.validate_job(d)] == ["control.images[2]"]


# ----------------------------------------------------------------- per frame


def _job(good_job, **kw):
    return p.Job.from_dict({**good_job, **kw})


def test_per_frame_scalar(good_job):
    job = _job(good_job, frames=4, lam=0.2, mu=0.9)
    assert job.lam_per_frame() == [0.0, 0.2, 0.2, 0.2]
    assert job.mu_per_frame() == [0.0, 0.9, 0.9, 0.9]


def test_per_frame_full_length_ignores_entry_zero(good_job):
    job = _job(good_job, frames=4, lam=[9.0, 0.1, 0.2, 0.3], mu=[1, 0.5, 0.6, 0.7])
    assert job.lam_per_frame() == [0.0, 0.1, 0.2, 0.3]
    assert job.mu_per_frame() == [0.0, 0.5, 0.6, 0.7]


def test_per_frame_transitions(good_job):
    job = _job(good_job, frames=4, lam=[0.1, 0.2, 0.3], mu=[0.5, 0.6, 0.7])
    assert job.lam_per_frame() == [0.0, 0.1, 0.2, 0.3]
    assert job.mu_per_frame() == [0.0, 0.5, 0.6, 0.7]


def test_per_frame_single_frame(good_job):
    assert _job(good_job, frames=1, lam=0.5).lam_per_frame() == [0.0]
    assert _job(good_job, frames=1, mu=[]).mu_per_frame() == [0.0]


def test_per_frame_rejects_wrong_length_on_a_hand_built_job(good_job):
    job = p.Job(**{**good_job, "frames": 4, "lam": [0.1, 0.2]})
    with pytest.raises(ValueError, match="lam"):
        job.lam_per_frame()


# ------------------------------------------------- loops, tiling, prompt travel


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"loop": "yes"}, "loop"),
        ({"tile_x": 1}, "tile_x"),
        ({"tile_y": None}, "tile_y"),
        ({"prompt_interpolation": "cubic"}, "prompt_interpolation"),
        ({"prompts": []}, "prompts"),
        ({"prompts": "a"}, "prompts"),
        ({"prompts": [{"frame": 8, "prompt": "x"}]}, "prompts[0].frame"),
        ({"prompts": [{"frame": -1, "prompt": "x"}]}, "prompts[0].frame"),
        ({"prompts": [{"frame": 2, "prompt": ""}]}, "prompts[0].prompt"),
        ({"prompts": [{"frame": 2, "prompt": "a"}, {"frame": 2, "prompt": "b"}]}, "prompts[1].frame"),
        ({"prompts": [{"frame": 2, "text": "a"}]}, "prompts[0].text"),
        ({"prompts": ["a"]}, "prompts[0]"),
    ],
)
def test_loop_tile_and_travel_fields_are_validated(good_job, extra, field):
    problems = p.validate_job({**good_job, **extra})
    assert field in [q.field for q in problems], problems


def test_prompt_schedule(good_job):
    assert _job(good_job).prompt_schedule() == [(0, "a red brick wall")]
    job = _job(good_job, frames=8, prompts=[{"frame": 6, "prompt": "sea"}, {"frame": 3, "prompt": "sand"}])
    assert job.prompt_schedule() == [(0, "a red brick wall"), (3, "sand"), (6, "sea")]
    job = _job(good_job, prompts=[{"frame": 0, "prompt": "first"}])
    assert job.prompt_schedule() == [(0, "first")]
    assert p.Job.from_dict(job.to_dict()) == job


def test_fields_with_default_factories_may_be_omitted_on_the_wire():
    done = p.message_from_json(
        '{"type": "done", "id": "a", "frames": [], "video": null, "contact_sheet": null, '
        '"manifest": "m", "seconds": 1, "model_load_seconds": 0}'
    )
    assert done.notes == [] and done.seconds == 1.0
    assert p.message_from_json(
        p.Done(
            id="a",
            frames=[],
            video=None,
            contact_sheet=None,
            manifest="m",
            seconds=1.0,
            model_load_seconds=0.0,
            notes=["retried"],
        ).to_json()
    ).notes == ["retried"]


def test_download_request_needs_its_model():
    with pytest.raises(p.ProtocolError):
        p.message_from_json('{"type": "download", "id": "d1"}', expect="request")


def test_stdlib_modules_import_without_torch():
    """protocol, schedule and defaults run in Blender's Python, which has no torch or numpy."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['numpy'] = None\n"
        "from zss_core import defaults, protocol, schedule\n"
        "assert protocol.per_frame is schedule.per_frame\n"
        "assert protocol.NOISE_MODELS == defaults.NOISE_MODELS\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]),
    )
    assert result.returncode == 0, result.stderr


def _job_problems(good_job, **kw):
    return p.validate_job({**good_job, **kw})


def test_validation_follows_the_shared_limits(good_job):
    from zss_core import defaults

    too_big = _job_problems(good_job, width=defaults.MAX_SIZE + defaults.SIZE_MULTIPLE)
    assert [p.field for p in too_big] == ["width"] and str(defaults.MAX_SIZE) in too_big[0].message
    assert [p.field for p in _job_problems(good_job, steps=defaults.MAX_STEPS + 1)] == ["steps"]
    assert _job_problems(good_job, steps=defaults.MAX_STEPS) == []
    assert [p.field for p in _job_problems(good_job, frames=defaults.MAX_FRAMES + 1)] == ["frames"]
    for name in defaults.NOISE_MODELS:
        assert _job_problems(good_job, noise=name) == []


# ------------------------------------------------------------ hostile lines (issue 12)


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ('{"type": "ping", "id": "\\ud800"}', "id", "lone surrogate"),
        ('{"type": "cancel", "id": "a\\udc00"}', "id", "lone surrogate"),
        ('{"type": "download", "id": "d", "model": "\\udfff"}', "model", "lone surrogate"),
        ('{"type": "\\ud800"}', "type", "unknown request type"),
        (b'{"type": "ping", "id": "\xff"}', None, "not valid UTF-8: byte 0xff at offset 24"),
        (b'{"type": "ping", "id": "\xed\xa0\x80"}', None, "not valid UTF-8"),
        ('{"type": "ping", "id": ' + "[" * 990 + "]" * 990 + "}", None, "32 levels"),
        ('{"type": "ping", "id": ' + "[" * 100_000 + "]" * 100_000 + "}", None, "nested too deeply"),
        ('{"type": "generate", "job": ' + '{"a": ' * 40 + "1" + "}" * 41, None, "32 levels"),
    ],
)
def test_hostile_request_lines_are_refused_naming_the_field(line, field, words):
    with pytest.raises(p.ProtocolError) as info:
        p.message_from_json(line, expect="request")
    assert info.value.field == field and words in str(info.value)


def test_nesting_up_to_the_limit_and_wide_lists_are_fine():
    def line(lists):  # the line's object and the job's are 2 levels, then `lists` nested lists
        return '{"type": "generate", "job": {"a": ' + "[" * lists + "]" * lists + "}}"

    assert p.message_from_json(line(p.MAX_DEPTH - 2)).type == "generate"
    with pytest.raises(p.ProtocolError, match="levels"):
        p.message_from_json(line(p.MAX_DEPTH - 1))
    wide = {"type": "generate", "job": {"lam": [[0.1]] * 5000}}
    assert p.message_from_json(json.dumps(wide)).job["lam"][0] == [0.1]


def test_events_with_lone_surrogates_are_written_as_ascii_and_read_back():
    """Defect 2: a model path with a lone surrogate (a Latin-1 file name) must not make the event unwritable."""
    error = p.Error(id="j", code="model_not_found", field="model", message="no model at /m/caf\udce9\ud800")
    line = error.to_json()
    line.encode("utf-8")  # strict: would raise before the fix
    assert line.isascii() and p.message_from_json(line, expect="event") == error
    assert p.Pong(id="café").to_json() == '{"type": "pong", "id": "café"}'  # others stay readable


def test_a_prompt_with_a_lone_surrogate_is_refused_naming_it(good_job):
    problems = p.validate_job(
        {**good_job, "prompt": "a \ud800", "negative_prompt": "\udc80", "prompts": [{"frame": 0, "prompt": "x\ud801"}]}
    )
    assert [q.field for q in problems] == ["prompt", "negative_prompt", "prompts[0].prompt"]
    assert all("lone surrogate" in q.message for q in problems)
    assert p.validate_job({**good_job, "model": "/models/caf\udce9"}) == []  # paths may spell non-UTF-8 names


def test_heartbeat_round_trips_and_carries_no_job_id():
    beat = p.Heartbeat(interval=5.0, running="clip-1", queued=2)
    assert p.message_from_json(beat.to_json(), expect="event") == beat and beat.id is None
    assert "worker_stalled" in p.ERROR_CODES


def test_restyle_and_lora_fields_round_trip(good_job, tmp_path):
    init = control_images(tmp_path, 4)
    job = _job(good_job, frames=4, init=init, strength=0.6, image_guidance=1, loras=[{"path": "style.safetensors"}])
    assert (job.strength, job.image_guidance, job.loras) == (0.6, 1.0, [{"path": "style.safetensors", "weight": 1.0}])
    assert p.Job.from_dict(job.to_dict()) == job


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"init": "frames/"}, "init"),
        ({"init": ["a.png"]}, "init"),  # 1 image for 4 frames (and the file is missing)
        ({"strength": 1.5}, "strength"),
        ({"strength": 0.5}, "strength"),  # below 1 without init
        ({"image_guidance": 1.5}, "init"),  # instruction editing without source frames
        ({"loras": [{"weight": 1}]}, "loras[0].path"),
        ({"loras": [{"path": "x", "weight": 9}]}, "loras[0].weight"),
        ({"loras": [{"path": "x", "scale": 1}]}, "loras[0].scale"),
        ({"preview_every": -1}, "preview_every"),
    ],
)
def test_new_fields_name_what_is_wrong(patch, field, good_job):
    fields = [pr.field for pr in _job_problems(good_job, frames=4, **patch)]
    assert field in fields, fields


def test_init_names_the_missing_frame(good_job, tmp_path):
    init = [*control_images(tmp_path, 3), str(tmp_path / "gone.png")]
    fields = [pr.field for pr in _job_problems(good_job, frames=4, init=init, strength=0.5)]
    assert fields == ["init[3]"]
