"""The hostile cases (tests/hostile/*_cases.py) against a real worker: each is handled cleanly — a clear
error naming the field, nothing left behind — and the worker answers the next request (issue 12).

One worker per case module for the whole session; a case that kills or deafens it fails, and the
harness starts a fresh worker for the next case.
"""

import importlib
import importlib.util

import pytest

from tests.hostile.harness import Case, Harness, check

pytestmark = pytest.mark.slow

MODULES = [
    name
    for name in ("tests.hostile.request_cases", "tests.hostile.job_cases")
    if importlib.util.find_spec(name) is not None
]
PARAMS = [
    pytest.param(module, case, id=f"{module.rsplit('.', 1)[1]}:{case.category}:{case.name}")
    for module in MODULES
    for case in importlib.import_module(module).CASES
]


@pytest.fixture(scope="session")
def harnesses(tmp_path_factory):
    """One started Harness per case module, made on first use."""
    made: dict[str, Harness] = {}

    def get(module: str) -> Harness:
        if module not in made:
            made[module] = Harness(tmp_path_factory.mktemp(module.rsplit(".", 1)[1])).start()
        return made[module]

    yield get
    for harness in made.values():
        harness.close()


@pytest.mark.parametrize(("module", "case"), PARAMS)
def test_hostile_case_is_handled_cleanly(harnesses, module: str, case: Case):
    harness = harnesses(module)
    assert check(case, harness) is None
    assert harness.alive()
