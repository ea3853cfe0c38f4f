"""Model values: Docker schema2 and OCI readers, config extension fields, pure updates."""
from __future__ import annotations

import json

import pytest

from builder.errors import InvalidDocument
from builder.oci import mediatypes as mt
from builder.oci.digest import Digest, canonical_json, digest_bytes
from builder.oci.model import ContainerConfig, Descriptor, History, ImageConfig, Index, Manifest, Platform

D = "sha256:" + "a" * 64


def test_docker_schema2_manifest_and_list():
    man = Manifest.from_json(json.dumps({
        "schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG, "size": 10, "digest": D},
        "layers": [{"mediaType": mt.DOCKER_LAYER_GZIP, "size": 5, "digest": D}]}))
    assert man.media_type == mt.DOCKER_MANIFEST and man.layers[0].media_type == mt.DOCKER_LAYER_GZIP
    assert json.loads(man.to_json())["mediaType"] == mt.DOCKER_MANIFEST  # written back as read
    idx = Index.from_json(json.dumps({
        "schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [{"mediaType": mt.DOCKER_MANIFEST, "size": 1, "digest": D,
                       "platform": {"architecture": "arm", "os": "linux", "variant": "v7", "features": ["x"]}}]}))
    assert idx.manifests[0].platform == Platform("arm", "linux", variant="v7")
    with pytest.raises(InvalidDocument, match="not an image manifest"):
        Manifest.from_json(json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "config": {}, "layers": []}))
    with pytest.raises(InvalidDocument, match="schemaVersion"):
        Index.from_json(json.dumps({"schemaVersion": 1, "manifests": []}))


def test_empty_layers_only_where_allowed():
    doc = json.dumps({"schemaVersion": 2, "config": {"mediaType": mt.OCI_CONFIG, "size": 1, "digest": D},
                      "layers": []})
    with pytest.raises(InvalidDocument, match="at least one layer"):
        Manifest.from_json(doc)
    assert Manifest.from_json(doc, allow_empty_layers=True).layers == ()


def test_config_keeps_docker_extension_fields():
    hc = {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 30_000_000_000, "Retries": 3}
    cfg = ImageConfig("amd64", "linux", config=ContainerConfig(
        healthcheck=hc, on_build=("RUN make",), shell=("/bin/bash", "-o", "pipefail", "-c"),
        stop_signal="SIGQUIT", args_escaped=True, entrypoint=(), cmd=None))
    d = json.loads(cfg.to_json())["config"]
    assert d["Healthcheck"] == hc and d["OnBuild"] == ["RUN make"] and d["Shell"][0] == "/bin/bash"
    assert d["StopSignal"] == "SIGQUIT" and d["ArgsEscaped"] is True
    assert d["Entrypoint"] == [] and "Cmd" not in d  # ENTRYPOINT [] is kept, unset Cmd is not written
    assert ImageConfig.from_json(cfg.to_json()) == cfg


def test_foreign_config_fields_are_read_then_dropped():
    raw = {"architecture": "amd64", "os": "linux", "container_config": {"Hostname": "x"}, "docker_version": "1",
           "config": {"Hostname": "abc", "Env": ["A=1"], "Volumes": None, "Labels": None, "OnBuild": None},
           "rootfs": {"type": "layers", "diff_ids": [D]}, "created": "2016-10-10T23:04:00.821781828Z"}
    cfg = ImageConfig.from_json(json.dumps(raw))
    assert cfg.config.env == ("A=1",) and cfg.diff_ids == (Digest(D),)
    out = json.loads(cfg.to_json())
    assert "container_config" not in out and "Hostname" not in out["config"]
    with pytest.raises(InvalidDocument, match="created"):
        ImageConfig.from_json(json.dumps({**raw, "created": "yesterday"}))
    with pytest.raises(InvalidDocument, match="rootfs.type"):
        ImageConfig.from_json(json.dumps({**raw, "rootfs": {"type": "tarballs", "diff_ids": []}}))


def test_with_layer_and_history_return_new_values():
    base = ImageConfig("amd64", "linux")
    a = base.with_layer(D, History(created_by="RUN x", empty_layer=True))
    b = a.with_history(History(created_by="ENV y"))
    assert base.diff_ids == () and base.history == ()
    assert a.diff_ids == (D,) and a.history[0].empty_layer is False
    assert b.history[1].empty_layer is True and b.diff_ids == a.diff_ids
    c = b.with_config(user="app", env=("X=1",))
    assert c.config.user == "app" and b.config.user == ""


def test_descriptor_extras_round_trip():
    d = Descriptor(mt.OCI_LAYER_ZSTD, digest_bytes(b"x"), 1, annotations={"a": "b"},
                   urls=("https://example.com/blob",), artifact_type="application/x.y", data="eA==",
                   platform=Platform("riscv64", "linux", os_features=("f",)))
    assert Descriptor.from_json(d.to_json()) == d
    assert d.to_json() == canonical_json(json.loads(d.to_json()))
    with pytest.raises(InvalidDocument, match="size"):
        Descriptor.from_json(json.dumps({"mediaType": "a/b", "digest": D, "size": True}))


def test_descriptors_with_annotations_are_hashable():
    a = Descriptor("a/b", digest_bytes(b"x"), 1, annotations={"k": "v"})
    b = Descriptor("a/b", digest_bytes(b"x"), 1, annotations={"k": "v"})
    c = Descriptor("a/b", digest_bytes(b"x"), 1, annotations={"k": "w"})
    assert len({a, b, c}) == 2
