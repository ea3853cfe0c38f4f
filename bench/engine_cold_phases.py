"""Bench: where a cold build's wall time goes, phase by phase (the copy2k/copy50k scenario).

    python bench/engine_cold_phases.py [--files N] [--runs N] [--dir DIR]

Each sample is a fresh process running the real CLI entry point (`build --no-cache`) with the
engine's phase functions wrapped by timers (nothing else changes). Prints min / median / max
milliseconds per phase: start-up + imports, setup, context digests, file copy, layer commits,
RUN sandboxes, image write. The base image and context are made once, untimed; the context
lives on the same disk as the store (as a user's would), under --dir (default /var/tmp).
Other work on the machine shows up here too: compare medians of interleaved runs, not one run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Runs inside the sample process: wrap phase functions, run the CLI, print the phases as JSON.
_DRIVER = r"""
import json, os, sys, time, functools
t_start = time.monotonic()
sys.path.insert(0, sys.argv[1])
spans = {}
def wrap(mod, name, label):
    f = getattr(mod, name)
    @functools.wraps(f)
    def g(*a, **k):
        t = time.monotonic()
        try:
            return f(*a, **k)
        finally:
            spans[label] = spans.get(label, 0.0) + time.monotonic() - t
    setattr(mod, name, g)
import builder.engine.build as bb, builder.engine.copier as cp, builder.engine.ops as ops
import builder.engine.solver as so, runtime.sandbox as sb
t_imported = time.monotonic()
for mod, name, label in [(bb, "_setup", "setup"), (so, "copy_inputs", "context digests"),
                         (cp.Copier, "copy", "COPY files"), (ops, "commit", "RUN layer commits"),
                         (sb, "run", "RUN sandboxes"), (bb, "write_image", "image write")]:
    wrap(mod, name, label)
import builder.engine.transfer as tr
wrap(tr, "commit", "COPY layer commit")
from builder.cli import main
sys.argv = ["pybuild"] + sys.argv[2:]
try:
    main()
except SystemExit as e:
    if e.code:
        raise
spans["start-up + engine imports"] = t_imported - t_start
print("PHASES " + json.dumps(spans))
"""

DOCKERFILE = """FROM busybox
COPY files/ /app/files/
RUN ls /app/files | wc -l > /app/count
RUN echo step-two > /app/two
RUN cat /app/count /app/two > /app/summary
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--dir", default="/var/tmp")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.integration.buildlib import make_busybox_image

    work = Path(tempfile.mkdtemp(prefix="pybuild-bench-phases-", dir=a.dir))
    try:
        ctx = work / "ctx"
        (ctx / "files").mkdir(parents=True)
        for i in range(a.files):
            (ctx / "files" / f"f{i:05d}.txt").write_text(f"file {i}\n")
        (ctx / "Dockerfile").write_text(DOCKERFILE)
        root = work / "root"
        make_busybox_image(root, work / "base")
        env = dict(os.environ, PYBUILD_ROOT=str(root))
        argv = [sys.executable, "-c", _DRIVER, str(REPO), "build", "--progress=quiet", "--no-cache", "-t", "phases",
                str(ctx)]
        subprocess.run(argv, env=env, check=True, capture_output=True)  # warm-up: snapshots, stat cache
        rows: dict[str, list[float]] = {}
        for _ in range(a.runs):
            t0 = os.times().elapsed
            r = subprocess.run(argv, env=env, capture_output=True, text=True)
            wall = os.times().elapsed - t0
            if r.returncode != 0:
                raise SystemExit(f"build failed:\n{r.stderr}")
            line = next(ln for ln in r.stdout.splitlines() if ln.startswith("PHASES "))
            phases = json.loads(line[7:])
            for k, v in phases.items():
                rows.setdefault(k, []).append(v)
            rows.setdefault("rest (CLI, imports, solver, exit)", []).append(wall - sum(phases.values()))
            rows.setdefault("TOTAL wall (process)", []).append(wall)
        print(f"cold build, busybox + COPY {a.files:,} files + 3 RUN, {a.runs} runs (ms)")
        print(f"  {'phase':<36}{'min':>8}{'median':>9}{'max':>8}")
        for k, v in rows.items():
            print(f"  {k:<36}{min(v) * 1000:8.1f}{statistics.median(v) * 1000:9.1f}{max(v) * 1000:8.1f}")
    finally:
        subprocess.run(["rm", "-rf", str(work)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
