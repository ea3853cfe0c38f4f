"""Rebuild the recorded verdicts (expected/<case>.json) with the live reference BuildKit.

    python3 -m tests.differential.refresh [CASE_SUBSTRING ...]   # as root, reference running
    python3 -m tests.differential.refresh --compare [CASE_SUBSTRING ...]   # also build with pybuild, print differences

Starts nothing itself: run `../shared/tools/buildkit-reference start` first. Must not: write a
verdict for a case the reference did not finish (an infrastructure error stops it).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.differential import harness
from tests.differential.cases import CASES


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="refresh")
    ap.add_argument("--compare", action="store_true", help="also build with pybuild and show differences")
    ap.add_argument("--no-write", action="store_true", help="do not write expected/*.json")
    ap.add_argument("--recorded", action="store_true",
                    help="compare pybuild with the recorded verdicts; no reference needed")
    ap.add_argument("only", nargs="*", help="only cases whose name contains one of these")
    a = ap.parse_args(argv)
    cases = [c for c in CASES if not a.only or any(s in c.name for s in a.only)]
    env = harness.reference_env()
    if a.recorded:
        with tempfile.TemporaryDirectory(prefix="pdiff-") as tmp:
            got = harness.run_pybuild(cases, Path(tmp) / "pyb")
            ref = {c.name: harness.load_expected(c.name) or {"fails": None} for c in cases}
            return _report(cases, ref, got)
    if env is None:
        print("refresh: the reference is not running (../shared/tools/buildkit-reference start, as root)",
              file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="pdiff-") as tmp:
        t = time.monotonic()
        ref = harness.run_reference(env, cases, Path(tmp) / "ref")
        print(f"reference: {len(cases)} cases in {time.monotonic() - t:.1f}s", file=sys.stderr)
        logs = Path(tempfile.gettempdir()) / "pdiff-reference-logs"
        logs.mkdir(exist_ok=True)
        for c in cases:
            (logs / f"{c.name}.log").write_text(ref[c.name].get("_log", ""))
        if not a.no_write:
            for c in cases:
                harness.save_expected(harness.public(ref[c.name]))
            harness.save_expected({"case": "__base__", **ref["__base__"]})
            if not a.only:
                harness.save_expected({"case": "__run_ids__", "ids": harness.run_ids_reference(env)})
        if a.compare:
            t = time.monotonic()
            got = harness.run_pybuild(cases, Path(tmp) / "pyb")
            print(f"pybuild: {len(cases)} cases in {time.monotonic() - t:.1f}s", file=sys.stderr)
            _report(cases, ref, got)
    return 0


def _report(cases, ref, got) -> int:
            bad = 0
            if "__base__" in ref and ref["__base__"] != got["__base__"]:
                print("BASES DIFFER", file=sys.stderr)
            for c in cases:
                d = harness.explain(harness.public(ref[c.name]), harness.public(got[c.name]))
                if d:
                    bad += 1
                    print(f"--- {c.name}{' (xfail)' if c.xfail else ''}\n{d}")
                    if got[c.name].get("_rc") not in (0, 1) or (got[c.name]["fails"] and not ref[c.name]["fails"]):
                        print("  pybuild log: " + got[c.name]["_log"].strip().splitlines()[-1] if got[c.name]["_log"].strip() else "")
                    if ref[c.name]["fails"] and not got[c.name]["fails"]:
                        lines = [ln for ln in ref[c.name].get("_log", "").splitlines() if "ERROR" in ln or "error" in ln]
                        print("  reference: " + (lines[-1] if lines else "?"))
            print(f"{len(cases) - bad}/{len(cases)} same", file=sys.stderr)
            return 0


if __name__ == "__main__":
    sys.exit(main())
