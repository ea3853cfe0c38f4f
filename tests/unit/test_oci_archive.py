"""Archives and store maintenance, without external tools: docker-archive / OCI save+load
error paths, shared layers, prune roots and snapshots."""
from __future__ import annotations

import io
import json
import os
import tarfile
import time

import pytest

from builder.errors import DigestMismatch, StoreError
from builder.layers.tarball import write_layer
from builder.oci import mediatypes as mt
from builder.oci.archive import load_archive, save_docker_archive, save_oci
from builder.oci.config import History, ImageConfig
from builder.oci.gc import prune_blobs, verify_store
from builder.oci.image import Image, chain_ids, write_image
from builder.oci.layout import ImageStore
from tests.conftest import run_cli


def two_images(store: ImageStore, tmp_path):
    base_dir = tmp_path / "base"
    base_dir.mkdir()
    (base_dir / "a").write_text("shared base")
    top_dir = tmp_path / "top"
    top_dir.mkdir()
    (top_dir / "b").write_text("top")
    base = write_layer(base_dir, store.blobs)
    top = write_layer(top_dir, store.blobs, compression="gzip")
    cfg = ImageConfig("amd64", "linux").with_layer(base.diff_id, History(created_by="base"))
    m1 = write_image(store.blobs, cfg, [base.descriptor])
    m2 = write_image(store.blobs, cfg.with_layer(top.diff_id, History(created_by="top")),
                     [base.descriptor, top.descriptor])
    store.tag("one", m1)
    store.tag("two:x", m2)
    return m1, m2, base, top


