"""pybuild against the reference BuildKit, case by case (cases.py; harness.py says how).

Every case is checked against its recorded verdict (expected/<case>.json), so a machine
without the reference still holds pybuild to BuildKit's behaviour. Where the reference runs
(root, `../shared/tools/buildkit-reference start`; tests/run.sh starts it on CI) the suite
also builds every case with it and compares live; with PYBUILD_DIFF_REFRESH=1 the live results
are written back as the new verdicts. On CI a reference that is not running is a failure, not
a skip.
"""
from __future__ import annotations

import json
import os

import pytest

from tests.differential import harness
from tests.differential.cases import CASES

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]

REFRESH = os.environ.get("PYBUILD_DIFF_REFRESH") == "1"
ON_CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def diff_work(tmp_path_factory):
    return tmp_path_factory.mktemp("differential")


@pytest.fixture(scope="session")
def pybuild_results(diff_work):
    return harness.run_pybuild(CASES, diff_work / "pybuild")


@pytest.fixture(scope="session")
def reference_results(diff_work):
    env = harness.reference_env()
    if env is None:
        if ON_CI and harness.TOOL.exists():
            pytest.fail("the reference BuildKit is not running on CI (tests/run.sh starts it)")
        if REFRESH:
            pytest.fail("PYBUILD_DIFF_REFRESH=1 needs the reference: ../shared/tools/buildkit-reference start")
        return None
    res = harness.run_reference(env, CASES, diff_work / "reference")
    if REFRESH:
        for c in CASES:
            harness.save_expected(harness.public(res[c.name]))
        harness.save_expected({"case": "__base__", **res["__base__"]})
    return res


def _param(case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.name, marks=marks)


def test_bases_are_the_same(pybuild_results, reference_results):
    want = harness.load_expected("__base__")
    assert want is not None, "expected/__base__.json missing: refresh the verdicts"
    want = {k: v for k, v in want.items() if k != "case"}
    assert pybuild_results["__base__"] == want
    if reference_results is not None:
        assert reference_results["__base__"] == want


def test_run_user_ids_and_home(diff_work, pybuild_results, reference_results):
    """`pybuild run -u USER` runs as `docker run -u USER` does: uid, gid, the groups runc sets
    (the primary gid first, then /etc/group's memberships unless a group is named), HOME."""
    want = harness.load_expected("__run_ids__")
    assert want is not None, "expected/__run_ids__.json missing: refresh the verdicts"
    if reference_results is not None:
        env = harness.reference_env()
        live = harness.run_ids_reference(env)
        if REFRESH:
            harness.save_expected({"case": "__run_ids__", "ids": live})
            want = {"ids": live}
        assert live == want["ids"], "the recorded __run_ids__ verdict is stale (PYBUILD_DIFF_REFRESH=1)"
    got = harness.run_ids_pybuild(diff_work / "pybuild" / "pybuild-root")
    assert got == want["ids"]


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_case(case, pybuild_results, reference_results):
    got = pybuild_results[case.name]
    recorded = harness.load_expected(case.name)
    assert recorded is not None, f"expected/{case.name}.json missing: refresh the verdicts"
    if reference_results is not None:
        live = harness.public(reference_results[case.name])
        assert live == recorded, (f"the recorded verdict of {case.name} is stale (PYBUILD_DIFF_REFRESH=1 "
                                  f"rewrites it):\n{harness.explain(recorded, live)}")
    if recorded["fails"] and got["fails"]:
        # BuildKit refuses it; pybuild must refuse it too, with one clear error (exit 1), not a crash.
        assert got["_rc"] == 1 and "Traceback" not in got["_log"], got["_log"]
    diff = harness.explain(recorded, harness.public(got))
    assert not diff, f"pybuild differs from BuildKit in {case.name}:\n{diff}\n--- pybuild log tail:\n{got['_log'][-1500:]}"
    assert harness.public(got) == recorded


def test_case_names_are_unique_and_verdicts_complete():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 120
    recorded = {p.stem for p in harness.EXPECTED.glob("*.json")} - {"__base__", "__run_ids__"}
    assert recorded == set(names), f"stale or missing verdicts: {sorted(recorded ^ set(names))}"
    for n in names:
        json.loads((harness.EXPECTED / f"{n}.json").read_text())
