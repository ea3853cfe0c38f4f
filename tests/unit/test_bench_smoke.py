"""bench/ smoke: the harness's arithmetic, and each scenario run ONCE on a tiny input.

Timed scenarios never run here: `--smoke` shrinks every input (20 files, 4 MB, 8 MB layer,
40-line Dockerfile, sleep 0) and takes one sample. Peers are left out unless already
installed (the suite never installs docker). A pybuild row must either carry a figure or say
"not available yet" (its feature has not landed); a pybuild command that exists but fails is
a failure here, because the bench could not measure it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import (NotAvailable, ScenarioResult, Variant, interleaved_order,
                           run_interleaved, to_json)
from bench.peers import BuildkitRef
from bench.scenarios.parse import dockerfile_text, split_floor

REPO = Path(__file__).resolve().parents[2]


# --- harness -----------------------------------------------------------------------------

def test_interleaved_order_rotates_so_no_variant_is_always_first():
    assert interleaved_order(["A", "B", "C"], 3) == ["A", "B", "C", "B", "C", "A", "C", "A", "B"]
    assert interleaved_order([], 3) == []


def test_run_interleaved_times_each_variant_alternately_and_drops_unavailable_ones():
    calls: list[str] = []
    ticks = iter(range(1000))

    def rec(name):
        return lambda: calls.append(name)

    def missing():
        calls.append("C")
        raise NotAvailable("not available yet: C")

    rows = run_interleaved([Variant("A", run=rec("A"), setup=lambda: calls.append("setupA")),
                            Variant("B", run=rec("B")), Variant("C", run=missing)],
                           reps=2, warmup=1, clock=lambda: float(next(ticks)))
    # warm-up A B C (C drops out), then A B / B A, each A preceded by its untimed setup
    assert calls == ["setupA", "A", "B", "C", "setupA", "A", "B", "B", "setupA", "A"]
    a, b, c = rows
    assert a.stats.samples == (1.0, 1.0) and len(b.stats.samples) == 2
    assert c.stats is None and c.note == "not available yet: C"


def test_ratio_is_median_over_median_and_missing_rows_give_none():
    res = ScenarioResult("k", "t")
    res.rows = run_interleaved([Variant("p", measure=lambda: 2.0),
                                Variant("d", measure=lambda: 4.0),
                                Variant("x", run=lambda: (_ for _ in ()).throw(NotAvailable("no")))],
                               reps=3, warmup=0)
    res.add_ratio("p", "d")
    res.add_ratio("p", "x")
    assert res.ratios == [("p", "d", 0.5), ("p", "x", None)]
    doc = json.loads(to_json([res], {"mode": "smoke"}))
    assert doc["scenarios"][0]["rows"][0]["median"] == 2.0
    assert doc["scenarios"][0]["rows"][2] == {"name": "x", "note": "no", "available": False}


def test_parse_input_has_the_asked_length_and_the_floor_sees_every_instruction():
    text = dockerfile_text(1000)
    assert text.count("\n") == 1000
    assert split_floor(text) > 1000  # words of ~850 logical instructions, at least


# --- each scenario once ------------------------------------------------------------------

def bench_once(tmp_path: Path, only: str, peers: str = "none") -> dict:
    out = tmp_path / "bench.json"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "--smoke", "--only", only,
                             "--peers", peers, "--json", str(out), "--state-dir", str(tmp_path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the bench stop what it started (dockerd, builds) and remove its dirs
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(f"bench --smoke --only {only} took over 90 s:\n{stderr[-2000:]}")
    r = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert [s["key"] for s in doc["scenarios"]] == [only]
    assert f"== {only}:" in r.stdout
    assert not list(tmp_path.glob("pybuild-bench-*")), "bench left its state dir behind"
    return doc["scenarios"][0]


def check_rows(sc: dict, must_measure: set[str]) -> None:
    names = {row["name"] for row in sc["rows"]}
    assert must_measure <= names, (must_measure - names, sc["rows"])
    for row in sc["rows"]:
        if row["name"] in must_measure:
            assert row.get("median", 0) > 0, row
        elif row["name"].startswith("pybuild"):
            assert "median" in row or row["note"].startswith("not available yet"), row
        assert row["name"] != "scenario", f"scenario crashed: {row['note']}"


@pytest.mark.needs_root
@pytest.mark.parametrize("key", ["copy2k", "copy50k"])
def test_copy_scenarios_run_once(tmp_path, key):
    sc = bench_once(tmp_path, key)
    check_rows(sc, {"floor: python + stat context"})
    assert {"pybuild no-op", "pybuild cold"} <= {r["name"] for r in sc["rows"]}


def test_export_scenario_runs_once(tmp_path):
    sc = bench_once(tmp_path, "export")
    check_rows(sc, {"floor zstd", "floor gzip"})
    assert any("MB/s" in r["note"] for r in sc["rows"])


@pytest.mark.needs_root
def test_run_scenario_runs_once(tmp_path):
    sc = bench_once(tmp_path, "run")
    measured = {"floor: unshare -mipun -f true"}
    measured |= {rt for rt in ("runc", "crun") if shutil.which(rt)}
    check_rows(sc, measured)


def test_parse_scenario_runs_once(tmp_path):
    sc = bench_once(tmp_path, "parse")
    check_rows(sc, {"floor: split + join lines", "floor: python -I -c pass"})


@pytest.mark.needs_root
@pytest.mark.parametrize("key", ["stages", "rss", "repeat"])
def test_builder_only_scenarios_run_once(tmp_path, key):
    sc = bench_once(tmp_path, key)
    check_rows(sc, set())
    assert any(r["name"].startswith("pybuild") for r in sc["rows"])


@pytest.mark.needs_root
@pytest.mark.skipif(not (os.path.exists("/usr/bin/docker") or shutil.which("buildah")
                         or BuildkitRef.installed()),
                    reason="neither docker.io, buildah nor the reference BuildKit installed")
def test_installed_peers_build_side_by_side(tmp_path):
    sc = bench_once(tmp_path, "copy2k", peers="auto")
    peers = [p for p, ok in (("docker", os.path.exists("/usr/bin/docker")),
                             ("buildkit-ref", BuildkitRef.installed()),
                             ("buildah", shutil.which("buildah"))) if ok]
    check_rows(sc, {f"{p} {kind}" for p in peers for kind in ("no-op", "cold")})
