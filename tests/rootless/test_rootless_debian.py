"""Rootless with a real distribution (issue 17): a debootstrap Debian base imported by a normal
user, `apt-get update && apt-get install` in RUN (apt drops privileges to `_apt`, a second
owner besides root), and the layer keeps the `_apt`-owned files with their owner. Before
issue 17 the build failed at the first RUN (the pids cgroup), and without subordinate ids the
`_apt` files could not even be unpacked. Takes a few minutes (debootstrap + apt); skips
without debootstrap or the machine's Debian archive.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.test_debian_base import _mirror
from tests.rootless.test_rootless_cli import _layer_members, ok

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_userns, pytest.mark.root_only]


def test_apt_get_install_rootless_keeps_apt_owner(rl):
    if not shutil.which("debootstrap"):
        pytest.skip("debootstrap not installed (tests/apt-packages.txt lists it)")
    mirror = _mirror()
    if not mirror:
        pytest.skip("no Debian archive in this machine's apt sources")
    d = Path(tempfile.mkdtemp(prefix="pybuild-rl-debian-"))
    os.chmod(d, 0o755)
    try:
        rootfs = d / "rootfs"
        r = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror],
                           capture_output=True, timeout=900)
        if r.returncode != 0:
            tail = (r.stdout + r.stderr).decode(errors="replace").strip().splitlines()[-3:]
            pytest.skip(f"debootstrap from {mirror} failed (archive unreachable?): {' / '.join(tail)}")
        apt_uid = next(int(ln.split(":")[2]) for ln in (rootfs / "etc" / "passwd").read_text().splitlines()
                       if ln.startswith("_apt:"))
        tar = d / "debian.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tar), "."], check=True)
        shutil.rmtree(rootfs)
        os.chmod(tar, 0o644)
        work = rl.mkdtemp()
        env = {"PYBUILD_ROOT": str(work / "root")}
        ok(rl.cli("import", str(tar), "debian:bookworm", env=env, timeout=900))
        ctx = work / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(
            "FROM debian:bookworm\n"
            "RUN apt-get update && apt-get install -y --no-install-recommends less "
            "&& ls -ldn /var/lib/apt/lists/partial /var/cache/apt/archives/partial\n")
        rl.give(ctx)
        r = rl.cli("build", "--progress=plain", "-t", "deb:apt", str(ctx), env=env, timeout=1200)
        ok(r)
        out = ok(rl.cli("run", "--rm", "deb:apt", "sh", "-c",
                        "less --version | head -1; stat -c '%u %U' /var/cache/apt/archives/partial", env=env))
        assert out.startswith("less ") and f"{apt_uid} _apt" in out, out
        save = work / "deb.tar"
        ok(rl.cli("save", "-o", str(save), "deb:apt", env=env, timeout=900))
        members = _layer_members(save, "deb:apt")[-1]  # the RUN's layer
        apt_owned = [m.name for m in members if m.uid == apt_uid]
        assert any("partial" in n for n in apt_owned), [(m.name, m.uid) for m in members][:40]
        shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)
