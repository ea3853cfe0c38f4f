"""Identical copies a commit finds already in the store are reclaimed in batches (builder.snapshot).

A `--no-cache` rebuild recreates every snapshot the store holds already; deleting each copy at
once (a background `rm` per step) competes with the next build's file creation on a
discard-mounted disk and made repeated builds slower run after run (issue 18)."""
from __future__ import annotations

import time
from pathlib import Path

from builder import snapshot
from builder.snapshot import Snapshotter

A = "sha256:" + "a" * 64


def _copy(s: Snapshotter, files: int = 3):
    active = s.prepare()
    for i in range(files):
        (active.upper / f"f{i}").write_text("x")
    return active


def _deferred(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("reclaim-"))


def _wait_empty_trash(tmp: Path) -> None:
    for _ in range(300):
        if not any(p.name.startswith("trash-") for p in tmp.iterdir()):
            return
        time.sleep(0.01)
    raise AssertionError(f"trash left in {tmp}: {list(tmp.iterdir())}")


def test_a_second_identical_commit_is_set_aside_not_deleted(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path / "snaps", tmp_path / "tmp")
    first = s.commit(_copy(s), A, 100)
    assert (first / "f0").read_text() == "x"
    again = s.commit(_copy(s), A, 100)
    assert again == first and (first / "f2").exists()
    left = _deferred(tmp_path / "tmp")
    assert len(left) == 1 and left[0].startswith("reclaim-100-")
    assert not any(p.name.startswith(("trash-", "snap-")) for p in (tmp_path / "tmp").iterdir())


def test_the_batch_is_reclaimed_past_its_budget(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(snapshot, "DEFER_MAX_DIRS", 3)
    s = Snapshotter(tmp_path / "snaps", tmp_path / "tmp")
    s.commit(_copy(s), A, 10)
    for _ in range(3):
        s.commit(_copy(s), A, 10)
    assert len(_deferred(tmp_path / "tmp")) == 3  # at the budget: kept
    s.commit(_copy(s), A, 10)  # past it: the whole batch goes
    assert _deferred(tmp_path / "tmp") == []
    _wait_empty_trash(tmp_path / "tmp")


def test_the_byte_budget_counts_too(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(snapshot, "DEFER_MAX_BYTES", 1000)
    s = Snapshotter(tmp_path / "snaps", tmp_path / "tmp")
    s.commit(_copy(s), A, 10)
    s.commit(_copy(s), A, 600)
    assert len(_deferred(tmp_path / "tmp")) == 1
    s.commit(_copy(s), A, 600)
    assert _deferred(tmp_path / "tmp") == []


def test_prune_reclaims_the_batch(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path / "snaps", tmp_path / "tmp")
    s.commit(_copy(s), A, 10)
    s.commit(_copy(s), A, 10)
    assert len(_deferred(tmp_path / "tmp")) == 1
    s.prune({A})
    assert _deferred(tmp_path / "tmp") == []
    assert s.has(A)
    _wait_empty_trash(tmp_path / "tmp")
