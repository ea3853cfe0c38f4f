"""CLI start-up latency (issue 7 targets): `pybuild --help` and `pybuild images` ≤ 80 ms,
`pybuild run --rm IMAGE true` ≤ 60 ms median; the floor is a bare `python3 -I -c pass`.

    python bench/cli_startup.py [--reps 15] [--installed]

Runs the commands interleaved (A B C D A B C D …) in fresh processes against a private store
holding a busybox image (imported like the README does) and prints min / median / max.
`run` needs root and overlayfs; without them its row says why it was skipped. The code
measured is this tree's (`python -m builder.cli`, PYTHONPATH=the tree), not whatever `pybuild`
the PATH finds (an install of another checkout, or a pyenv shim: bash scripts costing more
than the budget); --installed measures that `pybuild` instead.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--installed", action="store_true", help="time the `pybuild` on PATH, not this tree")
    args = ap.parse_args()
    pybuild = shutil.which("pybuild") if args.installed else None
    if args.installed and not pybuild:
        sys.exit("no pybuild on PATH")
    base = [pybuild] if pybuild else [sys.executable, "-m", "builder.cli"]
    tmp = Path(tempfile.mkdtemp(prefix="pybuild-bench-cli-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    env = dict(os.environ, PYBUILD_ROOT=str(tmp / "root"))
    if not pybuild:
        env["PYTHONPATH"] = str(REPO)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure with bytecode caches, as an installed pybuild has
    try:
        tar = tmp / "busybox.tar"
        subprocess.run(["bash", str(REPO / "examples/make-busybox-rootfs.sh"), str(tar)], check=True,
                       capture_output=True)
        subprocess.run(base + ["import", str(tar), "busybox:latest"], check=True, env=env, capture_output=True)
        for i in range(5):
            subprocess.run(base + ["tag", "busybox", f"extra/img{i}:v{i}"], check=True, env=env)
        cmds = {
            "python -I -c pass (floor)": [sys.executable, "-I", "-c", "pass"],
            "pybuild --help": base + ["--help"],
            "pybuild images": base + ["images"],
        }
        if os.geteuid() == 0:
            cmds["pybuild run --rm busybox true"] = base + ["run", "--rm", "busybox", "true"]
        else:
            print("pybuild run: skipped (needs root)")
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for k, c in cmds.items():  # warm-up: page cache, snapshots unpacked
            subprocess.run(c, env=env, capture_output=True, check=True)
        for _ in range(args.reps):
            for k, c in cmds.items():
                t0 = time.perf_counter()
                subprocess.run(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
                times[k].append((time.perf_counter() - t0) * 1000)
        print(f"{'command':34} {'min':>8} {'median':>8} {'max':>8}  (ms, {args.reps} reps, via {base[0]})")
        for k, v in times.items():
            print(f"{k:34} {min(v):8.1f} {statistics.median(v):8.1f} {max(v):8.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