def test_docker_archive_shares_layers_and_round_trips(tmp_path):
    store = ImageStore(tmp_path / "s").ensure()
    m1, m2, base, top = two_images(store, tmp_path)
    buf = io.BytesIO()
    save_docker_archive(store, ["one", "two:x"], buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        names = t.getnames()
        manifest = json.load(t.extractfile("manifest.json"))
        repos = json.load(t.extractfile("repositories"))
    assert names.count(f"{base.diff_id.hex}/layer.tar") == 1
    assert [e["RepoTags"] for e in manifest] == [["one:latest"], ["two:x"]]
    assert repos == {"one": {"latest": base.diff_id.hex}, "two": {"x": top.diff_id.hex}}
    other = ImageStore(tmp_path / "o")
    buf.seek(0)
    loaded = load_archive(other, buf)
    assert [r for r, _ in loaded] == ["one:latest", "two:x"]
    a, b = Image.load(other.blobs, other.resolve("two:x")), Image.load(store.blobs, m2)
    assert a.id == b.id and a.diff_ids == b.diff_ids
    assert verify_store(other)[1] == []


def test_docker_archive_with_a_wrong_layer_is_refused(tmp_path):
    store = ImageStore(tmp_path / "s").ensure()
    two_images(store, tmp_path)
    buf = io.BytesIO()
    save_docker_archive(store, ["one"], buf)
    # swap the layer for other bytes: the config's diff_id no longer matches
    src = tarfile.open(fileobj=io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None
            if m.name.endswith("layer.tar"):
                data = data.replace(b"shared base", b"evil  base!")
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    out.seek(0)
    other = ImageStore(tmp_path / "o")
    with pytest.raises(DigestMismatch):
        load_archive(other, out)
    assert other.list() == []


def test_oci_tar_with_a_corrupt_blob_is_refused(tmp_path):
    store = ImageStore(tmp_path / "s").ensure()
    m1, *_ = two_images(store, tmp_path)
    layout = tmp_path / "layout"
    save_oci(store, ["one"], layout)
    cfg_digest = Image.load(store.blobs, m1).id
    (layout / "blobs" / "sha256" / cfg_digest.hex).write_bytes(b"{}")
    with pytest.raises(DigestMismatch):
        load_archive(ImageStore(tmp_path / "o"), layout)


def test_not_an_archive(tmp_path, pybuild_root):
    bad = tmp_path / "x.tar"
    bad.write_bytes(b"\0" * 10 + b"garbage" * 1000)
    with pytest.raises(StoreError):
        load_archive(ImageStore(tmp_path / "o"), bad)
    r = run_cli("load", "-i", str(bad))
    assert r.returncode == 1 and r.stderr.startswith(b"error: ") and b"Traceback" not in r.stderr


def test_prune_keeps_roots_and_live_snapshots(tmp_path, pybuild_root):
    store = ImageStore(pybuild_root).ensure()
    m1, m2, base, top = two_images(store, tmp_path)
    cached = store.blobs.put_bytes(b"a layer only the build cache knows", mt.OCI_LAYER)
    junk = store.blobs.put_bytes(b"junk", mt.OCI_LAYER)
    res = prune_blobs(store, roots=[cached.digest], grace=0)
    assert res.removed == (junk.digest,) and store.blobs.has(cached.digest)
    # snapshots: the chain of a tagged image stays, others go (once older than the grace)
    snaps = pybuild_root / "snapshots"
    live = chain_ids(Image.load(store.blobs, m2).diff_ids)
    for c in live:
        (snaps / c.hex / "etc").mkdir(parents=True)
    dead = snaps / ("ab" * 32)
    (dead / "usr").mkdir(parents=True)
    (dead / "usr" / "f").write_text("x" * 1000)
    old = time.time() - 3600
    for p in snaps.iterdir():
        os.utime(p, (old, old))
    store.untag("one")
    r = run_cli("prune", "--grace", "60")
    assert r.returncode == 0, r.stderr.decode()
    assert not dead.exists() and all((snaps / c.hex).is_dir() for c in live)
    assert b"1 snapshots" in r.stdout
    assert store.blobs.has(m1.digest)  # untagged, but younger than the grace period
    res = prune_blobs(store, grace=0)
    # m1's manifest was only reachable through "one"; the base layer stays for "two:x"
    assert m1.digest in res.removed and store.blobs.has(base.descriptor.digest)
    assert verify_store(store)[1] == []


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_plain_layers_are_compressed_on_load_when_asked(tmp_path, compression):
    from builder.layers.unpack import apply_layer

    store = ImageStore(tmp_path / "s").ensure()
    m1, _, base, _ = two_images(store, tmp_path)
    buf = io.BytesIO()
    save_docker_archive(store, ["one"], buf)
    buf.seek(0)
    other = ImageStore(tmp_path / "o")
    [(_, desc)] = load_archive(other, buf, compression=compression)
    img = Image.load(other.blobs, desc)
    want = {None: mt.OCI_LAYER, "gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD}[compression]
    assert img.layers[0].media_type == want and img.diff_ids == (base.diff_id,)
    with other.blobs.open(img.layers[0].digest) as f:
        assert apply_layer(f, tmp_path / "unpacked", media_type=want) == base.diff_id
    assert (tmp_path / "unpacked" / "a").read_text() == "shared base"


def test_oci_load_prefers_containerds_full_name(tmp_path):
    store = ImageStore(tmp_path / "s").ensure()
    m1, *_ = two_images(store, tmp_path)
    layout = tmp_path / "layout"
    save_oci(store, ["one"], layout)
    idx = json.loads((layout / "index.json").read_text())
    idx["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "3.19",
                                          "io.containerd.image.name": "docker.io/library/alpine:3.19"}
    (layout / "index.json").write_text(json.dumps(idx))
    other = ImageStore(tmp_path / "o")
    assert load_archive(other, layout)[0][0] == "docker.io/library/alpine:3.19"
    assert other.resolve("alpine:3.19").digest == m1.digest


def test_one_tag_for_many_images_is_refused(tmp_path):
    store = ImageStore(tmp_path / "s").ensure()
    two_images(store, tmp_path)
    buf = io.BytesIO()
    save_docker_archive(store, ["one", "two:x"], buf)
    buf.seek(0)
    with pytest.raises(StoreError, match="2 images"):
        load_archive(ImageStore(tmp_path / "o"), buf, tag="x:1")
