"""cgroup limits: the directories get the limits and disappear afterwards (v1 or v2)."""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from runtime import cgroups

pytestmark = pytest.mark.needs_root


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def test_create_writes_limits_and_remove_cleans_up():
    name = f"pybuild-test-{uuid.uuid4().hex[:8]}"
    cg = cgroups.create(name, 64 << 20, 0.5, 42)
    assert cg is not None
    try:
        assert len(cg.procs_files) == len(cg.dirs) >= 1
        assert all(os.path.isdir(d) and d.endswith(name) for d in cg.dirs)
        files = {os.path.basename(f): d for d in cg.dirs for f in os.listdir(d)}
        if "memory.max" in files:  # v2
            assert _read(f"{files['memory.max']}/memory.max") == str(64 << 20)
        else:
            assert _read(f"{files['memory.limit_in_bytes']}/memory.limit_in_bytes") == str(64 << 20)
            assert _read(f"{files['cpu.cfs_quota_us']}/cpu.cfs_quota_us") == "50000"
        assert _read(f"{files['pids.max']}/pids.max") == "42"
        assert not cg.oom_killed()
    finally:
        cg.remove()
    assert not any(os.path.exists(d) for d in cg.dirs) and cg.dirs == []


def test_no_limits_no_cgroup():
    """Without limits the container stays in its fork server's sandbox home (no migration)."""
    assert cgroups.create("pybuild-unused", None, None, None) is None


def test_limits_give_the_container_cgroups_of_its_own_in_every_hierarchy_with_knobs():
    """With a limit, every hierarchy with knobs gets the container's own cgroup (issue 14
    item 2): the cgroup namespace's roots hold nobody else; devices stay with the home."""
    v2, v1 = cgroups.mount_points()
    cg = cgroups.create(f"pybuild-test-{uuid.uuid4().hex[:8]}", None, None, 100)
    assert cg is not None
    try:
        hier = {d.split("/")[4] for d in cg.dirs}
        want = {m.split("/")[4] for c, m in v1.items() if c in ("cpu", "memory", "freezer", "pids", "blkio")}
        assert want <= hier and "devices" not in hier, (want, hier)
        assert all(p.endswith(f"/{cgroups.LEAF}/cgroup.procs") for p in cg.procs_files if "/pids/" in p)
    finally:
        cg.remove()
    assert cg.dirs == []


@pytest.mark.needs_overlay
def test_runs_leave_no_cgroup_directories(sh):
    v2, v1 = cgroups.mount_points()
    own = cgroups._own_paths()
    parents = [f"{v1[c]}{own.get(c, '/').rstrip('/')}" for c in ("memory", "pids", "cpu") if c in v1]
    mine = f"pybuild-{os.getpid()}-"  # other builders on this host make their own
    r, out, _ = sh("cat /proc/self/cgroup", limits=cgroups_limits())
    assert r.exit_code == 0
    assert parents and all(not [d for d in os.listdir(p) if d.startswith(mine)] for p in parents)


def cgroups_limits():
    from runtime.config import Limits
    return Limits(memory_bytes=32 << 20, cpu_quota=1.0, pids=50)


def test_v2_parent_choice_follows_the_no_internal_processes_rule(tmp_path):
    # A fake cgroup2 tree: a cgroup.subtree_control that is a directory cannot be written,
    # which is how a cgroup that holds processes refuses to delegate on a real v2 host.
    mount = tmp_path / "cg"
    own = mount / "user.slice" / "session-1.scope"
    own.mkdir(parents=True)
    (own / "cgroup.subtree_control").write_text("")
    assert cgroups._v2_parent(str(mount), str(own), {"memory"}) == str(own)  # 1. may delegate
    assert (own / "cgroup.subtree_control").read_text() == "+memory"
    (own / "cgroup.subtree_control").unlink()
    (own / "cgroup.subtree_control").mkdir()
    assert cgroups._v2_parent(str(mount), str(own), {"memory"}) == str(own.parent)  # 2. a sibling
    (mount / "cgroup.subtree_control").mkdir()
    (mount / "cgroup.procs").write_text("1\n42\n")
    assert cgroups._v2_parent(str(mount), str(mount), {"memory", "pids"}) is None  # 3. still refused
    assert (mount / "pybuild-init" / "cgroup.procs").read_text() == "42"  # processes were moved


def test_stale_cgroups_of_dead_builders_are_collected():
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    v2, v1 = cgroups.mount_points()
    own = cgroups._own_paths()
    parent = f"{v1['pids']}{own.get('pids', '/').rstrip('/')}" if "pids" in v1 else f"{v2}{own.get('', '/').rstrip('/')}"
    stale = os.path.join(parent, f"pybuild-{dead.pid}-abcdef")
    os.mkdir(stale)
    try:
        cgroups._collected.discard(parent)
        cgroups._collect_stale(parent)
        assert not os.path.exists(stale)
    finally:
        if os.path.exists(stale):
            os.rmdir(stale)
