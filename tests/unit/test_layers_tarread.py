"""The streaming tar reader agrees with Python's tarfile on every format GNU tar and tarfile
write (ustar with prefix, GNU long names, PAX, v7), and refuses what it cannot represent."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile

import pytest

from builder.errors import LayerError
from builder.layers.tarread import TarReader


def tree(root):
    (root / ("long-dir-" * 12)).mkdir(parents=True)
    (root / ("long-dir-" * 12) / ("long-file-" * 12)).write_bytes(os.urandom(1500))
    (root / "ünï").write_text("utf8")
    (root / "link").symlink_to("../" + "t" * 120)
    (root / "hard").write_text("h")
    os.link(root / "hard", root / "hard2")
    (root / "empty").mkdir()
    os.mkfifo(root / "fifo")
    return root


def ours(data: bytes) -> list[tuple]:
    out = []
    r = TarReader(io.BytesIO(data))
    for e in r:
        body = b"".join(r.data())
        out.append((e.name.rstrip("/"), e.type if e.type not in (b"\0", b"7") else b"0", e.size if e.isreg() else 0,
                    e.mode, e.uid, e.gid, int(e.mtime), e.linkname, body))
    return out


def theirs(data: bytes) -> list[tuple]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t:
            body = t.extractfile(m).read() if m.isreg() else b""
            typ = m.type if m.type not in (tarfile.AREGTYPE, tarfile.CONTTYPE) else tarfile.REGTYPE
            out.append((m.name.rstrip("/"), typ, m.size if m.isreg() else 0, m.mode, m.uid, m.gid, int(m.mtime),
                        m.linkname, body))
    return out


@pytest.mark.parametrize("fmt", ["gnu", "posix", "ustar", "v7", "oldgnu"])
def test_agrees_with_tarfile_on_gnu_tar_formats(tmp_path, fmt):
    if shutil.which("tar") is None:
        pytest.skip("GNU tar not installed")
    src = tree(tmp_path / "src")
    out = tmp_path / "x.tar"
    r = subprocess.run(["tar", f"--format={fmt}", "-C", str(src), "-cf", str(out), "."], capture_output=True)
    if r.returncode != 0:
        # ustar / v7 cannot hold the long names: the tool refuses, nothing to compare
        assert fmt in ("ustar", "v7"), r.stderr
        return
    data = out.read_bytes()
    assert ours(data) == theirs(data)


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_agrees_with_tarfile_on_tarfile_formats(tmp_path, fmt):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, size in (("a" * 60 + "/" + "b" * 90, 10), ("small", 0), ("big", 70000)):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.uid, ti.gid, ti.mode = size, 1234567, 1000, 100, 0o4755
            t.addfile(ti, io.BytesIO(os.urandom(size)))
        if fmt != tarfile.USTAR_FORMAT:
            ti = tarfile.TarInfo("bigid")
            ti.uid = 3_000_000  # GNU: base-256; PAX: a record
            t.addfile(ti, io.BytesIO())
    data = buf.getvalue()
    assert ours(data) == theirs(data)


def test_global_pax_header_applies_to_later_entries():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"uid": "4242"}) as t:
        t.addfile(tarfile.TarInfo("f"), io.BytesIO())
    [e] = list(TarReader(io.BytesIO(buf.getvalue())))
    assert e.uid == 4242


def test_corrupt_checksum_and_truncation_and_sparse_are_errors():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("f")
        ti.size = 2000
        t.addfile(ti, io.BytesIO(bytes(2000)))
    data = bytearray(buf.getvalue())
    bad = bytes(data[:10]) + b"X" + bytes(data[11:])
    with pytest.raises(LayerError, match="checksum"):
        list(TarReader(io.BytesIO(bad)))
    r = TarReader(io.BytesIO(bytes(data[:1000])))
    with pytest.raises(LayerError, match="truncated"):
        for _ in r:
            b"".join(r.data())
    sparse = bytearray(data[:512])
    sparse[156:157] = b"S"
    sparse[148:156] = b"        "
    sparse[148:156] = b"%06o\0 " % sum(sparse)
    with pytest.raises(LayerError, match="sparse"):
        list(TarReader(io.BytesIO(bytes(sparse) + bytes(2048))))
