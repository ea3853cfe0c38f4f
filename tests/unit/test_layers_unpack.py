"""apply_layer: whiteouts, opaque dirs, hardlinks, metadata, and hostile archives that must
write nothing outside the root (checked with a canary directory beside it)."""
from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile

import pytest

from builder.errors import LayerError
from builder.layers.tarball import write_layer, write_tar
from builder.layers.unpack import apply_layer
from builder.oci.store import DirStore


def tar_of(*entries) -> bytes:
    """entries: (name, kind, payload) with kind file/dir/sym/link/chr."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, payload in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_600_000_000
            if kind == "file":
                data = payload if isinstance(payload, bytes) else str(payload or "").encode()
                ti.size = len(data)
                ti.mode = 0o644
                t.addfile(ti, io.BytesIO(data))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "link": tarfile.LNKTYPE,
                       "chr": tarfile.CHRTYPE}[kind]
            ti.mode = 0o755
            if kind in ("sym", "link"):
                ti.linkname = payload
            if kind == "chr":
                ti.devmajor, ti.devminor = payload
            t.addfile(ti)
    return buf.getvalue()


@pytest.fixture
def box(tmp_path):
    """root/ to unpack into, and canary/ beside it that must stay untouched."""
    root, canary = tmp_path / "root", tmp_path / "canary"
    root.mkdir()
    canary.mkdir()
    (canary / "keep").write_text("precious")
    yield root, canary
    assert sorted(os.listdir(canary)) == ["keep"], "something was written outside the root"
    assert (canary / "keep").read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == ["canary", "root"]


HOSTILE = {
    "dotdot": [("../canary/evil", "file", "x")],
    "dotdot-deep": [("a/../../canary/evil", "file", "x")],
    "absolute": [("/tmp/../canary/evil", "file", "x")],
    "absolute-etc": [("/etc/x", "file", "x")],
    "symlink-absolute-name": [("/evil", "sym", "/etc")],
    "whiteout-dotdot": [("a", "dir", None), ("a/.wh...", "file", "")],
    "hardlink-outside": [("h", "link", "../canary/keep")],
    "hardlink-absolute": [("h", "link", "/etc/passwd")],
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_entries_are_refused_naming_the_entry(box, name):
    root, canary = box
    entries = HOSTILE[name]
    with pytest.raises(LayerError) as e:
        apply_layer(io.BytesIO(tar_of(*entries)), root)
    assert repr(entries[-1][0]) in str(e.value)


def test_symlink_then_file_through_it_stays_inside(box):
    root, canary = box
    layer = tar_of(("evil", "sym", str(canary)), ("evil/pwned", "file", "x"),
                   ("rel", "sym", "../../../canary"), ("rel/pwned2", "file", "y"),
                   ("up", "sym", ".."), ("up/up/pwned3", "file", "z"))
    apply_layer(io.BytesIO(layer), root)
    # Each link was followed as if root were "/": the files landed inside root.
    assert (root / str(canary).lstrip("/") / "pwned").read_text() == "x"
    assert (root / "canary" / "pwned2").read_text() == "y"
    assert (root / "pwned3").read_text() == "z"
    assert os.readlink(root / "evil") == str(canary)


def test_symlink_overwritten_by_file_does_not_write_through(box):
    root, canary = box
    apply_layer(io.BytesIO(tar_of(("keep", "sym", str(canary / "keep")))), root)
    apply_layer(io.BytesIO(tar_of(("keep", "file", "replaced"))), root)
    assert (root / "keep").read_text() == "replaced" and not (root / "keep").is_symlink()


def test_hardlink_through_symlink_to_outside_stays_inside(box):
    root, canary = box
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("inner")
    layer = tar_of(("out", "sym", str(canary.parent)), ("h", "link", "out/../etc/passwd"))
    with pytest.raises(LayerError):  # ".." in a hardlink target: refused outright
        apply_layer(io.BytesIO(layer), root)
    layer = tar_of(("out2", "sym", "/etc"), ("h2", "link", "out2/passwd"))
    apply_layer(io.BytesIO(layer), root)
    assert os.stat(root / "h2").st_ino == os.stat(root / "etc" / "passwd").st_ino


def test_device_nodes_can_be_rejected(box):
    root, _ = box
    with pytest.raises(LayerError, match="'dev/null'"):
        apply_layer(io.BytesIO(tar_of(("dev", "dir", None), ("dev/null", "chr", (1, 3)))), root, devices="reject")
    warnings: list[str] = []
    apply_layer(io.BytesIO(tar_of(("dev", "dir", None), ("dev/null", "chr", (1, 3)))), root, devices="skip",
                warn=warnings.append)
    assert not (root / "dev" / "null").exists() and warnings


def test_garbage_is_a_layer_error(box):
    root, _ = box
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(b"\x1f\x8b" + b"not gzip at all" * 100), root)
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(tar_of(("a", "file", "x" * 5000))[:1500]), root)


def test_whiteouts_opaque_dirs_and_diff_id(tmp_path):
    root = tmp_path / "root"
    base = tar_of(("a", "dir", None), ("a/x", "file", "1"), ("a/y", "file", "2"), ("b", "dir", None),
                  ("b/old", "file", "o"), ("c", "file", "c"), ("gone", "dir", None), ("gone/deep", "file", "d"))
    apply_layer(io.BytesIO(base), root)
    top = tar_of(("a/.wh.x", "file", ""), ("b", "dir", None), ("b/-early", "file", "e"),
                 ("b/.wh..wh..opq", "file", ""), ("b/new", "file", "n"), (".wh.gone", "file", ""))
    diff_id = apply_layer(io.BytesIO(gzip.compress(top)), root)
    import hashlib
    assert diff_id == "sha256:" + hashlib.sha256(top).hexdigest()
    assert sorted(os.listdir(root / "a")) == ["y"]
    # opaque removed lower content but kept what this layer added, wherever it sorted
    assert sorted(os.listdir(root / "b")) == ["-early", "new"]
    assert not (root / "gone").exists() and (root / "c").exists()


@pytest.mark.needs_root
def test_overlay_mode_writes_overlay_whiteouts(tmp_path):
    root = tmp_path / "layer"
    apply_layer(io.BytesIO(tar_of(("d", "dir", None), ("d/.wh..wh..opq", "file", ""), (".wh.f", "file", ""))),
                root, whiteouts="overlay")
    st = os.lstat(root / "f")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(root / "d", "trusted.overlay.opaque") == b"y"


def test_round_trip_preserves_modes_links_mtimes(tmp_path):
    from tests.unit.test_layers_tarball import make_tree

    src = make_tree(tmp_path / "src")
    os.utime(src / "etc", ns=(5_000_000_000, 5_000_000_000))
    store = DirStore(tmp_path / "store")
    info = write_layer(src, store)
    dst = tmp_path / "dst"
    assert apply_layer(store.path(info.descriptor.digest), dst) == info.diff_id
    # Writing the unpacked tree again gives the same tar: nothing lost either way.
    assert write_tar(dst, io.BytesIO())[0] == info.diff_id
    assert os.stat(dst / "bin" / "tool").st_mode & 0o7777 == 0o4755
    assert os.stat(dst / "bin" / "tool").st_ino == os.stat(dst / "bin" / "tool-hardlink").st_ino
    assert os.stat(dst / "etc").st_mtime == 5
    assert os.getxattr(dst / "etc" / "passwd", "user.comment") == b"hello \xff binary"


@pytest.mark.needs_root
def test_owners_devices_and_capabilities_restored(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    (src / "ping").write_bytes(b"bin")
    os.chown(src / "ping", 1234, 5678)
    os.chmod(src / "ping", 0o4755)
    cap = bytes.fromhex("0100000200200000000000000000000000000000")
    os.setxattr(src / "ping", "security.capability", cap)
    out = io.BytesIO()
    d, _ = write_tar(src, out)
    out.seek(0)
    dst = tmp_path / "dst"
    assert apply_layer(out, dst) == d
    st = os.stat(dst / "ping")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 5678, 0o4755)
    assert os.getxattr(dst / "ping", "security.capability") == cap
    assert os.stat(dst / "null").st_rdev == os.makedev(1, 3)


def test_directory_swapped_for_symlink_mid_layer_stays_inside(box):
    # A hostile order: the parent "a" is resolved (and cached) as a directory, then replaced by
    # a symlink to the outside, then written through.
    root, canary = box
    layer = tar_of(("a", "dir", None), ("a/x", "file", "1"), ("a", "sym", str(canary)), ("a/y", "file", "2"),
                   ("b", "dir", None), ("b/z", "file", "3"),
                   ("b", "sym", "../canary"), ("b/w", "file", "4"))
    apply_layer(io.BytesIO(layer), root)
    assert (root / str(canary).lstrip("/") / "y").read_text() == "2"
    assert (root / "canary" / "w").read_text() == "4"


def test_read_only_directory_still_takes_its_children(tmp_path):
    import tempfile

    layer = tar_of(("ro", "dir", None), ("ro/f", "file", "x"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(layer)) as src, tarfile.open(fileobj=buf, mode="w") as dst:
        for m in src:
            if m.name == "ro":
                m.mode = 0o555
            dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    base = tempfile.mkdtemp(dir=tmp_path if os.geteuid() else "/tmp")
    try:
        os.chmod(base, 0o755)
        root = os.path.join(base, "root")
        os.mkdir(root)
        pid = os.fork()
        if pid == 0:  # as a user who cannot write into 0555 directories (root could anyway)
            code = 2
            try:
                if os.geteuid() == 0:
                    os.chown(root, 65534, 65534)
                    os.setgid(65534)
                    os.setuid(65534)
                apply_layer(io.BytesIO(buf.getvalue()), root, chown=False)
                code = 0 if open(os.path.join(root, "ro", "f")).read() == "x" else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.stat(os.path.join(root, "ro")).st_mode & 0o7777 == 0o555
    finally:
        subprocess_rm(base)


def subprocess_rm(path: str) -> None:
    for dirpath, dirs, _ in os.walk(path):
        for d in dirs:
            os.chmod(os.path.join(dirpath, d), 0o755)
    import shutil

    shutil.rmtree(path)
