"""Scenarios 1 and 2: no-op rebuild and cold build of busybox + COPY N small files + 3 RUN.

Owns: the context (2,000 or 50,000 small files), the Dockerfile, and the two interleaved
groups (no-op: every tool rebuilds an unchanged context on a warm cache; cold: `--no-cache`,
docker's BuildKit cache pruned untimed first). A floor row times a fresh Python that only
stats the context, the least a daemonless no-op rebuild must do. Must not: modify the context
between samples (that would be another scenario).
"""
from __future__ import annotations

import subprocess
import sys

from bench.harness import ScenarioResult, Variant, check, run_interleaved
from bench.peers import Builder
from bench.scenarios import Env
from bench.scenarios.data import small_files_context

DOCKERFILE = """\
FROM busybox:bench
COPY files/ /data/
RUN echo one > /one
RUN ls /data | wc -l > /count
RUN cat /one /count > /summary
"""

SIZES = {"copy2k": (2_000, 20), "copy50k": (50_000, 50)}
TITLES = {"copy2k": "no-op rebuild and cold build: busybox, COPY 2,000 small files, 3 RUN",
          "copy50k": "no-op rebuild and cold build: busybox, COPY 50,000 small files, 3 RUN"}

STAT_FLOOR = ("import os,sys\n"
              "n=0\n"
              "for r,ds,fs in os.walk(sys.argv[1]):\n"
              "    for f in fs: os.lstat(os.path.join(r,f)); n+=1\n")


def _build(b: Builder, ctx, tag: str, no_cache: bool):
    return lambda: b.build(ctx, tag, no_cache=no_cache)


def run(env: Env, key: str) -> ScenarioResult:
    nfiles = env.size(*SIZES[key])
    res = ScenarioResult(key, TITLES[key].replace(f"{SIZES[key][0]:,}", f"{nfiles:,}"))
    ctx = small_files_context(env.fresh_dir(f"ctx-{key}"), nfiles)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    tag = f"bench-{key}:latest"
    big = nfiles > 10_000

    floor = Variant("floor: python + stat context",
                    run=lambda: check([sys.executable, "-I", "-c", STAT_FLOOR, str(ctx)]))
    noop = [floor] + [Variant(f"{b.name} no-op", run=_build(b, ctx, tag, False))
                      for b in env.builders()]
    res.rows += run_interleaved(noop, env.reps(7 if not big else 5, 3), warmup=1)

    cold = [Variant(f"{b.name} cold", setup=b.before_cold, run=_build(b, ctx, tag, True))
            for b in env.builders()]
    res.rows += run_interleaved(cold, env.reps(5 if not big else 3, 2), warmup=env.warmup)

    for peer in env.peers:
        res.add_ratio("pybuild no-op", f"{peer.name} no-op")
    for peer in env.peers:
        res.add_ratio("pybuild cold", f"{peer.name} cold")
    res.add_ratio("pybuild no-op", "floor: python + stat context")
    if key == "copy2k":
        res.notes.append("targets (issue 6): no-op <= 0.7x docker BuildKit, cold <= 1.0x")
    res.notes.append("cold = --no-cache (docker: BuildKit cache pruned before each sample, "
                     "untimed); buildah: --layers, runc")
    subprocess.run(["rm", "-rf", str(ctx)])
    return res
