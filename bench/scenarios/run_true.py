"""Scenario 4: `pybuild run IMAGE true` latency vs runc, crun, and `unshare` as the floor.

Owns: the OCI bundle for runc/crun (from `runc spec`, the bench's busybox rootfs, read-only)
and the timing loop. crun refuses this hybrid-cgroup machine unless /sys/fs/cgroup/unified is
unmounted, so the whole loop runs in a child process in a private mount namespace
(`unshare -m --propagation private python -m bench.scenarios.run_true --inner …`) where that
mount is removed; every variant is timed there alike, and the host's mounts stay untouched.
Must not: run any variant in the parent's mount namespace (the comparison would be uneven).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.harness import NotAvailable, Row, ScenarioResult, Stats, Variant, check, run_interleaved
from bench.scenarios import Env

TITLE = "`run IMAGE true` latency vs runc / crun, `unshare` floor"
FLOOR = "floor: unshare -mipun -f true"


def run(env: Env, key: str) -> ScenarioResult:
    res = ScenarioResult(key, TITLE)
    pyb = env.pybuild
    spec = {
        "rootfs": str(env.base_rootfs),
        "work": str(env.fresh_dir("run-true", on_shm=True)),
        "reps": env.reps(40, 15),
        "warmup": env.warmup,
        "pybuild": pyb.argv("run", "--rm", "busybox:bench", "true"),
        "pybuild_env": {"PYBUILD_ROOT": str(pyb.root)},
        "pybuild_missing": (None if pyb.has_command("run") and not pyb.base_error else
                            ("not available yet: pybuild run (builder/commands/run.py)"
                             if not pyb.has_command("run") else pyb.base_error)),
    }
    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-m",
                        "bench.scenarios.run_true", "--inner", json.dumps(spec)],
                       capture_output=True, text=True, cwd=repo, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"inner run loop failed: {r.stderr.strip()[-400:]}")
    for row in json.loads(r.stdout):
        stats = Stats(tuple(row["samples"])) if row["samples"] else None
        res.rows.append(Row(row["name"], stats, row["note"]))
    for peer in ("runc", "crun", FLOOR):
        res.add_ratio("pybuild run --rm IMAGE true", peer)
    res.notes.append("targets (issues 5, 7): pybuild run IMAGE true <= 60 ms median; "
                     "sandbox start-to-exit of /bin/true <= 30 ms")
    res.notes.append("runc/crun: `RUNTIME run --bundle B ID` of a runc-spec bundle (pid, ipc, uts, "
                     "mount, network namespaces; read-only busybox rootfs)")
    return res


def _inner(spec: dict) -> list[dict]:
    """In the private mount namespace: drop the cgroup2 mount crun objects to, then time."""
    from bench.peers import landing, runtime_bundle

    if os.path.ismount("/sys/fs/cgroup/unified"):
        subprocess.run(["umount", "/sys/fs/cgroup/unified"], check=True)
    work = Path(spec["work"])
    counter = iter(range(1_000_000))
    variants = [Variant(FLOOR, run=lambda: check(["unshare", "-mipun", "-f", "true"], what="unshare"))]
    for rt in ("runc", "crun"):
        def go(rt=rt) -> None:
            bundle = runtime_bundle(Path(spec["rootfs"]), work / f"bundle-{rt}")
            check([rt, "--root", str(work / f"state-{rt}"), "run", "--bundle", str(bundle),
                   f"bench-{next(counter)}"], what=rt)
        variants.append(Variant(rt, run=go))

    def pybuild() -> None:
        if spec["pybuild_missing"]:
            raise NotAvailable(spec["pybuild_missing"])
        try:
            check(spec["pybuild"], what="pybuild run", env=dict(os.environ, **spec["pybuild_env"]))
        except NotAvailable as e:
            if landing(e.output):
                raise NotAvailable(f"not available yet: {e}") from None
            raise
    variants.append(Variant("pybuild run --rm IMAGE true", run=pybuild))

    # the bundle is written once (untimed) so samples time only the runtime
    for rt in ("runc", "crun"):
        try:
            runtime_bundle(Path(spec["rootfs"]), work / f"bundle-{rt}")
        except NotAvailable:
            pass
    rows = run_interleaved(variants, spec["reps"], warmup=max(1, spec["warmup"]))
    return [{"name": r.name, "samples": list(r.stats.samples) if r.stats else [], "note": r.note}
            for r in rows]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--inner", required=True)
    print(json.dumps(_inner(json.loads(ap.parse_args().inner))))
