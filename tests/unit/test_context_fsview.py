"""The layer view (overlay rules by hand), COPY's copier, chmod parsing and the snapshotter."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from builder.engine.copier import Copier, Item, parse_chmod, resolve_owner
from builder.engine.fsview import LayeredFS, copy_up
from builder.errors import BuildStepError
from builder.snapshot import Snapshotter, chain_id, chain_ids


def whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def tree(base: Path, files: dict[str, str]) -> Path:
    for rel, data in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if data.startswith("->"):
            p.symlink_to(data[2:])
        else:
            p.write_text(data)
    return base


@pytest.mark.needs_root
def test_overlay_rules(tmp_path: Path) -> None:
    low = tree(tmp_path / "low", {"etc/a": "low-a", "etc/b": "low-b", "d/x": "x", "o/keep": "k"})
    up = tree(tmp_path / "up", {"etc/a": "up-a", "o/new": "n"})
    whiteout(up / "etc" / "b")
    os.setxattr(up / "o", "trusted.overlay.opaque", b"y")
    v = LayeredFS([up, low])
    assert Path(v.find("/etc/a")[0]).read_text() == "up-a"
    assert v.find("/etc/b") is None  # whited out
    assert v.find("/d/x") is not None  # only in the lower
    assert v.listdir("/etc") == ["a"]
    assert v.listdir("/o") == ["new"]  # opaque: the lower's content is hidden
    assert v.find("/o/keep") is None


def test_resolve_stays_inside_the_root(tmp_path: Path) -> None:
    low = tree(tmp_path / "low", {"real/f": "f", "link": "->/real", "rel": "->real", "up": "->../../../..",
                                  "loop": "->loop"})
    v = LayeredFS([low])
    assert v.resolve("/link/f") == "/real/f"
    assert v.resolve("/rel/f") == "/real/f"
    assert v.resolve("/up/etc/passwd") == "/etc/passwd"  # `..` stops at the image root
    assert v.resolve("/link", follow_last=False) == "/link"
    with pytest.raises(BuildStepError, match="too many levels"):
        v.resolve("/loop/x")


def test_copy_up_takes_metadata_from_the_lower(tmp_path: Path) -> None:
    low = tree(tmp_path / "low", {"srv/app/x": "x"})
    os.chmod(low / "srv", 0o700)
    up = tmp_path / "up"
    up.mkdir()
    host = copy_up(LayeredFS([up, low]), up, "/srv/app/new")
    assert host == up / "srv" / "app" / "new"
    assert stat.S_IMODE(os.stat(up / "srv").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(host).st_mode) == 0o755


def test_chmod_octal_and_symbolic() -> None:
    assert parse_chmod("0755")(0o644) == 0o755
    assert parse_chmod("u+x,go-w")(0o666) == 0o744
    assert parse_chmod("a=r")(0o777) == 0o444
    assert parse_chmod("+X")(0o644, True) == 0o755 and parse_chmod("+X")(0o644, False) == 0o644
    assert parse_chmod("g+s")(0o755) == 0o2755
    assert parse_chmod(None) is None
    with pytest.raises(BuildStepError):
        parse_chmod("u+q")


def test_owner_names_from_the_image(tmp_path: Path) -> None:
    low = tree(tmp_path / "low", {"etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
                                  "etc/group": "root:x:0:\nstaff:x:50:\n"})
    v = LayeredFS([low])
    o = resolve_owner("app:staff", v)
    assert (o.uid, o.gid) == (1000, 50)
    # BuildKit's rules (tests/differential: copy_chown_*): a name takes its passwd gid, a
    # number alone the same number; unknown names are no error (user 0:0, group unchanged)
    o = resolve_owner("app", v)
    assert (o.uid, o.gid) == (1000, 1001)
    o = resolve_owner("1000", v)
    assert (o.uid, o.gid) == (1000, 1000)
    o = resolve_owner("7:8", v)
    assert (o.uid, o.gid) == (7, 8)
    o = resolve_owner("nobody", v)
    assert (o.uid, o.gid) == (0, 0)
    o = resolve_owner("app:nogroup", v)
    assert (o.uid, o.gid) == (1000, 1001)


@pytest.mark.needs_root
def test_copier_destination_rules(tmp_path: Path) -> None:
    src = tree(tmp_path / "src", {"one.txt": "1", "dir/a": "a", "dir/sub/b": "b"})
    low = tree(tmp_path / "low", {"existing/keep": "k"})
    up = tmp_path / "up"
    up.mkdir()
    c = Copier(up, LayeredFS([up, low]), owner=None)
    c.copy([Item("one.txt", path=str(src / "one.txt"))], "/renamed.txt", dest_is_dir=False)
    c.copy([Item("one.txt", path=str(src / "one.txt"))], "/existing", dest_is_dir=False)  # an existing dir
    c.copy([Item("dir", path=str(src / "dir"))], "/newdir", dest_is_dir=False)  # contents, not the dir
    c.copy([Item("x", data=b"inline", mode=0o600)], "/here/", dest_is_dir=True)
    assert (up / "renamed.txt").read_text() == "1"
    assert (up / "existing" / "one.txt").read_text() == "1"
    assert (up / "newdir" / "a").read_text() == "a" and (up / "newdir" / "sub" / "b").read_text() == "b"
    assert (up / "here" / "x").read_bytes() == b"inline"
    assert stat.S_IMODE(os.stat(up / "here" / "x").st_mode) == 0o600
    assert os.stat(up / "newdir" / "a").st_uid == 0


@pytest.mark.needs_root
def test_snapshotter_commit_and_stack(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path / "snaps", tmp_path / "tmp")
    a = s.prepare()
    (a.upper / "f").write_text("x")
    c1 = chain_id(None, "sha256:" + "1" * 64)
    s.commit(a, c1)
    assert s.has(c1) and (s.path(c1) / "f").read_text() == "x"
    b = s.prepare()
    s.commit(b, c1)  # a second writer of the same chain: the first one stays
    assert (s.path(c1) / "f").exists()
    c2 = chain_id(c1, "sha256:" + "2" * 64)
    assert chain_ids(["sha256:" + "1" * 64, "sha256:" + "2" * 64]) == [c1, c2]
    spec = s.mount_spec([c1, c2])
    assert spec.lowerdirs == (str(s.path(c2)), str(s.path(c1)))  # top first
    assert s.mount_spec([]).lowerdirs == (str(s.empty_dir()),)
    s.remove(c1)
    assert not s.has(c1)
    assert s.list() == []
