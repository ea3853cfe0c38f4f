"""Hardlinks and extended attributes through COPY and ADD, as BuildKit keeps them.

ADD of a local tar: a hardlink entry becomes a real hardlink (one inode, nlink 2) in the image
and a hardlink entry in the layer tar; escaping or dangling hardlinks are still refused.
COPY from the context and COPY --from a stage: files of one source that share an inode stay
one inode; a broken hardlink is a cache miss. The build context's xattrs do not reach the image
(docker buildx sends none to BuildKit: tests/differential context_xattrs_not_copied); an ADD
archive's security.capability does (not its user.* ones), as a PAX SCHILY.xattr record, also after --chown.
"""
from __future__ import annotations

import io
import os
import struct
import tarfile
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.buildlib import build, layer_files, ok, steps, validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]

# vfs_cap_data v2, effective: cap_net_bind_service (10) permitted
CAP = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


def _pax_xattr(member: tarfile.TarInfo, key: str) -> bytes | None:
    v = member.pax_headers.get("SCHILY.xattr." + key)
    return None if v is None else v.encode("utf-8", "surrogateescape")


def _image_files(root: Path, ref: str) -> dict[str, tarfile.TarInfo]:
    """name -> TarInfo over every layer of `ref` above the base (later layers win)."""
    img = validate_layout(root, ref)
    out: dict[str, tarfile.TarInfo] = {}
    for layer in img["manifest"]["layers"][1:]:
        out.update(layer_files(root, layer["digest"]))
    return out


def _run(root: Path, ref: str, *cmd: str) -> str:
    r = run_cli("run", "--rm", ref, *cmd, env={"PYBUILD_ROOT": str(root)})
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes, xattrs: dict[str, bytes] | None = None) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_700_000_000
    if xattrs:
        ti.pax_headers = {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()}
    return ti, data


def _link(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode, ti.mtime = tarfile.LNKTYPE, target, 0o644, 1_700_000_000
    return ti, None


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
    return ti, None


@pytest.mark.skipif(not hasattr(tarfile, "data_filter"), reason="needs Python >= 3.11.4 (tarfile filters)")
def test_add_tar_hardlink_is_one_inode_in_the_image(root: Path, tmp_path: Path) -> None:
    tar = _tar([_file("d/a", b"same\n", {"user.origin": b"tar", "security.capability": CAP}),
                _link("d/b", "d/a"), _file("d/c", b"other\n")])
    ctx = write_ctx(tmp_path / "ctx", {"t.tar": tar, "Dockerfile":
                                       "FROM busybox\nADD t.tar /x/\n"
                                       # a RUN step of the build sees one inode with two names
                                       'RUN test "$(stat -c "%h %i" /x/d/a)" = "$(stat -c "%h %i" /x/d/b)" '
                                       '&& test "$(stat -c %h /x/d/a)" = 2 && test "$(cat /x/d/b)" = same '
                                       '&& test "$(stat -c %h /x/d/c)" = 1\n'})
    ok(build(root, ctx, "-t", "t"))

    files = _image_files(root, "t")
    assert files["x/d/a"].isfile() and files["x/d/a"].size == 5
    assert files["x/d/b"].islnk() and files["x/d/b"].linkname == "x/d/a"
    assert files["x/d/c"].isfile()
    # the archive's security.* xattrs are restored; its user.* ones are not (BuildKit's unpack)
    assert _pax_xattr(files["x/d/a"], "user.origin") is None
    assert _pax_xattr(files["x/d/a"], "security.capability") == CAP

    # and a container of the image sees it too
    out = _run(root, "t", "stat", "-c", "%h %i", "/x/d/a", "/x/d/b").split("\n")
    assert out[0] == out[1] and out[0].startswith("2 ")


@pytest.mark.skipif(not hasattr(tarfile, "data_filter"), reason="needs Python >= 3.11.4 (tarfile filters)")
@pytest.mark.parametrize("entries", [
    [_file("a", b"x"), _link("hl", "../../../../etc/passwd")],
    [_link("hl", "/etc/passwd")],
    [_link("early", "later"), _file("later", b"x")],  # not an EARLIER file of the archive
    [_dir("d"), _file("d/f", b"x"), _link("hl", "d")],  # a directory is no hardlink target
], ids=["dotdot", "absolute", "forward", "directory"])
def test_add_tar_escaping_or_dangling_hardlink_still_refused(root: Path, tmp_path: Path, entries) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"t.tar": _tar(entries), "Dockerfile": "FROM busybox\nADD t.tar /x/\n"})
    r = build(root, ctx, "-t", "t")
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "Traceback" not in err and "cannot extract t.tar" in err, err


