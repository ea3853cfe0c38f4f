"""Sandbox start-to-exit of /bin/true (issue 5 target: <= 30 ms median), as root.

Variants, interleaved (A B C A B C ...) so that load from other processes hits all alike:
our sandbox on an overlay rootfs (busybox lower, fresh upper each run, as a RUN step uses
it), on a plain dir (with docker's default seccomp filter, and without: the filter's cost), on a plain dir with a fresh re-exec per run instead of the fork
server, a cold start (a new `python -I` process importing runtime and running one sandbox,
a floor for `pybuild run IMAGE true`), and runc/crun on an OCI bundle written by
runtime.bundle (crun is left out where it refuses the host's cgroup layout).
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
from runtime.bundle import write_bundle  # noqa: E402
from runtime.config import Process, Rootfs, SandboxConfig  # noqa: E402
from tests.fixtures.busybox_rootfs import make_busybox_rootfs  # noqa: E402


def stats(name: str, ms: list[float]) -> None:
    print(f"{name:38s} n={len(ms):3d}  min {min(ms):6.1f}  median {statistics.median(ms):6.1f}  max {max(ms):6.1f} ms")


def oci_runner(tool: str, bundle: Path):
    def run(i: int) -> None:
        cid = f"pybuild-bench-{os.getpid()}-{i}"
        r = subprocess.run([tool, "run", "--bundle", str(bundle), cid], stdin=subprocess.DEVNULL, capture_output=True)
        if r.returncode != 0:
            subprocess.run([tool, "delete", "-f", cid], capture_output=True)
            raise RuntimeError(r.stderr.decode().strip())
    return run


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    if os.geteuid() != 0:
        sys.exit("run as root")
    work = Path(tempfile.mkdtemp(prefix="pybuild-bench-"))
    try:
        lower = make_busybox_rootfs(work / "lower")
        proc = Process(argv=("/bin/true",))
        plain = SandboxConfig(rootfs=Rootfs(path=str(lower)), process=proc)
        unconfined = SandboxConfig(rootfs=Rootfs(path=str(lower)), process=proc, seccomp="unconfined")
        counter = iter(range(10**9))

        def overlay(i: int) -> None:
            up, wd = work / f"u{i}", work / f"w{i}"
            up.mkdir(), wd.mkdir()
            cfg = SandboxConfig(rootfs=Rootfs(lowerdirs=(str(lower),), upperdir=str(up), workdir=str(wd)), process=proc)
            t = time.perf_counter()
            assert sandbox.run(cfg).exit_code == 0
            return time.perf_counter() - t

        def reexec(i: int) -> None:
            os.environ["PYBUILD_SANDBOX_ZYGOTE"] = "0"
            try:
                assert sandbox.run(plain).exit_code == 0
            finally:
                del os.environ["PYBUILD_SANDBOX_ZYGOTE"]

        cold_code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from runtime import sandbox;"
                     "from runtime.config import Process, Rootfs, SandboxConfig;"
                     f"sys.exit(sandbox.run(SandboxConfig(rootfs=Rootfs(path={str(lower)!r}),"
                     "process=Process(argv=('/bin/true',)))).exit_code)")

        def cold(i: int) -> None:
            subprocess.run([sys.executable, "-I", "-c", cold_code], check=True)

        variants = {"sandbox overlay (fresh upper)": overlay,
                    "sandbox plain dir": lambda i: sandbox.run(plain),
                    "sandbox plain dir, seccomp=unconfined": lambda i: sandbox.run(unconfined),
                    "sandbox plain dir, no fork server": reexec,
                    "cold: new python process + 1 run": cold}
        bundle = write_bundle(plain, lower, work / "bundle")
        for tool in ("runc", "crun"):
            if shutil.which(tool):
                run = oci_runner(tool, bundle)
                try:
                    run(next(counter))
                    variants[f"{tool} run (same bundle)"] = run
                except RuntimeError as e:
                    print(f"{tool}: not measured: {e}")
        results: dict[str, list[float]] = {k: [] for k in variants}
        for name, fn in variants.items():  # warm-up
            fn(next(counter))
        for _ in range(n):
            for name, fn in variants.items():
                t = time.perf_counter()
                inner = fn(next(counter))
                results[name].append((inner if isinstance(inner, float) else time.perf_counter() - t) * 1000)
        for name, ms in results.items():
            stats(name, ms)
        print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
