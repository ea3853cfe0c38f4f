"""Detached containers (issue 15 targets), as root, through the real CLI:
`run -d` (≤ 100 ms median), `exec CONTAINER true` (≤ 60 ms median), and HTTP throughput
through a published port vs the same busybox httpd on the host network (≥ 50%), measured
with `ab` (apache2-utils) bounded in time, on 127.0.0.1 only. Reference floors interleaved
with each: `python -c pass` and `pybuild version` (the interpreter and the CLI's start-up,
which the machine's load moves as much as anything measured here).
Usage: python bench/containers.py [N]   (min / median / max in ms)
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def stats(name: str, ms: list[float]) -> None:
    print(f"{name:34s} n={len(ms):3d}  min {min(ms):6.1f}  median {statistics.median(ms):6.1f}  max {max(ms):6.1f} ms")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    if os.geteuid() != 0:
        sys.exit("run as root")
    work = Path(tempfile.mkdtemp(prefix="pybuild-bench-ctr-"))
    env = {**os.environ, "PYBUILD_ROOT": str(work / "root"), "PYTHONPATH": str(REPO)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # with bytecode caches, as an installed pybuild has them
    cli = [sys.executable, "-m", "builder.cli"]

    def pb(*args: str, check: bool = True) -> str:
        r = subprocess.run([*cli, *args], env=env, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise SystemExit(f"pybuild {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def timed(argv: list[str]) -> tuple[float, str]:
        t = time.perf_counter()
        r = subprocess.run(argv, env=env, capture_output=True, text=True)
        dt = (time.perf_counter() - t) * 1000
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(argv)}: {r.stderr.strip()}")
        return dt, r.stdout
    try:
        subprocess.run(["bash", str(REPO / "examples/make-busybox-rootfs.sh"), str(work / "bb.tar")], check=True,
                       capture_output=True)
        pb("import", str(work / "bb.tar"), "busybox:latest")
        pb("run", "-d", "--rm", "busybox", "true")  # makes the default network once, like docker0
        time.sleep(0.5)
        floor, version, rund, execs = [], [], [], []
        pb("run", "-d", "--name", "target", "busybox", "sleep", "100000")
        ids = []
        for _ in range(n):
            floor.append(timed([sys.executable, "-c", "pass"])[0])
            version.append(timed([*cli, "version"])[0])
            dt, out = timed([*cli, "run", "-d", "busybox", "sleep", "1000"])
            rund.append(dt)
            ids.append(out.strip())
            execs.append(timed([*cli, "exec", "target", "true"])[0])
        stats("python -c pass", floor)
        stats("pybuild version", version)
        stats("pybuild run -d busybox sleep", rund)
        stats("pybuild exec CONTAINER true", execs)
        pb("rm", "-f", "target", *ids)
        http(pb, work)
    finally:
        r = subprocess.run([*cli, "ps", "-aq"], env=env, capture_output=True, text=True)
        if r.stdout.split():
            subprocess.run([*cli, "rm", "-f", *r.stdout.split()], env=env, capture_output=True)
        subprocess.run([*cli, "network", "rm", "bridge"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def ab(url: str, seconds: int = 5, concurrency: int = 8) -> float:
    """Requests per second `ab` reaches in `seconds` (keep-alive off, as most clients)."""
    r = subprocess.run(["ab", "-q", "-t", str(seconds), "-n", "1000000", "-c", str(concurrency), url],
                       capture_output=True, text=True)
    m = re.search(r"Requests per second:\s+([\d.]+)", r.stdout)
    if not m:
        raise SystemExit(f"ab: {r.stdout[-300:]} {r.stderr[-300:]}")
    return float(m.group(1))


def http(pb, work: Path) -> None:
    if not shutil.which("ab"):
        print("http: skipped (no ab: apt-get install apache2-utils)")
        return
    ctx = work / "web"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text('FROM busybox\nRUN mkdir /www && head -c 4096 /dev/zero > /www/index.html\n'
                                    'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n')
    pb("build", "-q", "-t", "web", str(ctx))
    p1, p2 = free_port(), free_port()
    pb("run", "-d", "--name", "published", "-p", f"127.0.0.1:{p1}:80", "web")
    pb("run", "-d", "--name", "hostnet", "--network", "host", "web", "httpd", "-f", "-p", f"127.0.0.1:{p2}",
       "-h", "/www")
    time.sleep(0.5)
    pub, host = [], []
    for _ in range(3):  # interleaved
        pub.append(ab(f"http://127.0.0.1:{p1}/index.html"))
        host.append(ab(f"http://127.0.0.1:{p2}/index.html"))
    a, b = statistics.median(pub), statistics.median(host)
    print(f"http 4 KiB, ab -c 8, 5 s x3: published port {a:.0f} req/s, host network {b:.0f} req/s "
          f"({a / b * 100:.0f}%)")
    pb("rm", "-f", "-v", "published", "hostnet")


if __name__ == "__main__":
    main()
