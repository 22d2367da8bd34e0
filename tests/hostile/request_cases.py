"""Hostile request lines: broken framing, bad encodings, surrogates in everything echoed back, deep nesting,
oversize lines, wrong types, and the schedulers a job may name (issue 12, defects 1, 2, 5, 6, 8, 10).

Each case sends what a broken or hostile client would and checks the worker answered it cleanly: a
`bad_request` (or the documented error) naming the field, with a hint, and nothing left behind; the
harness then checks the worker still answers a ping.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

from tests.hostile.harness import Case, Harness, expect_error
from zss_core import defaults, protocol

Check = Callable[[Harness], "str | None"]
OVERSIZE_LINE_BYTES = 40 * 1024 * 1024  # 2.5 × the 16 MB limit; small enough to send in a second


def line(obj: Any) -> bytes:
    """One request line as a client would write it (JSON escapes for anything non-ASCII, surrogates too)."""
    return json.dumps(obj).encode("ascii")


def generate_line(job: dict[str, Any]) -> bytes:
    return line({"type": "generate", "job": job})


def refused(data: bytes, field: str | None = None, contains: str = "") -> Check:
    """The line is answered by one bad_request (naming `field`), and the worker goes on."""
    return lambda h: expect_error(h.answers(data), "bad_request", field, contains)


def answered_alone(data: bytes, want: Callable[[list[protocol.Message]], bool], what: str) -> Check:
    def run(h: Harness) -> str | None:
        events = h.answers(data)
        return None if want(events) else f"expected {what}, got {[e.to_dict() for e in events]}"[:300]

    return run


def pong(value: str) -> Check:
    """A ping whose id the worker must echo back exactly."""
    return answered_alone(
        line({"type": "ping", "id": value}),
        lambda events: [(e.type, getattr(e, "id", None)) for e in events] == [("pong", value)],
        f"a pong echoing {value!r}",
    )


def job_refused(field: str, contains: str = "", **overrides: Any) -> Check:
    """A job with `overrides` is refused at validation naming `field`, and leaves nothing behind."""

    def run(h: Harness) -> str | None:
        job = h.job(**overrides)
        problem = expect_error(h.answers(generate_line(job)), "bad_request", field, contains)
        left = h.leftovers(job["id"])
        return problem or (f"a refused job left {left}" if left else None)

    return run


def nested(depth: int, leaf: Any = 1) -> str:
    """JSON text of `depth` nested lists around `leaf` (built as text: Python's json would recurse)."""
    return "[" * depth + json.dumps(leaf) + "]" * depth


# ------------------------------------------------------------------------------- surrogates and UTF-8

SURROGATE = "\ud800"
LATIN1_ESCAPED = "\udce9"  # how Python spells the Latin-1 byte é of a file name (surrogateescape)


def surrogate_model_then_queued_job(h: Harness) -> str | None:
    """Defect 2: a model path with a lone surrogate is model_not_found, and the job queued behind it runs."""
    bad = h.job(model=str(h.tmp / f"model-{LATIN1_ESCAPED}{SURROGATE}"))
    good = h.job()
    h.send_line(generate_line(bad))
    h.submit(good)
    first = h.wait(bad["id"], timeout=60)
    if not isinstance(first, protocol.Error) or first.code != "model_not_found" or first.field != "model":
        return f"the bad model path gave {first.to_dict()}"[:300]
    second = h.wait(good["id"], timeout=120)
    if second.type != "done":
        return f"the job queued behind it ended {second.to_dict()}"[:300]
    return None


def echo_cases() -> list[Case]:
    cat = "surrogates"
    return [
        Case("ping id with a lone surrogate", cat, refused(line({"type": "ping", "id": SURROGATE}), "id")),
        Case("ping id with a low surrogate", cat, refused(line({"type": "ping", "id": "a\udc00b"}), "id")),
        Case("cancel id with a lone surrogate", cat, refused(line({"type": "cancel", "id": SURROGATE}), "id")),
        Case("type with a lone surrogate", cat, refused(line({"type": SURROGATE}), "type")),
        Case("unknown field named by a lone surrogate", cat, refused(line({"type": "ping", SURROGATE: 1}))),
        Case(
            "download model with a lone surrogate",
            cat,
            refused(line({"type": "download", "id": "dl-1", "model": SURROGATE}), "model"),
        ),
        Case("prompt with a lone surrogate", cat, job_refused("prompt", prompt="a wall " + SURROGATE)),
        Case(
            "negative prompt with a lone surrogate",
            cat,
            job_refused("negative_prompt", negative_prompt=SURROGATE),
        ),
        Case(
            "travel prompt with a lone surrogate",
            cat,
            job_refused("prompts[0].prompt", prompts=[{"frame": 0, "prompt": SURROGATE}]),
        ),
        Case("unknown job field named by a lone surrogate", cat, job_refused(SURROGATE, **{SURROGATE: 1})),
        Case("job id with a lone surrogate", cat, job_refused("id", id="a" + SURROGATE)),
        Case("model path with a lone surrogate, then a queued job", cat, surrogate_model_then_queued_job),
        Case("ping id with U+2028 comes back whole", cat, pong("a\u2028b\u2029c\x85d")),
        Case("ping id outside the BMP comes back whole", cat, pong("🎞️ clip é")),
    ]


def utf8_cases() -> list[Case]:
    cat = "utf-8"
    return [
        Case("invalid UTF-8 byte in a ping id", cat, refused(b'{"type":"ping","id":"\xff\xfe"}', None, "UTF-8")),
        Case("truncated UTF-8 sequence", cat, refused(b'{"type":"ping","id":"\xe2\x82"}', None, "UTF-8")),
        Case("UTF-8-encoded surrogate (CESU-8)", cat, refused(b'{"type":"ping","id":"\xed\xa0\x80"}', None, "UTF-8")),
        Case("overlong UTF-8 encoding", cat, refused(b'{"type":"ping","id":"\xc0\xaf"}', None, "UTF-8")),
        Case("Latin-1 prompt bytes", cat, lambda h: invalid_utf8_job(h)),
        Case(
            "byte-order mark before a ping",
            cat,
            answered_alone(
                b'\xef\xbb\xbf{"type":"ping","id":"bom"}',
                lambda events: [e.type for e in events] in (["pong"], ["error"]),
                "a pong or one bad_request",
            ),
        ),
    ]


def invalid_utf8_job(h: Harness) -> str | None:
    job = h.job()
    data = generate_line(job).replace(b'"a brick wall"', b'"caf\xe9 wall"')
    problem = expect_error(h.answers(data), "bad_request", None, "UTF-8")
    left = h.leftovers(job["id"])
    return problem or (f"left {left}" if left else None)


# -------------------------------------------------------------------------------- framing and types


def framing_cases() -> list[Case]:
    cat = "framing"
    return [
        Case("not JSON", cat, refused(b"hello worker", None, "JSON")),
        Case("truncated JSON", cat, refused(b'{"type":"ping"', None, "JSON")),
        Case("NUL bytes", cat, refused(b"\x00\x00\x00")),
        Case("a JSON array", cat, refused(b'[{"type":"ping"}]', None, "object")),
        Case("a JSON string", cat, refused(b'"ping"', None, "object")),
        Case("a JSON number", cat, refused(b"42", None, "object")),
        Case("JSON null", cat, refused(b"null", None, "object")),
        Case("an empty object", cat, refused(b"{}", "type")),
        Case("unknown type", cat, refused(line({"type": "explode"}), "type")),
        Case("type is a number", cat, refused(line({"type": 5}), "type")),
        Case("unknown field in a ping", cat, refused(line({"type": "ping", "x": 1}), "x")),
        Case("ping id NaN", cat, refused(b'{"type":"ping","id":NaN}', "id")),
        Case("ping id is an object", cat, refused(line({"type": "ping", "id": {"a": 1}}), "id")),
        Case("cancel without an id", cat, refused(line({"type": "cancel"}), "id")),
        Case(
            "cancel of an unknown job",
            cat,
            lambda h: expect_error(h.answers(line({"type": "cancel", "id": "nobody"})), "unknown_job", "id"),
        ),
        Case("generate without a job", cat, refused(line({"type": "generate"}), "job")),
        Case("generate with a list for a job", cat, refused(line({"type": "generate", "job": []}), "job")),
        Case("job with Infinity guidance", cat, job_refused("guidance", guidance=float("inf"))),
        Case("only whitespace", cat, answered_alone(b"   \t ", lambda events: events == [], "no answer")),
        Case("CRLF line ending", cat, pong_crlf),
        Case("two thousand pings in one write", cat, many_pings),
    ]


def pong_crlf(h: Harness) -> str | None:
    events = h.answers(b'{"type":"ping","id":"crlf"}\r\n')
    return None if [(e.type, getattr(e, "id", None)) for e in events] == [("pong", "crlf")] else f"got {events}"


def many_pings(h: Harness) -> str | None:
    count = 2000
    h.client.poll_events()
    h.send_line(b"".join(line({"type": "ping", "id": f"burst-{i}"}) + b"\n" for i in range(count)))
    h.wait(f"burst-{count - 1}", types=("pong",), timeout=30)
    ids = [e.id for e in h.client.history if e.type == "pong" and str(e.id).startswith("burst-")]
    return None if ids[-count:] == [f"burst-{i}" for i in range(count)] else f"{len(ids)} pongs, out of order"


# ------------------------------------------------------------------------------------ nesting and size


def nesting_cases() -> list[Case]:
    cat = "nesting"
    ping_nested = lambda depth: ('{"type":"ping","id":' + nested(depth) + "}").encode()  # noqa: E731
    return [
        Case("ping id nested 990 levels", cat, refused(ping_nested(990), None, "nest")),
        Case("ping id nested 100000 levels", cat, refused(ping_nested(100_000), None, "nest")),
        Case("ping id nested 40 levels", cat, refused(ping_nested(40), None, "nest")),
        Case("job prompt nested 990 levels", cat, lambda h: nested_job(h, 990)),
        Case(
            "job objects nested 990 levels",
            cat,
            refused(('{"type":"generate","job":' + '{"a":' * 990 + "1" + "}" * 991).encode(), None, "nest"),
        ),
    ]


def nested_job(h: Harness, depth: int) -> str | None:
    job = h.job()
    data = generate_line(job).replace(b'"a brick wall"', nested(depth).encode())
    problem = expect_error(h.answers(data), "bad_request", None, "nest")
    left = h.leftovers(job["id"])
    return problem or (f"left {left}" if left else None)


def peak_rss_growth(pid: int, action: Callable[[], None]) -> int | None:
    """Bytes the process's peak resident memory rose above its resident memory before `action`
    (Linux: clear_refs resets the peak, VmHWM reads it); None where that cannot be measured."""
    import psutil

    status, clear = pathlib.Path(f"/proc/{pid}/status"), pathlib.Path(f"/proc/{pid}/clear_refs")
    try:
        clear.write_text("5")
    except OSError:
        action()
        return None
    before = psutil.Process(pid).memory_info().rss
    action()
    for row in status.read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) * 1024 - before
    return None


