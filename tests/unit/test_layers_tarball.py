"""The deterministic single-pass layer writer: bytes, digests, formats, determinism."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import socket
import stat
import tarfile

import pytest
import zstandard

from builder.errors import LayerError
from builder.layers.changes import ChangeSet, Change, ADD, DELETE, OPAQUE
from builder.layers.tarball import write_layer, write_tar
from builder.oci import mediatypes as mt
from builder.oci.store import DirStore

needs_root = pytest.mark.needs_root


def make_tree(root, *, with_specials: bool = True):
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"\x7fELF" + bytes(3000))
    os.chmod(root / "bin" / "tool", 0o4755)  # setuid
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)  # sticky
    (root / "bin" / "sh").symlink_to("tool")
    os.link(root / "bin" / "tool", root / "bin" / "tool-hardlink")
    long_dir = root / ("d" * 80) / ("e" * 80)
    long_dir.mkdir(parents=True)
    (long_dir / "file-with-a-long-name.txt").write_text("long")
    (root / "ünïcödé.txt").write_text("utf8 name")
    (root / "empty").write_bytes(b"")
    (root / "big").write_bytes(os.urandom(3 << 20))
    if with_specials:
        os.mkfifo(root / "fifo")
    os.setxattr(root / "etc" / "passwd", "user.comment", b"hello \xff binary")
    return root


def read_tar(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return t.getmembers()


def test_layer_round_trips_through_python_tarfile(tmp_path):
    src = make_tree(tmp_path / "src")
    store = DirStore(tmp_path / "store")
    info = write_layer(src, store, compression="none")
    data = store.read_bytes(info.descriptor.digest)
    assert info.descriptor.media_type == mt.OCI_LAYER
    assert info.diff_id == info.descriptor.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert info.uncompressed_size == len(data) and len(data) % 512 == 0
    ms = {m.name: m for m in read_tar(data)}
    names = list(ms)
    assert names == sorted(names, key=lambda n: tuple(n.encode().split(b"/")))
    assert ms["etc"].isdir() and ms["etc/passwd"].isreg()
    assert ms["bin/tool"].mode == 0o4755 and ms["tmp"].mode == 0o1777
    assert ms["bin/sh"].issym() and ms["bin/sh"].linkname == "tool"
    assert ms["bin/tool-hardlink"].islnk() and ms["bin/tool-hardlink"].linkname == "bin/tool"
    long_name = f"{'d' * 80}/{'e' * 80}/file-with-a-long-name.txt"
    assert long_name in ms and "ünïcödé.txt" in ms
    assert ms["fifo"].isfifo()
    assert ms["big"].size == 3 << 20
    assert ms["etc/passwd"].pax_headers["SCHILY.xattr.user.comment"].encode("utf-8", "surrogateescape") == \
        b"hello \xff binary"
    for m in ms.values():
        assert m.uname == "" and m.gname == "" and m.uid == os.getuid()


def test_same_tree_same_digest_even_after_atime_touch(tmp_path):
    src = make_tree(tmp_path / "src")
    store = DirStore(tmp_path / "store")
    a = write_layer(src, store)
    for p in src.rglob("*"):
        if not p.is_symlink():
            st = p.stat()
            os.utime(p, ns=(st.st_atime_ns + 10**12, st.st_mtime_ns))  # atime only
    b = write_layer(src, store)
    assert a == b
    c = write_layer(src, store, compression="gzip")
    d = write_layer(src, store, compression="gzip")
    assert c == d and c.diff_id == a.diff_id and c.descriptor.digest != a.descriptor.digest


def test_same_content_different_machine_paths_same_digest(tmp_path):
    # A copy of the tree (new inodes, other ctimes, other location) gives identical bytes.
    s1 = make_tree(tmp_path / "one", with_specials=False)
    s2 = tmp_path / "two"
    os.system(f"cp -a {s1} {s2}")
    store = DirStore(tmp_path / "store")
    assert write_layer(s1, store).descriptor == write_layer(s2, store).descriptor


def test_source_date_epoch_clamps_newer_mtimes_only(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "old").write_text("o")
    (src / "new").write_text("n")
    os.utime(src / "old", (100, 100))
    out = io.BytesIO()
    write_tar(src, out, source_date_epoch=1000)
    ms = {m.name: m for m in read_tar(out.getvalue())}
    assert ms["old"].mtime == 100 and ms["new"].mtime == 1000
    d1 = write_tar(src, io.BytesIO(), source_date_epoch=1000)[0]
    os.utime(src / "new", None)  # touched again: still clamped, still the same digest
    assert write_tar(src, io.BytesIO(), source_date_epoch=1000)[0] == d1
    with pytest.raises(LayerError):
        write_tar(src, io.BytesIO(), source_date_epoch=-1)


def test_zstd_and_gzip_streams_decompress_to_the_diff_id(tmp_path):
    src = make_tree(tmp_path / "src")
    store = DirStore(tmp_path / "store")
    z = write_layer(src, store, compression="zstd")
    g = write_layer(src, store, compression="gzip")
    assert z.descriptor.media_type == mt.OCI_LAYER_ZSTD and g.descriptor.media_type == mt.OCI_LAYER_GZIP
    zraw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(store.read_bytes(z.descriptor.digest)),
                                                        read_across_frames=True).read()
    graw = gzip.decompress(store.read_bytes(g.descriptor.digest))
    assert zraw == graw
    assert "sha256:" + hashlib.sha256(zraw).hexdigest() == z.diff_id == g.diff_id
    assert len(zraw) == z.uncompressed_size


def test_socket_is_skipped_with_a_warning(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(src / "sock"))
    warnings: list[str] = []
    out = io.BytesIO()
    write_tar(src, out, warn=warnings.append)
    s.close()
    assert [m.name for m in read_tar(out.getvalue())] == ["a"]
    assert len(warnings) == 1 and "sock" in warnings[0]


def test_changeset_whiteouts_and_opaque(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "new").write_text("x")
    cs = ChangeSet(src, (Change(b"d/new", ADD), Change(b"gone", DELETE), Change(b"d", ADD),
                         Change(b"d", OPAQUE), Change(b"d/old", DELETE)))
    out = io.BytesIO()
    write_tar(cs, out)
    # whiteouts sort by their own names; the opaque marker comes right after its directory
    assert [m.name for m in read_tar(out.getvalue())] == [".wh.gone", "d", "d/.wh..wh..opq", "d/.wh.old", "d/new"]
    assert all(m.isreg() and m.size == 0 for m in read_tar(out.getvalue()) if ".wh." in m.name)


def test_unknown_compression_is_an_error(tmp_path):
    with pytest.raises(LayerError):
        write_layer(tmp_path, DirStore(tmp_path / "s"), compression="brotli")
    assert not list(DirStore(tmp_path / "s").walk())


@needs_root
def test_devices_owners_and_capabilities(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(src / "loop", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    (src / "ping").write_bytes(b"bin")
    os.chown(src / "ping", 1234, 5678)
    cap = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw+ep
    os.setxattr(src / "ping", "security.capability", cap)
    (src / "huge-id").write_text("x")
    os.chown(src / "huge-id", 3_000_000, 3_000_001)  # beyond ustar's 7 octal digits
    out = io.BytesIO()
    write_tar(src, out)
    ms = {m.name: m for m in read_tar(out.getvalue())}
    assert ms["null"].ischr() and (ms["null"].devmajor, ms["null"].devminor) == (1, 3)
    assert ms["loop"].isblk() and (ms["loop"].devmajor, ms["loop"].devminor) == (7, 0)
    assert (ms["ping"].uid, ms["ping"].gid) == (1234, 5678)
    assert ms["ping"].pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape") == cap
    assert (ms["huge-id"].uid, ms["huge-id"].gid) == (3_000_000, 3_000_001)


def test_zstd_output_does_not_depend_on_core_count(tmp_path, monkeypatch):
    src = make_tree(tmp_path / "src", with_specials=False)
    (src / "more").write_bytes(bytes(9 << 20))  # several 4 MiB zstd jobs
    digests = set()
    for cores in (1, 2, 8):
        monkeypatch.setattr("builder.layers.tarball.os.cpu_count", lambda c=cores: c)
        digests.add(write_layer(src, DirStore(tmp_path / "store")).descriptor.digest)
    assert len(digests) == 1


def test_pax_for_sizes_and_ids_beyond_ustar():
    from builder.layers.tarball import header

    big = 10 << 30  # > 8 GiB - 1, the ustar size limit
    hdr = header(b"huge.img", 0o644, 2**21 + 5, 7, big, 1_700_000_000, b"0")
    with tarfile.open(fileobj=io.BytesIO(hdr + bytes(1024)), mode="r|") as t:
        m = t.next()
        assert (m.name, m.size, m.uid, m.gid, m.mtime) == ("huge.img", big, 2**21 + 5, 7, 1_700_000_000)


def test_gnu_tar_extracts_our_layer_identically(tmp_path):
    import shutil
    import subprocess

    if shutil.which("tar") is None:
        pytest.skip("GNU tar not installed")
    src = make_tree(tmp_path / "src")
    out = tmp_path / "layer.tar"
    with open(out, "wb") as f:
        write_tar(src, f)
    dst = tmp_path / "dst"
    dst.mkdir()
    r = subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-C", str(dst), "-xpf", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for p in sorted(src.rglob("*")):
        q = dst / p.relative_to(src)
        a, b = os.lstat(p), os.lstat(q)
        assert (a.st_mode, a.st_size, int(a.st_mtime)) == (b.st_mode, b.st_size, int(b.st_mtime)), p
        if p.is_file() and not p.is_symlink():
            assert p.read_bytes() == q.read_bytes()
    assert os.stat(dst / "bin" / "tool").st_ino == os.stat(dst / "bin" / "tool-hardlink").st_ino
    assert os.getxattr(dst / "etc" / "passwd", "user.comment") == b"hello \xff binary"


def test_mtime_before_1970_survives(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "old").write_text("x")
    os.utime(src / "old", (-86400, -86400))
    out = io.BytesIO()
    write_tar(src, out)
    [m] = read_tar(out.getvalue())
    assert m.mtime == -86400
