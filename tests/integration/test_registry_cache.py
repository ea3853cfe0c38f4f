"""The registry cache transport: an OCI layout of cache records ⇄ an index tagged in a real registry."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from builder.errors import CacheError, NotFound
from builder.oci import mediatypes as mt
from builder.oci.digest import canonical_json
from builder.oci.model import Index
from builder.oci.store import DirStore
from builder.registry.cache import parse_cache_spec, pull_layout, push_layout
from builder.registry.transfer import BlobProgress
from tests.fixtures.registry import docker_config, registry  # noqa: F401

pytestmark = pytest.mark.registry

RECORD = "application/vnd.pybuild.cache.record.v1+json"
KEY = "dev.pybuild.cache.key"


def make_cache_layout(root: Path, n: int, *, with_layer=lambda i: i % 2 == 0) -> dict[str, bytes]:
    """A layout in the engine's exchange format: one artifact manifest per record."""
    store = DirStore(root, root / ".tmp")
    entries, layers = [], {}
    for i in range(n):
        key = f"sha256:{i:064x}"
        lay = []
        if with_layer(i):
            blob = os.urandom(50_000 + i)
            d = store.put_bytes(blob, mt.OCI_LAYER_ZSTD)
            layers[d.digest] = blob
            lay.append(d.to_dict())
        rec = canonical_json({"key": key, "layer": lay[0] if lay else None, "diff_id": None, "created": "",
                              "slot": f"Dockerfile#0#{i}", "pre_image": {}, "written": 0.0, "text": f"RUN {i}"})
        cfg = store.put_bytes(rec, RECORD)
        man = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": RECORD,
                              "config": cfg.to_dict(), "layers": lay})
        md = store.put_bytes(man, mt.OCI_MANIFEST)
        entries.append({**md.to_dict(), "annotations": {KEY: key}})
    (root / "index.json").write_bytes(canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                                                      "manifests": entries}))
    (root / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
    return layers


def blob_names(root: Path) -> set[str]:
    return {p.name for p in (root / "blobs" / "sha256").iterdir()}


def test_layout_round_trip_through_the_registry(registry, docker_config, tmp_path):
    src = tmp_path / "export"
    layers = make_cache_layout(src, 5)
    ref = registry.ref("ci/cache", "main")
    events: list[BlobProgress] = []
    desc = push_layout(src, ref, progress=events.append)
    assert desc.media_type == mt.OCI_INDEX
    # skopeo sees an index of 5 manifests at the tag
    raw = subprocess.run(["skopeo", "inspect", "--raw", *registry.skopeo_args(), f"docker://{ref}"],
                         capture_output=True, check=True).stdout
    idx = json.loads(raw)
    assert len(idx["manifests"]) == 5
    assert [m["annotations"][KEY] for m in idx["manifests"]] == [f"sha256:{i:064x}" for i in range(5)]

    dst = tmp_path / "import"
    assert pull_layout(ref, dst) == 5
    assert blob_names(src) == blob_names(dst)
    theirs = Index.from_json((dst / "index.json").read_bytes())
    assert theirs == Index.from_json((src / "index.json").read_bytes())
    s = DirStore(dst)
    for name in blob_names(dst):
        assert s.verify("sha256:" + name) is None
    assert not (dst / ".tmp").exists() or os.listdir(dst / ".tmp") == []

    # layers the local store already has are skipped
    skip = set(layers)
    dst2 = tmp_path / "import2"
    pull_layout(ref, dst2, skip_blob=lambda d: d in skip)
    assert not any(d.split(":")[1] in blob_names(dst2) for d in skip)

    # exporting again uploads nothing new
    again: list[BlobProgress] = []
    push_layout(src, ref, progress=again.append)
    assert {e.status for e in again} == {"exists"}


def test_missing_cache_tag_is_not_found(registry, docker_config, tmp_path):
    with pytest.raises(NotFound, match=rf"^{registry.host}: manifest ci/none:main not found"):
        pull_layout(registry.ref("ci/none", "main"), tmp_path / "x")


def test_an_image_is_not_a_cache(registry, docker_config, tmp_path):
    from builder.oci.layout import ImageStore
    from builder.registry.transfer import push
    from tests.integration.test_registry_transfer import make_image

    a = ImageStore(tmp_path / "a")
    make_image(a, "img:1", layers=1)
    push(a, "img:1", registry.ref("ci/img", "1"))
    with pytest.raises(CacheError, match="not a cache index"):
        pull_layout(registry.ref("ci/img", "1"), tmp_path / "x")


def test_not_a_layout(tmp_path, registry, docker_config):
    with pytest.raises(CacheError, match="is not an OCI layout"):
        push_layout(tmp_path, registry.ref("ci/x", "1"))


def test_parse_cache_spec():
    assert parse_cache_spec("type=registry,ref=localhost:5000/c:main,mode=max,mounts=true") == {
        "type": "registry", "ref": "localhost:5000/c:main", "mode": "max", "mounts": "true"}
    for bad, msg in [("type=registry", "needs ref"), ("type=registry,ref=x,mode=mid", "mode must be"),
                     ("type=registry,ref=x,mounts=yes", "mounts must be"), ("type=registry,ref", "key=value")]:
        with pytest.raises(CacheError, match=msg):
            parse_cache_spec(bad)