def oversize_line(h: Harness) -> str | None:
    """Defect 10: a line over the limit is refused naming the limit without being held whole."""
    data = b'{"type":"ping","id":"' + b"x" * OVERSIZE_LINE_BYTES + b'"}'
    answer: list[protocol.Message] = []
    pid = h.client.process.pid if h.client.process is not None else 0
    growth = peak_rss_growth(pid, lambda: answer.extend(h.answers(data, timeout=60)))
    problem = expect_error(answer, "bad_request", None, str(protocol.MAX_LINE_BYTES))
    if problem:
        return problem
    if growth is not None and growth > 0.6 * len(data):  # held whole it costs 2-3 times the line
        return f"the worker's peak memory rose {growth / 2**20:.0f} MB for a {len(data) / 2**20:.0f} MB line"
    return None


def size_cases() -> list[Case]:
    cat = "size"
    return [
        Case(f"{OVERSIZE_LINE_BYTES // 2**20} MB line", cat, oversize_line),
        Case("1 MB prompt", cat, job_refused("prompt", str(protocol.MAX_TEXT), prompt="x" * 2**20)),
        Case("1 MB ping id", cat, pong("y" * 2**20)),
        Case("100000 unknown job fields", cat, lambda h: big_unknown_fields(h)),
    ]


