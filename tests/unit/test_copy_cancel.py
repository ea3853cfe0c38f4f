"""A COPY stops at the next file boundary once its cancel event is set (fail-fast)."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from builder.engine.copier import Copier, Item
from builder.engine.fsview import LayeredFS


def _tree(src: Path, n: int) -> None:
    for i in range(n):
        d = src / f"d{i // 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}").write_text("x")


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_cancel_set_before_copy_writes_nothing(tmp_path: Path) -> None:
    src, upper = tmp_path / "src", tmp_path / "upper"
    _tree(src, 50)
    upper.mkdir()
    ev = threading.Event()
    ev.set()
    c = Copier(upper, LayeredFS([upper]), owner=None, cancel=ev)
    with pytest.raises(KeyboardInterrupt):
        c.copy([Item("src", path=str(src))], "/dst", dest_is_dir=True)
    assert _files(upper) == []


def test_cancel_during_copy_stops_at_a_file_boundary(tmp_path: Path) -> None:
    src, upper = tmp_path / "src", tmp_path / "upper"
    _tree(src, 200)
    upper.mkdir()

    class SetAfter(threading.Event):  # set once the walk has visited 30 entries
        n = 0

        def is_set(self) -> bool:
            self.n += 1
            return self.n > 30

    c = Copier(upper, LayeredFS([upper]), owner=None, cancel=SetAfter())
    with pytest.raises(KeyboardInterrupt):
        c.copy([Item("src", path=str(src))], "/dst", dest_is_dir=True)
    assert len(_files(upper)) < 200


def test_no_cancel_copies_everything(tmp_path: Path) -> None:
    src, upper = tmp_path / "src", tmp_path / "upper"
    _tree(src, 200)
    upper.mkdir()
    Copier(upper, LayeredFS([upper]), owner=None, cancel=threading.Event()).copy(
        [Item("src", path=str(src))], "/dst", dest_is_dir=True)
    assert len(_files(upper)) == 200
