"""Hardlinks and xattrs on the COPY/ADD path without a build: the context digest, the copier,
export_tree (COPY --from's source side) and ADD's archive extraction."""
from __future__ import annotations

import io
import os
import struct
import tarfile
from pathlib import Path

import pytest

from builder.context import BuildContext, read_xattrs
from builder.engine.copier import Copier, Item
from builder.engine.fsview import LayeredFS, export_tree
from builder.engine.transfer import _extract
from builder.errors import BuildStepError

CAP = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)  # cap_net_bind_service+ep


def _tree(base: Path) -> Path:
    (base / "sub").mkdir(parents=True)
    (base / "a").write_text("shared\n")
    os.link(base / "a", base / "sub" / "b")
    (base / "plain").write_text("p\n")
    os.setxattr(base / "plain", "user.k", b"v\xff")
    os.setxattr(base / "sub", "user.dir", b"d")
    return base


def _digest(root: Path, rel: str) -> str:
    ctx = BuildContext(root)
    return ctx.digest(ctx.select(rel)[0])


def test_digest_covers_xattrs_and_hardlinks_within_a_source(tmp_path: Path) -> None:
    ctx = _tree(tmp_path / "ctx")
    base = _digest(ctx, "/")

    os.link(ctx / "a", tmp_path / "elsewhere")  # a link from outside the source: no change
    assert _digest(ctx, "/") == base

    os.setxattr(ctx / "plain", "user.k", b"other")
    assert _digest(ctx, "/") != base
    os.setxattr(ctx / "plain", "user.k", b"v\xff")
    assert _digest(ctx, "/") == base

    os.setxattr(ctx / "sub", "user.dir", b"changed")  # directories' xattrs count too
    assert _digest(ctx, "/") != base
    os.setxattr(ctx / "sub", "user.dir", b"d")

    (ctx / "sub" / "b").unlink()  # same bytes and mode, no longer the same inode
    (ctx / "sub" / "b").write_text("shared\n")
    os.chmod(ctx / "sub" / "b", os.stat(ctx / "a").st_mode & 0o7777)
    assert _digest(ctx, "/") != base


def test_digest_keeps_the_xattrs_for_the_copier(tmp_path: Path) -> None:
    ctx_dir = _tree(tmp_path / "ctx")
    ctx = BuildContext(ctx_dir)
    assert ctx.known_lstat(str(ctx_dir / "plain")) is None  # not digested yet: unknown
    ctx.digest(ctx.select("/")[0])
    assert ctx.known_lstat(str(ctx_dir / "plain")) is not None
    assert ctx.known_xattrs(str(ctx_dir / "plain")) == (("user.k", b"v\xff"),)
    assert ctx.known_xattrs(str(ctx_dir / "a")) == ()


