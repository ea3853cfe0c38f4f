"""Snapshot leases: prune never removes what a live build or container uses (builder.snapshot)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from builder.snapshot import Snapshotter

REPO = Path(__file__).resolve().parents[2]
A, B, C = ("sha256:" + c * 64 for c in "abc")


def _snaps(tmp_path: Path) -> Snapshotter:
    maker = Snapshotter(tmp_path / "snaps", tmp_path / "tmp")
    for chain in (A, B, C):
        maker.ensure(chain, lambda d: (d / "f").write_text("x" * 10))
    assert maker.leased() == {A, B, C}  # what a process commits, it leases
    maker.release()
    return Snapshotter(tmp_path / "snaps", tmp_path / "tmp")


def _wait_gone(path: Path) -> None:
    for _ in range(200):  # the trash is deleted by a background `rm`
        if not any(path.iterdir()):
            return
        time.sleep(0.01)


def test_prune_removes_what_nobody_keeps_or_leases(tmp_path: Path) -> None:
    s = _snaps(tmp_path)
    assert s.list() == [A, B, C]
    assert s.prune({A}, dry_run=True) == [(B, 10), (C, 10)]
    assert s.list() == [A, B, C]  # dry run
    s.use([B])
    assert s.leased() == {B}  # our own lease counts as alive
    assert s.prune({A}) == [(C, 10)]
    assert s.list() == [A, B]
    s.release()
    assert s.leased() == set() and not any((s.dir / ".leases").iterdir())
    assert s.prune({A}) == [(B, 10)]
    assert s.list() == [A]


def test_grace_keeps_young_snapshots(tmp_path: Path) -> None:
    s = _snaps(tmp_path)
    assert s.prune(set(), grace=600) == []
    old = time.time() - 3600
    os.utime(s.path(C), (old, old))
    assert [c for c, _ in s.prune(set(), grace=600)] == [C]


def test_a_lease_held_by_another_process_lives_until_it_ends(tmp_path: Path) -> None:
    s = _snaps(tmp_path)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path;"
            "from builder.snapshot import Snapshotter;"
            "s = Snapshotter(Path(sys.argv[2]), Path(sys.argv[3])); s.use([sys.argv[4]]);"
            "print('leased', flush=True); sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code, str(REPO), str(s.dir), str(s.tmp), C],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"leased\n"
        assert s.leased() == {C}
        assert [c for c, _ in s.prune(set())] == [A, B]
        assert s.list() == [C]
    finally:
        p.kill()  # dies without releasing: the lease file stays, but nobody holds its lock
        p.wait()
    assert len(list((s.dir / ".leases").iterdir())) == 1
    assert s.leased() == set()  # ... so it is stale, and removed
    assert not any((s.dir / ".leases").iterdir())
    assert [c for c, _ in s.prune(set())] == [C]


def test_lease_files_and_lock_are_not_snapshots(tmp_path: Path) -> None:
    s = _snaps(tmp_path)
    s.use([A])
    assert s.list() == [A, B, C]
    s.release()
    _wait_gone(s.tmp)
