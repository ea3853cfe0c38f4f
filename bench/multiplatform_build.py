"""Multi-platform benchmark: a two-platform build (linux/amd64,linux/arm64) of a context without
RUN against the same build for one platform (issue 16's budget: ≤ 1.3×).

    python bench/multiplatform_build.py [--runs N] [--files N]

Context: `FROM busybox` (an index of Debian's busybox-static amd64 and arm64, imported with
`import --platform` and joined with `manifest create`), COPY of N small files and one 4 MB
file, ENV/LABEL/CMD. Each sample is a fresh `python -m builder.cli build` process on a fresh
copy of a store holding only the bases (a cold build cache: every COPY executes); the copy is
not timed. Variants alternate so neither always runs first. Prints min / median / max and the
ratio of the medians, for wall-clock time and for CPU time (user + sys of the build process,
which a loaded shared machine disturbs less).
"""
from __future__ import annotations

import argparse
import os
import resource
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
COPY big.bin /app/
ENV APP_HOME=/app
LABEL org.example.bench=multiplatform
WORKDIR /app
CMD ["ls", "/app"]
"""


def make_context(d: Path, n: int) -> Path:
    (d / "files").mkdir(parents=True)
    for i in range(n):
        (d / "files" / f"f{i:05d}.txt").write_text(f"file {i}\n" * 8)
    (d / "big.bin").write_bytes(os.urandom(4 << 20))
    (d / "Dockerfile").write_text(DOCKERFILE)
    return d


def make_bases(root: Path, tmp: Path) -> None:
    from tests.conftest import run_cli
    from tests.fixtures.multiarch import import_busybox

    for arch in ("amd64", "arm64"):
        import_busybox(root, arch, f"bb-{arch}", tmp)
    r = run_cli("manifest", "create", "busybox", "bb-amd64", "bb-arm64", env={"PYBUILD_ROOT": str(root)})
    if r.returncode != 0:
        raise SystemExit(r.stderr.decode())


def sample(template: Path, work: Path, ctx: Path, platform: str) -> tuple[float, float]:
    root = work / "root"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(template, root, symlinks=True)
    env = dict(os.environ, PYBUILD_ROOT=str(root))
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "builder.cli", "build", "--progress=quiet", "--platform", platform,
                        "-t", "bench", str(ctx)], env=env, cwd=REPO, capture_output=True)
    dt = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"pybuild build --platform {platform} failed:\n{r.stderr.decode()}")
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return dt, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--files", type=int, default=500)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mp-") as t:
        tmp = Path(t)
        template = tmp / "template"
        make_bases(template, tmp)
        ctx = make_context(tmp / "ctx", a.files)
        variants = {"one platform (linux/amd64)": "linux/amd64",
                    "two platforms (linux/amd64,linux/arm64)": "linux/amd64,linux/arm64"}
        times: dict[str, list[float]] = {k: [] for k in variants}
        cpus: dict[str, list[float]] = {k: [] for k in variants}
        names = list(variants)
        for i in range(a.runs):
            for name in (names if i % 2 == 0 else names[::-1]):
                wall, cpu = sample(template, tmp, ctx, variants[name])
                times[name].append(wall)
                cpus[name].append(cpu)
        for name, ts in times.items():
            print(f"{name:42s} wall min {min(ts):.3f}s  median {statistics.median(ts):.3f}s  max {max(ts):.3f}s"
                  f"  | cpu median {statistics.median(cpus[name]):.3f}s")
        one, two = (statistics.median(times[n]) for n in names)
        c1, c2 = (statistics.median(cpus[n]) for n in names)
        print(f"ratio of medians (two / one): wall {two / one:.2f}, cpu {c2 / c1:.2f}  (budget ≤ 1.30; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
