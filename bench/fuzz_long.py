"""The long fuzzing run (outside the default test run): >= 100,000 examples, 0 uncaught exceptions.

Runs the properties of tests/fuzz/strategies.py (grammar-aware and raw Dockerfiles through parse,
lint and plan; hostile tar streams through apply_layer in both whiteout modes and through ADD's
archive extractor; damaged docker/OCI archives through `load`) with hypothesis, N examples each
(default 20,000 x 6 = 120,000), and prints per
property the examples run, wall time and examples/s (min/median/max of per-1000 batch rates).
Exit status 0 only if every property held for every example.

    python bench/fuzz_long.py [--examples-per-property N] [--only NAME]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.fuzz.strategies import (Arena, check_add_extract, check_dockerfile, check_load, check_unpack,  # noqa: E402
                                   dockerfiles, image_archives, raw_dockerfiles, tar_streams)


def properties(arena: Arena) -> dict:
    return {
        "dockerfile-grammar": (dockerfiles(), check_dockerfile),
        "dockerfile-raw": (raw_dockerfiles(), check_dockerfile),
        "unpack-delete": (tar_streams(), lambda d: check_unpack(d, arena, "delete")),
        "unpack-overlay": (tar_streams(), lambda d: check_unpack(d, arena, "overlay")),
        "add-extract": (tar_streams(), lambda d: check_add_extract(d, arena)),
        "load-damaged": (image_archives(), lambda d: check_load(d, arena)),
    }


def run(name: str, strategy, check, n: int) -> tuple[bool, int, float, list[float]]:
    count = 0
    stamps: list[float] = []
    t0 = time.monotonic()

    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(x) -> None:
        nonlocal count
        count += 1
        if count % 1000 == 0:
            stamps.append(time.monotonic())
        check(x)

    ok = True
    try:
        prop()
    except BaseException:  # noqa: BLE001 - report, then count it as a failure
        ok = False
        traceback.print_exc()
    wall = time.monotonic() - t0
    rates = [1000 / (b - a) for a, b in zip([t0] + stamps, stamps) if b > a]
    return ok, count, wall, rates


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples-per-property", type=int, default=20_000)
    ap.add_argument("--only")
    a = ap.parse_args()
    arena = Arena(Path(tempfile.mkdtemp(prefix="pybuild-fuzz-long-")))
    total, failed = 0, []
    for name, (strategy, check) in properties(arena).items():
        if a.only and name != a.only:
            continue
        ok, count, wall, rates = run(name, strategy, check, a.examples_per_property)
        total += count
        r = f"{min(rates):.0f}/{statistics.median(rates):.0f}/{max(rates):.0f}" if rates else "-"
        print(f"{name:20s} {'ok' if ok else 'FAILED':6s} {count:7d} examples  {wall:7.1f}s  "
              f"examples/s min/median/max {r}", flush=True)
        if not ok:
            failed.append(name)
    print(f"total {total} examples, {len(failed)} failing properties {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