def test_read_xattrs_skips_overlay_bookkeeping(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_text("x")
    os.setxattr(p, "user.overlay.origin", b"o")
    os.setxattr(p, "user.keep", b"1")
    assert read_xattrs(str(p)) == (("user.keep", b"1"),)


@pytest.mark.needs_root
@pytest.mark.parametrize("from_context", [True, False], ids=["context", "plain-dir"])
def test_copier_keeps_hardlinks_and_xattrs(tmp_path: Path, from_context: bool) -> None:
    src = _tree(tmp_path / "src")
    (src / "cap").write_text("#!/bin/sh\n")
    os.chown(src / "cap", 1234, 1234)
    os.setxattr(src / "cap", "security.capability", CAP)
    ctx = None
    if from_context:
        ctx = BuildContext(src)
        ctx.digest(ctx.select("/")[0])
    up = tmp_path / "up"
    up.mkdir()
    # --chown: the kernel drops security.capability on chown, so xattrs must come after it
    c = Copier(up, LayeredFS([up]), owner=None, context=ctx)
    c.copy([Item("src", path=str(src), ctx_rel="" if from_context else None)], "/dst", dest_is_dir=True)
    a, b = os.stat(up / "dst" / "a"), os.stat(up / "dst" / "sub" / "b")
    assert (a.st_ino, a.st_nlink) == (b.st_ino, 2)
    assert (up / "dst" / "sub" / "b").read_text() == "shared\n"
    if from_context:
        # the build context's xattrs do not reach the image under BuildKit (docker buildx sends
        # none: tests/differential context_xattrs_kept), so pybuild copies none either
        for n in ("plain", "sub", "cap"):
            assert os.listxattr(up / "dst" / n) == []
    else:
        assert os.getxattr(up / "dst" / "plain", "user.k") == b"v\xff"
        assert os.getxattr(up / "dst" / "sub", "user.dir") == b"d"
        assert os.getxattr(up / "dst" / "cap", "security.capability") == CAP
    assert os.stat(up / "dst" / "cap").st_uid == 0  # COPY owns files by root unless --chown
    assert os.stat(up / "dst" / "plain").st_nlink == 1


@pytest.mark.needs_root
def test_copier_links_only_within_one_source(tmp_path: Path) -> None:
    """As BuildKit copies each source on its own: names of one inode given as two sources
    are two files (and an overlap of two sources never links to a replaced name)."""
    src = _tree(tmp_path / "src")
    up = tmp_path / "up"
    up.mkdir()
    c = Copier(up, LayeredFS([up]), owner=None)
    c.copy([Item("a", path=str(src / "a")), Item("b", path=str(src / "sub" / "b"))], "/d/", dest_is_dir=True)
    assert os.stat(up / "d" / "a").st_ino != os.stat(up / "d" / "b").st_ino


@pytest.mark.needs_root
def test_export_tree_keeps_hardlinks_and_capabilities(tmp_path: Path) -> None:
    low = _tree(tmp_path / "low")
    (low / "cap").write_text("x")
    os.chown(low / "cap", 5, 5)
    os.setxattr(low / "cap", "security.capability", CAP)
    dest = tmp_path / "out"
    export_tree(LayeredFS([low]), "/", dest)
    assert os.stat(dest / "a").st_ino == os.stat(dest / "sub" / "b").st_ino
    assert os.stat(dest / "cap").st_uid == 5
    assert os.getxattr(dest / "cap", "security.capability") == CAP
    assert os.getxattr(dest / "plain", "user.k") == b"v\xff"


def _tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, extra in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = 0o755 if kind == "dir" else 0o644
            data = None
            if kind == "file":
                data = extra or b"x"
                ti.size = len(data)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, extra
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, extra
            elif kind == "xattr":
                data = b"x"
                ti.size = 1
                ti.pax_headers = {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in extra.items()}
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def test_extract_makes_hardlinks_and_restores_xattrs(tmp_path: Path) -> None:
    t = tmp_path / "t.tar"
    t.write_bytes(_tar([("f", "xattr", {"user.a": b"1", "security.capability": CAP,
                                         "trusted.overlay.opaque": b"y"}), ("g", "link", "f"),
                        ("h", "xattr", {"security.capability": CAP}), ("h", "file", b"replaced")]))
    out = tmp_path / "out"
    _extract(str(t), out)
    assert os.stat(out / "f").st_ino == os.stat(out / "g").st_ino
    # security.* restored; user.* not (as BuildKit's unpack); overlay bookkeeping not either
    assert read_xattrs(str(out / "f")) == (("security.capability", CAP),)
    assert read_xattrs(str(out / "h")) == ()  # a later entry of the same name replaced the first


@pytest.mark.parametrize("entries", [
    [("d", "dir", None), ("d/f", "file", None), ("hl", "link", "d")],
    [("s", "sym", "f"), ("f", "file", None), ("hl", "link", "s")],
    [("hl", "link", "f"), ("f", "file", None)],
    [("f", "file", None), ("hl", "link", "../f")],
], ids=["to-directory", "to-symlink", "to-later-entry", "dotdot"])
def test_extract_refuses_hardlinks_not_to_an_earlier_file(tmp_path: Path, entries) -> None:
    t = tmp_path / "t.tar"
    t.write_bytes(_tar(entries))
    with pytest.raises(BuildStepError, match="cannot extract t.tar"):
        _extract(str(t), tmp_path / "out")


def test_extract_sets_no_xattr_through_a_symlinked_parent(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("host")
    t = tmp_path / "t.tar"
    # d/f gets its xattr recorded, then d is replaced by a symlink to a host directory
    t.write_bytes(_tar([("d", "dir", None), ("d/f", "xattr", {"security.capability": CAP}), ("d", "sym", str(outside))]))
    try:
        _extract(str(t), tmp_path / "out")
    except BuildStepError:
        pass  # refusing is fine too
    assert read_xattrs(str(outside / "f")) == ()
