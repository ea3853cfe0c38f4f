"""Scenario 7: peak RSS while building a 2 GB layer.

Owns: a Dockerfile whose one RUN writes 2 GB of mixed data (a third each random, text,
zeros), and the memory figure per builder: for pybuild and buildah the largest resident set of
the build process or any process it waited for (`wait4`'s ru_maxrss); for docker, whose build
runs inside dockerd, dockerd's VmHWM after resetting it (`echo 5 > /proc/PID/clear_refs`) just
before the build. Wall time goes in the note. Must not: compare different quantities silently:
the note says which process each figure is from.
"""
from __future__ import annotations

import os
import subprocess
import time

from bench.harness import NotAvailable, Row, kill_group, ScenarioResult, Variant, run_interleaved
from bench.peers import Builder, Docker, Pybuild, landing
from bench.scenarios import Env

TITLE = "peak RSS while building a 2 GB layer (cold)"


def dockerfile(total: int) -> str:
    # No `yes | head -c`: it relies on SIGPIPE ending `yes`, and a sandbox that leaves SIGPIPE
    # ignored (Python ignores it, and exec keeps ignored signals) would spin forever. The text
    # third is a 4 KiB block doubled with cat, then cut to size with dd reading a file.
    mib = max(1, (total // 3) >> 20)
    return ("FROM busybox:bench\n"
            f"RUN dd if=/dev/urandom of=/big.rand bs=1M count={mib} 2>/dev/null && "
            "i=0; while [ $i -lt 64 ]; do "
            "echo \"pybuild bench line $i: layer digest manifest snapshot overlay\"; "
            "i=$((i+1)); done > /t && "
            f"while [ $(stat -c %s /t) -lt {mib << 20} ]; do cat /t /t > /t2 && mv /t2 /t; done && "
            f"dd if=/t of=/big.txt bs=1M count={mib} 2>/dev/null && rm /t && "
            f"dd if=/dev/zero of=/big.zero bs=1M count={mib} 2>/dev/null\n")


def wait4_rss(argv: list[str], env: dict) -> tuple[float, float]:
    """(seconds, peak RSS MiB of the largest process in the waited tree)."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
    except FileNotFoundError:
        raise NotAvailable(f"{argv[0]} not installed") from None
    try:
        err = proc.stderr.read() if proc.stderr else b""
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # interrupted: end the whole build, not just its first process
        kill_group(proc)
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        text = err.decode(errors="replace").strip()
        lines = text.splitlines()
        msg = f"{os.path.basename(argv[0])} build failed: {(lines[-1] if lines else proc.returncode)}"
        raise NotAvailable(("not available yet: " if landing(text) else "") + msg[:200], text)
    return elapsed, usage.ru_maxrss / 1024


def dockerd_rss(d: Docker, argv: list[str], env: dict) -> tuple[float, float]:
    if d.pid is None:
        raise NotAvailable("dockerd not running")
    with open(f"/proc/{d.pid}/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM so the figure is this build's peak, not the daemon's lifetime
    elapsed, _client = wait4_rss(argv, env)
    with open(f"/proc/{d.pid}/status") as f:
        hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    return elapsed, hwm / 1024


def run(env: Env, key: str) -> ScenarioResult:
    res = ScenarioResult(key, TITLE)
    total = env.size(2 << 30, 8 << 20)
    ctx = env.fresh_dir("ctx-rss")
    (ctx / "Dockerfile").write_text(dockerfile(total))
    times: dict[str, float] = {}

    def measure(b: Builder):
        def go() -> float:
            if isinstance(b, Pybuild):
                b.require("build", "build")
                b.require_base()
            argv, e = b.build_argv(ctx, "bench-rss", no_cache=True)
            if isinstance(b, Docker):
                elapsed, rss = dockerd_rss(b, argv, e)
            else:
                elapsed, rss = wait4_rss(argv, e)
            times[b.name] = elapsed
            return rss
        return go

    variants = [Variant(f"{b.name} peak RSS", setup=b.before_cold, measure=measure(b), unit="MiB")
                for b in env.builders()]
    rows = run_interleaved(variants, env.reps(1, 1), warmup=0)
    for r in rows:
        b = r.name.split()[0]
        if r.stats and b in times:
            r = Row(r.name, r.stats, f"build took {times[b]:.1f} s")
        res.rows.append(r)
    for peer in env.peers:
        res.add_ratio("pybuild peak RSS", f"{peer.name} peak RSS")
    res.notes.append(f"layer of {total / (1 << 30):.2f} GiB written by one RUN; pybuild/buildah: "
                     "ru_maxrss of the largest process in the build's tree; docker: dockerd VmHWM "
                     "(reset before the build; includes the daemon's resident baseline)")
    res.notes.append("target (issue 4): peak memory flat while exporting (streaming)")
    subprocess.run(["rm", "-rf", str(ctx)])
    return res
