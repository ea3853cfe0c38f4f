"""Engine benchmark: cold build and no-op rebuild of busybox + COPY of 2,000 small files + 3 RUNs.

    python bench/engine_build.py [--runs N] [--files N]

Each sample is a fresh `python -m builder.cli build` process (what a user pays). Cold: an empty
build cache (the base image is already in the store, as it would be after a pull). No-op: the
same build again, everything CACHED. Prints min / median / max per variant; when docker with
BuildKit is on PATH the same context is timed the same way, interleaved, with the ratio.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DOCKERFILE = """FROM busybox
COPY files/ /app/files/
RUN ls /app/files | wc -l > /app/count
RUN echo step-two > /app/two
RUN cat /app/count /app/two > /app/summary
"""


def make_context(d: Path, n: int) -> Path:
    (d / "files").mkdir(parents=True)
    for i in range(n):
        (d / "files" / f"f{i:05d}.txt").write_text(f"file {i}\n")
    (d / "Dockerfile").write_text(DOCKERFILE)
    return d


def pybuild(root: Path, ctx: Path) -> float:
    env = dict(os.environ, PYBUILD_ROOT=str(root))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "builder.cli", "build", "--progress=quiet", "-t", "bench", str(ctx)],
                       env=env, cwd=REPO, capture_output=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"pybuild build failed:\n{r.stderr.decode()}")
    return dt


def docker(ctx: Path, no_cache: bool) -> float | None:
    if shutil.which("docker") is None:
        return None
    t0 = time.perf_counter()
    r = subprocess.run(["docker", "build", "-q", *(["--no-cache"] if no_cache else []), "-t", "bench", str(ctx)],
                       capture_output=True, env=dict(os.environ, DOCKER_BUILDKIT="1"))
    if r.returncode != 0:
        return None
    return time.perf_counter() - t0


def show(name: str, xs: list[float]) -> None:
    print(f"{name:<28} min {min(xs):.3f}s  median {statistics.median(xs):.3f}s  max {max(xs):.3f}s  (n={len(xs)})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--files", type=int, default=2000)
    a = ap.parse_args()
    from tests.integration.buildlib import make_busybox_image

    work = Path(tempfile.mkdtemp(prefix="pybuild-bench-"))
    try:
        ctx = make_context(work / "ctx", a.files)
        cold, noop, dcold, dnoop = [], [], [], []
        for i in range(a.runs):
            root = work / f"root{i}"
            make_busybox_image(root, work / f"base{i}")
            cold.append(pybuild(root, ctx))
            noop.append(pybuild(root, ctx))
            if (d := docker(ctx, True)) is not None:
                dcold.append(d)
                dn = docker(ctx, False)
                if dn is not None:
                    dnoop.append(dn)
        show("pybuild cold build", cold)
        show("pybuild no-op rebuild", noop)
        if dcold:
            show("docker buildkit cold", dcold)
            show("docker buildkit no-op", dnoop)
            print(f"ratio cold {statistics.median(cold) / statistics.median(dcold):.2f}x, "
                  f"no-op {statistics.median(noop) / statistics.median(dnoop):.2f}x")
        else:
            print("docker not available: no BuildKit comparison (reference no-op: ~0.13 s on this machine kind)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
