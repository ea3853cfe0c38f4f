"""Repeated `build --no-cache` of one context on one store (issue 18): does a builder stay as
fast on the fifth run as on the first?

Owns: the run order (every builder's run i before anyone's run i+1, so each tool's deletions
and disk state meet the others' runs as in real use) and the rows: each run's time, and the
ratios fifth/first per builder and pybuild's fifth against each peer's. Nothing is pruned
between runs: that is the point. Must not: share a store with the cold scenario's pruning.
"""
from __future__ import annotations

import subprocess
import time

from bench.harness import NotAvailable, Row, ScenarioResult, Stats
from bench.scenarios import Env
from bench.scenarios.copy_build import DOCKERFILE
from bench.scenarios.data import small_files_context

KEY = "repeat"
TITLE = "repeated build --no-cache: busybox, COPY 2,000 small files, 3 RUN, 5 runs on one store"


def run(env: Env, key: str) -> ScenarioResult:
    nfiles = env.size(2_000, 20)
    runs = 5 if env.mode != "smoke" else 2
    res = ScenarioResult(key, TITLE.replace("2,000", f"{nfiles:,}").replace("5 runs", f"{runs} runs"))
    ctx = small_files_context(env.fresh_dir(f"ctx-{key}", on_shm=False), nfiles)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    times: dict[str, list[float]] = {b.name: [] for b in env.builders()}
    failed: dict[str, str] = {}
    for _ in range(runs):
        for b in env.builders():
            if b.name in failed:
                continue
            t0 = time.perf_counter()
            try:
                b.build(ctx, f"bench-{key}:latest", no_cache=True)
            except NotAvailable as e:
                failed[b.name] = str(e)
                continue
            times[b.name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        if name in failed:
            res.rows.append(Row(f"{name} --no-cache", None, failed[name]))
            continue
        for i, t in enumerate(ts, 1):
            res.rows.append(Row(f"{name} run {i}", Stats((t,))))
        res.rows.append(Row(f"{name} median", Stats(tuple(ts))))
    for name in times:
        if name not in failed:
            res.add_ratio(f"{name} run {runs}", f"{name} run 1")
    for peer in env.peers:
        if peer.name not in failed and "pybuild" not in failed:
            res.add_ratio(f"pybuild run {runs}", f"{peer.name} run {runs}")
            res.add_ratio("pybuild median", f"{peer.name} median")
    res.notes.append("targets (issue 18): pybuild's fifth run <= 1.2x its first, <= 0.8x BuildKit's")
    subprocess.run(["rm", "-rf", str(ctx)])
    return res