def big_unknown_fields(h: Harness) -> str | None:
    job = h.job(**{f"k{i}": i for i in range(100_000)})
    events = h.answers(generate_line(job))
    problem = expect_error(events, "bad_request", "k0")
    if problem:
        return problem
    size = len(events[0].to_json())
    return None if size < 2 * 2**20 else f"the answer is {size / 2**20:.1f} MB"


# ---------------------------------------------------------------------------------------- schedulers


def scheduler_runs_or_is_refused(name: str, steps: int = 2) -> Check:
    """Defect 6: every advertised scheduler either runs or is refused naming the field — never `internal`."""

    def run(h: Harness) -> str | None:
        job = h.job(scheduler=name, steps=steps)
        h.send_line(generate_line(job))
        end = h.wait(job["id"], timeout=120)
        if end.type == "done":
            return None
        if isinstance(end, protocol.Error) and end.code == "bad_request" and end.field in ("scheduler", "steps"):
            left = h.leftovers(job["id"])
            return f"a refused job left {left}" if left else None
        return f"scheduler {name} at {steps} steps ended {end.to_dict()}"[:300]

    return run


def scheduler_cases() -> list[Case]:
    cat = "schedulers"
    cases = [Case(f"scheduler {name}", cat, scheduler_runs_or_is_refused(name)) for name in defaults.SCHEDULERS]
    cases += [Case(f"scheduler pndm at {n} step(s)", cat, scheduler_runs_or_is_refused("pndm", n)) for n in (1, 3)]
    cases.append(Case("unknown scheduler", cat, job_refused("scheduler", scheduler="heun")))
    return cases


CASES: list[Case] = [
    *framing_cases(),
    *utf8_cases(),
    *echo_cases(),
    *nesting_cases(),
    *size_cases(),
    *scheduler_cases(),
]
