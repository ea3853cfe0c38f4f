"""builder/rootless.py's pure parts: the /etc/subuid reading and the maps planned from it, and
runtime.namespaces.userns_root() telling the host's root from a user namespace's."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from builder import rootless


def test_subordinate_range_by_name_or_uid(tmp_path):
    f = tmp_path / "subuid"
    f.write_text("# comment\nalice:100000:65536\nbob:0:0\n1003:200000:1000\nbroken\ncarol:x:1\n")
    assert rootless.subordinate_range(str(f), "alice", 1001) == (100000, 65536)
    assert rootless.subordinate_range(str(f), "dave", 1003) == (200000, 1000)  # by uid
    assert rootless.subordinate_range(str(f), "bob", 1002) is None  # an empty range is none
    assert rootless.subordinate_range(str(f), "carol", 1004) is None
    assert rootless.subordinate_range(str(tmp_path / "missing"), "alice", 1001) is None


def test_plan_maps_single_id_warns(monkeypatch):
    monkeypatch.setattr(rootless, "subordinate_range", lambda *a: None)
    uids, gids, warning = rootless.plan_maps()
    assert uids == [(0, os.getuid(), 1)] and gids == [(0, os.getgid(), 1)]
    assert warning.startswith("warning: rootless with a single id") and "\n" not in warning


def test_plan_maps_with_ranges(monkeypatch):
    monkeypatch.setattr(rootless, "subordinate_range", lambda path, *a: (100000, 65536) if "uid" in path else (200000, 10))
    monkeypatch.setattr(rootless, "_which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(rootless, "_no_new_privs", lambda: False)
    uids, gids, warning = rootless.plan_maps()
    assert uids == [(0, os.getuid(), 1), (1, 100000, 65536)]
    assert gids == [(0, os.getgid(), 1), (1, 200000, 10)] and warning is None


def test_commands_outside_the_namespace():
    for cmd in ("parse", "lint", "version", "completion"):
        assert not rootless.needed(cmd)


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs util-linux unshare")
def test_userns_root_detection():
    code = "from runtime.namespaces import userns_root; print(userns_root())"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    host = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert host.stdout.strip() == "False"  # the host's root, or not root at all
    r = subprocess.run(["unshare", "--user", "--map-root-user", sys.executable, "-c", code],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        pytest.skip(f"no user namespaces here: {r.stderr.strip()}")
    assert r.stdout.strip() == "True"


def test_plan_maps_under_no_new_privs_is_single_id(monkeypatch):
    monkeypatch.setattr(rootless, "subordinate_range", lambda *a: (100000, 65536))
    monkeypatch.setattr(rootless, "_which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(rootless, "_no_new_privs", lambda: True)
    uids, _, warning = rootless.plan_maps()
    assert uids == [(0, os.getuid(), 1)] and "no_new_privs" in warning
