"""Sandbox start-to-exit of /bin/true (issue 5 target: <= 30 ms median), as root.

Variants: overlay rootfs (busybox lower, fresh upper each run, as a RUN step uses it), plain
dir rootfs, and for reference runc/crun on an OCI bundle written by runtime.bundle.
Usage: python bench/runtime_start.py [N]   (prints min / median / max in ms)
"""
from __future__ import annotations

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

from runtime import sandbox  # noqa: E402
from runtime.config import Process, Rootfs, SandboxConfig  # noqa: E402
from tests.fixtures.busybox_rootfs import make_busybox_rootfs  # noqa: E402


def stats(name: str, ms: list[float]) -> None:
    print(f"{name:32s} n={len(ms):3d}  min {min(ms):6.1f}  median {statistics.median(ms):6.1f}  max {max(ms):6.1f} ms")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    if os.geteuid() != 0:
        sys.exit("run as root")
    work = Path(tempfile.mkdtemp(prefix="pybuild-bench-"))
    try:
        lower = make_busybox_rootfs(work / "lower")
        proc = Process(argv=("/bin/true",))
        plain = SandboxConfig(rootfs=Rootfs(path=str(lower)), process=proc)
        results: dict[str, list[float]] = {"sandbox overlay (fresh upper)": [], "sandbox plain dir": []}
        for i in range(n):
            up, wd = work / f"u{i}", work / f"w{i}"
            up.mkdir(), wd.mkdir()
            ov = SandboxConfig(rootfs=Rootfs(lowerdirs=(str(lower),), upperdir=str(up), workdir=str(wd)), process=proc)
            for name, cfg in (("sandbox overlay (fresh upper)", ov), ("sandbox plain dir", plain)):
                t = time.perf_counter()
                r = sandbox.run(cfg)
                results[name].append((time.perf_counter() - t) * 1000)
                assert r.exit_code == 0, r
        for name, ms in results.items():
            stats(name, ms)
        try:
            from runtime.bundle import write_bundle
        except ImportError:
            return
        bundle = work / "bundle"
        write_bundle(plain, lower, bundle)
        for tool in ("crun", "runc"):
            if not shutil.which(tool):
                continue
            ms = []
            for i in range(n):
                t = time.perf_counter()
                subprocess.run([tool, "run", "--bundle", str(bundle), f"pybuild-bench-{os.getpid()}-{i}"],
                               check=True, stdin=subprocess.DEVNULL)
                ms.append((time.perf_counter() - t) * 1000)
            stats(f"{tool} run (same bundle)", ms)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
