"""Every hostile case (tests/hostile/*_cases.py) against a real worker on the tiny model: which were
handled cleanly (issue 12).

Each case module gets a fresh worker; a case that kills or deafens it is counted as a failure and the
harness starts a fresh worker for the next one. Prints one row per category (tried, clean), then each
failure with what went wrong. Last line: ``hostile cases clean = N/M``.

Run from the repository root: ``.venv/bin/python bench/hostile.py`` (``--only NAME`` filters by a
part of the category or case name).
"""

from __future__ import annotations

import argparse
import collections
import importlib
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository root on sys.path, sets the quiet environment)

MODULES = ("tests.hostile.request_cases", "tests.hostile.job_cases")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run only cases whose category or name contains this")
    args = parser.parse_args(argv)

    from tests.hostile.harness import Harness, run_cases

    results = []
    started = time.perf_counter()
    for module in MODULES:
        if importlib.util.find_spec(module) is None:
            print(f"({module} is not there yet)")
            continue
        cases = [c for c in importlib.import_module(module).CASES if args.only in c.category or args.only in c.name]
        if not cases:
            continue
        with tempfile.TemporaryDirectory(prefix="zss-hostile-") as tmp, Harness(Path(tmp)) as harness:
            for case, problem in run_cases(cases, harness):
                mark = "ok  " if problem is None else "FAIL"
                print(f"  {mark} {case.category:<12} {case.name}", flush=True)
                results.append((module.rsplit(".", 1)[1], case, problem))

    by_category: dict[tuple[str, str], list[str | None]] = collections.defaultdict(list)
    for module, case, problem in results:
        by_category[(module, case.category)].append(problem)
    print(f"\n| {'module':<14} | {'category':<14} | tried | clean |")
    print(f"|{'-' * 16}|{'-' * 16}|-------|-------|")
    for (module, category), problems in by_category.items():
        clean = sum(p is None for p in problems)
        print(f"| {module:<14} | {category:<14} | {len(problems):>5} | {clean:>5} |")
    failures = [(case, problem) for _, case, problem in results if problem is not None]
    if failures:
        print("\nFailures:")
        for case, problem in failures:
            print(f"- [{case.category}] {case.name}: {problem}")
    clean = len(results) - len(failures)
    print(f"\n{len(results)} cases in {time.perf_counter() - started:.0f} s")
    print(f"hostile cases clean = {clean}/{len(results)}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
