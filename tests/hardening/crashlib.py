"""Helpers for crash and concurrency tests: leftover processes and mounts, store invariants.

Owns: `leftovers(mark, root)` (processes whose command line or environment carries a test's
unique mark, and host mounts naming the store root), `check_store(root)` (`pybuild store verify`
through the real CLI, every cache record parses and names a stored blob, every snapshot dir is a
full chain id), and `build_popen` (a build whose stderr goes to a file, so a SIGKILL loses nothing
the builder had already written).
Must not: kill anything it did not start.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_cli


def leftovers(mark: str, root: Path) -> list[str]:
    found: list[str] = []
    needle = mark.encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue  # gone, or a kernel thread
        if needle in cmd or needle in env:
            text = cmd.replace(b"\0", b" ").decode(errors="replace")[:200]
            found.append(f"process {pid}: {text}")
    for ln in Path("/proc/self/mountinfo").read_text().splitlines():
        if str(root) in ln:
            found.append(f"mount: {ln}")
    return found


def check_store(root: Path) -> None:
    r = run_cli("store", "verify", env={"PYBUILD_ROOT": str(root)})
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    for p in sorted((root / "cache").glob("*/*.json")):
        rec = json.loads(p.read_text())  # a half-written record or memo would not parse
        if p.parent.name == "records" and rec.get("layer"):
            # written after its blob: a crash between the two must not leave a record without it
            d = rec["layer"]["digest"]
            assert (root / "blobs" / "sha256" / d[7:]).exists(), f"record {p.name} names missing blob {d}"
    snaps = root / "snapshots"
    for p in snaps.iterdir() if snaps.exists() else ():
        if p.name in (".lock", ".leases"):  # the lease gate and leases (a killed build's is stale)
            continue
        assert re.fullmatch(r"[0-9a-f]{64}", p.name), f"partial snapshot left in place: {p}"


def build_popen(root: Path, ctx: Path, log: Path, mark: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYBUILD_ROOT=str(root), PYBUILD_TEST_MARK=mark)
    return subprocess.Popen([sys.executable, "-m", "builder.cli", "build", "--progress=plain", *args, str(ctx)],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
