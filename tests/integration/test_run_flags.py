"""`run`'s docker flags added with detached containers: --cap-add/--cap-drop, --privileged,
--ulimit, --mount, --platform, --pull, --add-host, --network host's host name."""
from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import REPO, run_cli

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("flagstore")
    tar = d / "busybox.tar"
    subprocess.run(["bash", str(REPO / "examples/make-busybox-rootfs.sh"), str(tar)], check=True, capture_output=True)
    r = run_cli("import", str(tar), "busybox:latest", env={"PYBUILD_ROOT": str(d / "root")})
    assert r.returncode == 0, r.stderr
    yield d / "root"


def pb(root, *args, **kw):
    return run_cli(*args, env={"PYBUILD_ROOT": str(root)}, **kw)


def caps(root, *flags: str, user: str | None = None) -> dict[str, int]:
    argv = ["run", "--rm", *flags, *(["-u", user] if user else []), "busybox", "grep", "^Cap", "/proc/self/status"]
    r = pb(root, *argv)
    assert r.returncode == 0, r.stderr
    return {ln.split(":")[0]: int(ln.split()[1], 16) for ln in r.stdout.decode().splitlines()}


CAP_NET_RAW, CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID = 13, 21, 7, 6


def test_cap_add_and_drop(root):
    base = caps(root)
    assert base["CapEff"] >> CAP_NET_RAW & 1 and not base["CapEff"] >> CAP_SYS_ADMIN & 1
    c = caps(root, "--cap-add", "SYS_ADMIN", "--cap-drop", "net_raw")
    assert c["CapEff"] >> CAP_SYS_ADMIN & 1 and not c["CapEff"] >> CAP_NET_RAW & 1
    assert c["CapBnd"] == c["CapEff"]


def test_cap_drop_all_still_runs_as_root_and_as_a_user(root):
    # the ids are set before the capability sets (runc's order): without CAP_SETUID/SETGID
    c = caps(root, "--cap-drop", "ALL")
    assert c["CapEff"] == c["CapPrm"] == c["CapBnd"] == 0
    r = pb(root, "run", "--rm", "--cap-drop", "ALL", "-u", "nobody", "busybox", "id", "-u")
    assert r.returncode == 0 and r.stdout == b"65534\n", r.stderr
    c = caps(root, user="nobody")
    assert c["CapEff"] == c["CapPrm"] == 0  # as before: a user gets no effective capabilities


def test_privileged_gets_every_capability_the_host_has(root):
    host = int(next(ln for ln in open("/proc/self/status") if ln.startswith("CapBnd:")).split()[1], 16)
    assert caps(root, "--privileged")["CapEff"] == host


def test_ulimit(root):
    r = pb(root, "run", "--rm", "--ulimit", "nofile=100:200", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn")
    assert r.stdout == b"100\n200\n", r.stderr
    r = pb(root, "run", "--rm", "--ulimit", "bogus=1", "busybox", "true")
    assert r.returncode == 2 and b"--ulimit" in r.stderr


def test_mount_bind_tmpfs_volume(root, tmp_path):
    (tmp_path / "f").write_text("bound\n")
    r = pb(root, "run", "--rm", "--mount", f"type=bind,source={tmp_path},target=/b,readonly",
           "--mount", "type=tmpfs,target=/t,tmpfs-size=1m", "busybox", "sh", "-c",
           "cat /b/f; touch /b/x 2>/dev/null && echo writable; df /t | tail -1 | awk '{print $2}'")
    assert r.stdout == b"bound\n1024\n", r.stderr
    r = pb(root, "run", "--rm", "--mount", "type=volume,source=mv,target=/v", "busybox", "sh", "-c", "echo hi > /v/f")
    assert r.returncode == 0, r.stderr
    r = pb(root, "run", "--rm", "--mount", "type=volume,source=mv,target=/v", "busybox", "cat", "/v/f")
    assert r.stdout == b"hi\n", r.stderr
    assert pb(root, "volume", "rm", "mv").returncode == 0
    r = pb(root, "run", "--rm", "--mount", "type=bind,source=/nonexistent,target=/x", "busybox", "true")
    assert r.returncode == 2 and b"does not exist" in r.stderr
    r = pb(root, "run", "--rm", "--mount", "type=nfs,target=/x", "busybox", "true")
    assert r.returncode == 2


def test_platform_and_pull(root):
    assert pb(root, "run", "--rm", "--platform", "linux/amd64", "busybox", "true").returncode == 0 \
        if os.uname().machine == "x86_64" else True
    r = pb(root, "run", "--rm", "--platform", "linux/s390x", "busybox", "true")  # not in the store
    assert r.returncode == 1 and b"not linux/s390x" in r.stderr, r.stderr
    r = pb(root, "run", "--rm", "--pull", "never", "nosuchimage", "true")
    assert r.returncode == 1 and b"no image 'nosuchimage'" in r.stderr


def test_add_host_and_host_network_hostname(root):
    r = pb(root, "run", "--rm", "--add-host", "db.local:10.1.2.3", "busybox", "grep", "db.local", "/etc/hosts")
    assert r.stdout.split() == [b"10.1.2.3", b"db.local"], r.stderr
    r = pb(root, "run", "--rm", "--network", "host", "busybox", "hostname")
    assert r.stdout.decode().strip() == os.uname().nodename
    r = pb(root, "run", "--rm", "--add-host", "nocolon", "busybox", "true")
    assert r.returncode == 2
