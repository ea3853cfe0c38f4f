"""Rootless with a real distribution (issue 17): a debootstrap Debian base imported by a normal
user, `apt-get update && apt-get install` in RUN (apt drops privileges to `_apt`, a second
owner besides root), and the layer keeps the `_apt`-owned files with their owner. Before
issue 17 the build failed at the first RUN (the pids cgroup); the base's device nodes could not
be unpacked in a user namespace either. Takes a few minutes (debootstrap + apt); skips without
debootstrap or the machine's Debian archive.
"""
from __future__ import annotations

import shutil

import pytest

from tests.rootless.test_rootless_cli import _layer_members, ok

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_userns, pytest.mark.root_only]


def test_apt_get_install_rootless_keeps_apt_owner(rl, debian_tar):
    tar, apt_uid = debian_tar
    work = rl.mkdtemp()
    try:
        env = {"PYBUILD_ROOT": str(work / "root")}
        ok(rl.cli("import", str(tar), "debian:bookworm", env=env, timeout=900))
        ctx = work / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(
            "FROM debian:bookworm\n"
            "RUN apt-get update && apt-get install -y --no-install-recommends less "
            "&& ls -ldn /var/lib/apt/lists/partial /var/cache/apt/archives/partial\n")
        rl.give(ctx)
        ok(rl.cli("build", "--progress=plain", "-t", "deb:apt", str(ctx), env=env, timeout=1200))
        out = ok(rl.cli("run", "--rm", "deb:apt", "sh", "-c",
                        "less --version | head -1; stat -c '%u %U' /var/cache/apt/archives/partial", env=env))
        assert out.startswith("less ") and f"{apt_uid} _apt" in out, out
        save = work / "deb.tar"
        ok(rl.cli("save", "-o", str(save), "deb:apt", env=env, timeout=900))
        members = _layer_members(save, "deb:apt")[-1]  # the RUN's layer
        apt_owned = [m.name for m in members if m.uid == apt_uid]
        assert any("partial" in n for n in apt_owned), [(m.name, m.uid) for m in members][:40]
    finally:
        shutil.rmtree(work, ignore_errors=True)
