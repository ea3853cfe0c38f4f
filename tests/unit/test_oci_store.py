"""DirStore and ImageStore: atomic idempotent puts, verified reads, tags, resolve, locking."""
from __future__ import annotations

import io
import json
import os
import threading

import pytest

from builder.errors import BlobNotFound, DigestMismatch, ImageNotFound, StoreError
from builder.oci import mediatypes as mt
from builder.oci.digest import Digest, digest_bytes
from builder.oci.image import Image, chain_ids, reachable, write_image
from builder.oci.layout import ImageStore, write_oci_layout
from builder.oci.model import History, ImageConfig
from builder.oci.store import ContentStore, DirStore


def test_put_is_idempotent_and_atomic(tmp_path):
    s = DirStore(tmp_path)
    a = s.put(io.BytesIO(b"x" * 3_000_000), "application/octet-stream")
    b = s.put(io.BytesIO(b"x" * 3_000_000), "application/octet-stream")
    assert a == b and a.size == 3_000_000 and a.digest == digest_bytes(b"x" * 3_000_000)
    assert list(s.walk()) == [a.digest]
    assert os.listdir(tmp_path / "tmp") == []  # no temp files left behind
    assert isinstance(s, ContentStore)


def test_put_with_wrong_expected_digest_leaves_nothing(tmp_path):
    s = DirStore(tmp_path)
    with pytest.raises(DigestMismatch):
        s.put(io.BytesIO(b"abc"), "x/y", expected=digest_bytes(b"other"))
    assert list(s.walk()) == [] and os.listdir(tmp_path / "tmp") == []


def test_open_verifies_while_reading(tmp_path):
    s = DirStore(tmp_path)
    d = s.put_bytes(b"hello world" * 1000, "x/y").digest
    assert s.read_bytes(d) == b"hello world" * 1000
    p = s.path(d)
    p.write_bytes(b"hello wOrld" * 1000)  # bit rot
    with pytest.raises(DigestMismatch):
        s.read_bytes(d)
    with pytest.raises(DigestMismatch):
        with s.open(d) as f:
            while f.read(100):
                pass
    assert "corrupt" in s.verify(d)
    with pytest.raises(BlobNotFound):
        s.open(digest_bytes(b"nope"))
    assert s.delete(d) and not s.has(d) and not s.delete(d)


def test_writer_abort_on_exception(tmp_path):
    s = DirStore(tmp_path)
    with pytest.raises(RuntimeError):
        with s.writer("x/y") as w:
            w.write(b"partial")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path / "tmp") == [] and list(s.walk()) == []


def _image(store: ImageStore, payload: bytes = b"layer") -> tuple:
    layer = store.blobs.put_bytes(payload, mt.OCI_LAYER)
    cfg = ImageConfig("amd64", "linux").with_layer(layer.digest, History(created_by="test"))
    return write_image(store.blobs, cfg, [layer]), cfg


def test_layout_tag_resolve_untag(tmp_path):
    st = ImageStore(tmp_path).ensure()
    assert json.loads((tmp_path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    m1, cfg = _image(st, b"one")
    m2, _ = _image(st, b"two")
    st.tag("app", m1)
    st.tag("docker.io/library/app:v2", m2)
    assert st.resolve("app:latest").digest == m1.digest
    assert st.resolve("docker.io/library/app").digest == m1.digest
    assert st.resolve("app:v2").digest == m2.digest
    assert st.resolve(m2.digest).digest == m2.digest
    assert st.resolve(m2.digest.hex[:8]).digest == m2.digest
    img = Image.load(st.blobs, st.resolve("app"))
    assert img.config == cfg and img.diff_ids == cfg.diff_ids
    assert st.resolve(img.id.hex[:10]).digest == m1.digest  # docker-style id = config digest
    names = [d.ref_name for d in st.index().manifests]
    assert names == ["app", "app:v2"]  # what skopeo / umoci look up literally
    st.tag("app", m2)  # re-tag moves the name
    assert st.resolve("app").digest == m2.digest and len(st.list()) == 2
    st.untag("app")
    with pytest.raises(ImageNotFound):
        st.resolve("app")
    with pytest.raises(ImageNotFound):
        st.untag("app")
    with pytest.raises(ImageNotFound):
        st.resolve("Not A Ref!")


def test_concurrent_taggers_lose_nothing(tmp_path):
    st = ImageStore(tmp_path).ensure()
    descs = [_image(st, f"p{i}".encode())[0] for i in range(8)]

    def tagger(i):
        ImageStore(tmp_path).tag(f"img{i}", descs[i])

    ts = [threading.Thread(target=tagger, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(d.ref_name for d in st.index().manifests) == sorted(f"img{i}" for i in range(8))


def test_tag_requires_the_manifest(tmp_path):
    st = ImageStore(tmp_path).ensure()
    m, _ = _image(st)
    st.blobs.delete(m.digest)
    with pytest.raises(StoreError):
        st.tag("x", m)


def test_write_image_checks_diff_ids(tmp_path):
    st = ImageStore(tmp_path).ensure()
    with pytest.raises(StoreError):
        write_image(st.blobs, ImageConfig("amd64", "linux"), [st.blobs.put_bytes(b"x", mt.OCI_LAYER)])


def test_reachable_and_export_dir_and_tar(tmp_path):
    st = ImageStore(tmp_path / "s").ensure()
    m, _ = _image(st)
    blobs = {d.digest for d in reachable(st.blobs, m)}
    assert len(blobs) == 3
    write_oci_layout(tmp_path / "out", st.blobs, [("app", m)])
    out = ImageStore(tmp_path / "out")
    assert {d for d in out.blobs.walk()} == blobs and out.resolve("app").digest == m.digest
    import tarfile
    buf = io.BytesIO()
    write_oci_layout(buf, st.blobs, [("app", m)])
    buf.seek(0)
    names = tarfile.open(fileobj=buf).getnames()
    assert "oci-layout" in names and "index.json" in names and f"blobs/sha256/{m.digest.hex}" in names


def test_chain_ids():
    a, b = digest_bytes(b"a"), digest_bytes(b"b")
    ch = chain_ids([a, b])
    assert ch[0] == a and ch[1] == digest_bytes(f"{a} {b}".encode())
    assert isinstance(ch[1], Digest)


def test_reput_refreshes_mtime_so_prune_grace_protects_it(tmp_path):
    s = DirStore(tmp_path)
    d = s.put_bytes(b"old blob", "x/y").digest
    os.utime(s.path(d), (1000, 1000))
    s.put_bytes(b"old blob", "x/y")
    assert s.path(d).stat().st_mtime > 1000
    os.utime(s.path(d), (1000, 1000))
    s.put(io.BytesIO(b"old blob"), "x/y", expected=d)
    assert s.path(d).stat().st_mtime > 1000
    os.utime(s.path(d), (1000, 1000))
    s.put(io.BytesIO(b"old blob"), "x/y")
    assert s.path(d).stat().st_mtime > 1000