def _ctx_with_links(ctx: Path) -> Path:
    write_ctx(ctx, {"app/one": "shared content\n", "app/cap": "#!/bin/sh\n", "app/note": "n\n",
                    "app/solo": "s\n"})
    os.link(ctx / "app" / "one", ctx / "app" / "two")
    os.link(ctx / "app" / "one", ctx / "outside")  # a third name outside the copied source
    os.chmod(ctx / "app" / "cap", 0o755)
    os.setxattr(ctx / "app" / "cap", "security.capability", CAP)
    os.setxattr(ctx / "app" / "note", "user.comment", b"hello \xff")
    return ctx


def _check_app_layer(files: dict[str, tarfile.TarInfo], prefix: str) -> None:
    one, two = files[f"{prefix}/one"], files[f"{prefix}/two"]
    assert one.isfile() and one.size == len("shared content\n")
    assert two.islnk() and two.linkname == f"{prefix}/one"
    assert files[f"{prefix}/solo"].isfile()
    assert _pax_xattr(files[f"{prefix}/cap"], "security.capability") is None  # context xattrs: not copied
    assert _pax_xattr(files[f"{prefix}/note"], "user.comment") is None


@pytest.mark.root_only  # the test sets security.capability on its context files
def test_copy_keeps_hardlinks_and_xattrs(root: Path, tmp_path: Path) -> None:
    ctx = _ctx_with_links(tmp_path / "ctx")
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS src\nCOPY app/ /app/\n"
        "FROM busybox\nCOPY --from=src /app/ /copied/\n"
        'RUN test "$(stat -c "%h %i" /copied/one)" = "$(stat -c "%h %i" /copied/two)"\n')
    ok(build(root, ctx, "-t", "first", "--target", "src"))
    _check_app_layer(_image_files(root, "first"), "app")
    out = _run(root, "first", "stat", "-c", "%h %i", "/app/one", "/app/two").split("\n")
    assert out[0] == out[1] and out[0].startswith("2 ")  # the name outside the source is not copied

    ok(build(root, ctx, "-t", "second"))
    _check_app_layer(_image_files(root, "second"), "copied")


@pytest.mark.root_only  # the test sets security.capability on its context files
def test_add_archive_with_chown_keeps_the_capability(root: Path, tmp_path: Path) -> None:
    ti, data = _file("cap", b"#!/bin/sh\n", {"security.capability": CAP})
    ti.mode = 0o755
    note = _file("note", b"n\n", {"user.comment": b"hello \xff"})
    ctx = write_ctx(tmp_path / "ctx", {"t.tar": _tar([(ti, data), note]),
                                       "Dockerfile": "FROM busybox\nADD --chown=1000:1000 t.tar /app/\n"})
    ok(build(root, ctx, "-t", "t"))
    files = _image_files(root, "t")
    # the kernel drops security.capability on chown: it is set after it
    assert _pax_xattr(files["app/cap"], "security.capability") == CAP
    assert _pax_xattr(files["app/note"], "user.comment") is None  # BuildKit drops an archive's user.*
    assert (files["app/cap"].uid, files["app/cap"].mode) == (1000, 0o755)


@pytest.mark.root_only  # the test sets security.capability on its context files
def test_hardlink_change_alone_misses_the_cache(root: Path, tmp_path: Path) -> None:
    ctx = _ctx_with_links(tmp_path / "ctx")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY app/ /app/\n")
    ok(build(root, ctx, "-t", "t"))
    r = build(root, ctx, "-t", "t")
    ok(r)
    assert ("COPY app/ /app/", "CACHED") in steps(r.stderr)

    # the same bytes, mode and owner, but no longer a hardlink of app/one
    two = ctx / "app" / "two"
    data = two.read_bytes()
    two.unlink()
    two.write_bytes(data)
    os.chmod(two, os.stat(ctx / "app" / "one").st_mode & 0o7777)
    r = build(root, ctx, "-t", "t")
    ok(r)
    assert ("COPY app/ /app/", "DONE") in steps(r.stderr)
    assert _image_files(root, "t")["app/two"].isfile()
