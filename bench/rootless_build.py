"""Rootless vs root: cold and no-op build of engine_build.py's context (busybox + COPY of 2,000
small files + 3 RUNs), each sample a fresh `python -m builder.cli build` process.

    python bench/rootless_build.py --user NAME [--python PY] [--runs N] [--files N]

Run as root. `--user` is a non-root user with /etc/subuid and /etc/subgid ranges; `--python`
an interpreter both may run (root's may sit in a 0700 home) with pybuild's dependencies. The
variants, interleaved: root; rootless (the CLI in its own user namespace, overlay with
userxattr); rootless with the copy snapshot (PYBUILD_SNAPSHOTTER=copy, the fallback when
overlay is refused). Cold: a fresh store holding only the base image. Prints min / median /
max and each variant's median ratio to root's.
"""
from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.engine_build import make_context  # noqa: E402
from tests.fixtures.busybox_rootfs import make_busybox_rootfs  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--user", required=True)
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--files", type=int, default=2000)
    a = ap.parse_args()
    pw = pwd.getpwnam(a.user)
    base = Path(tempfile.mkdtemp(prefix="pybuild-bench-rl-"))
    os.chmod(base, 0o755)
    src = base / "src"
    for part in ("builder", "runtime", "grammar"):
        shutil.copytree(REPO / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
    ctx = make_context(base / "ctx", a.files)
    rootfs = make_busybox_rootfs(base / "rootfs")
    tar = base / "busybox.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(rootfs, arcname=".")
    subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)

    def cmd(user: bool, *args: str) -> list[str]:
        pre = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups"] if user else []
        return [*pre, a.python, "-m", "builder.cli", *args]

    def env(user: bool, root: Path, extra: dict) -> dict:
        e = {"PATH": os.environ["PATH"], "PYTHONPATH": str(src), "PYBUILD_ROOT": str(root),
             "HOME": pw.pw_dir if user else "/root", **extra}
        return e

    variants = {"root": (False, {}), "rootless": (True, {}),
                "rootless-copy": (True, {"PYBUILD_SNAPSHOTTER": "copy"})}
    times: dict[str, dict[str, list[float]]] = {v: {"cold": [], "noop": []} for v in variants}
    for i in range(a.runs):
        for name, (user, extra) in variants.items():
            store = base / f"store-{name}-{i}"
            store.mkdir()
            if user:
                os.chown(store, pw.pw_uid, pw.pw_gid)
            e = env(user, store / "r", extra)
            subprocess.run(cmd(user, "import", str(tar), "busybox"), env=e, check=True, capture_output=True)
            for kind in ("cold", "noop"):
                t0 = time.perf_counter()
                r = subprocess.run(cmd(user, "build", "-q", "-t", "b", str(ctx)), env=e, capture_output=True)
                dt = time.perf_counter() - t0
                if r.returncode != 0:
                    sys.stderr.write(r.stderr.decode())
                    return 1
                times[name][kind].append(dt)
            shutil.rmtree(store, ignore_errors=True)
    for kind in ("cold", "noop"):
        ref = statistics.median(times["root"][kind])
        for name in variants:
            xs = times[name][kind]
            med = statistics.median(xs)
            print(f"{kind:5} {name:14} min {min(xs):.3f}s  median {med:.3f}s  max {max(xs):.3f}s  "
                  f"x{med / ref:.2f} of root")
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
