"""OCI schemas: the 84 upstream cases get upstream's verdict from OUR readers, and every
document pybuild writes validates against the schemas (+ FORMAT.md's 4 extra checks).

`validate_document(media_type, data)` is the test-side reference validator (jsonschema over
../shared/conformance/oci-schema/schema); integration tests import it to check their output.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from functools import cache

import pytest

from builder.errors import InvalidDocument
from builder.oci import mediatypes as mt
from builder.oci.digest import Digest, canonical_json, digest_bytes
from builder.oci.model import (ContainerConfig, Descriptor, History, ImageConfig, Index, Manifest, Platform,
                               layout_header, parse_layout_header)
from tests.conftest import CONFORMANCE

DIR = CONFORMANCE / "oci-schema"
SCHEMA_FILES = {
    mt.OCI_CONFIG: "config-schema.json",
    mt.OCI_DESCRIPTOR: "content-descriptor.json",
    mt.OCI_INDEX: "image-index-schema.json",
    mt.OCI_LAYOUT_HEADER: "image-layout-schema.json",
    mt.OCI_MANIFEST: "image-manifest-schema.json",
}
ALIASES = {
    "config-schema.json": ["https://opencontainers.org/schema/image/config"],
    "content-descriptor.json": ["https://opencontainers.org/schema/descriptor",
                                "https://opencontainers.org/schema/image/content-descriptor.json"],
    "defs-descriptor.json": ["https://opencontainers.org/schema/image/descriptor/mediaType",
                             "https://opencontainers.org/schema/defs-descriptor.json",
                             "https://opencontainers.org/schema/image/defs-descriptor.json"],
    "defs.json": ["https://opencontainers.org/schema/defs.json", "https://opencontainers.org/schema/image/defs.json",
                  "https://opencontainers.org/schema/image/descriptor/defs.json"],
    "image-index-schema.json": ["https://opencontainers.org/schema/image/index"],
    "image-layout-schema.json": ["https://opencontainers.org/schema/image/layout"],
    "image-manifest-schema.json": ["https://opencontainers.org/schema/image/manifest"],
}
DOCKER_TO_OCI = [(mt.DOCKER_MANIFEST_LIST, mt.OCI_INDEX), (mt.DOCKER_MANIFEST, mt.OCI_MANIFEST),
                 (mt.DOCKER_LAYER_GZIP, mt.OCI_LAYER_GZIP), (mt.DOCKER_CONFIG, mt.OCI_CONFIG)]


@cache
def _validators():
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    resources = []
    for f in (DIR / "schema").glob("*.json"):
        res = Resource(contents=json.loads(f.read_text()), specification=DRAFT4)
        resources.append((f.name, res))
        resources.extend((u, res) for u in ALIASES.get(f.name, []))
    registry = Registry().with_resources(resources)
    return {m: jsonschema.Draft4Validator(json.loads((DIR / "schema" / f).read_text()), registry=registry,
                                          format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
            for m, f in SCHEMA_FILES.items()}


def _descriptors(doc, path=""):
    if isinstance(doc, dict):
        if "digest" in doc and "mediaType" in doc:
            yield path, doc
        for k, v in doc.items():
            yield from _descriptors(v, f"{path}.{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _descriptors(v, f"{path}[{i}]")


def validate_document(media_type: str, data: bytes) -> None:
    """Schemas + the 4 extra checks upstream's Go validator makes; AssertionError on failure."""
    doc = json.loads(data)
    errors = [e.message for e in _validators()[media_type].iter_errors(doc)]
    for where, d in _descriptors(doc):
        dg = d.get("digest")
        if isinstance(dg, str) and dg.startswith(("sha256:", "sha512:")) and not re.fullmatch(r"[a-z0-9]+:[0-9a-f]+", dg):
            errors.append(f"{where}: digest not lower-case hex")
        for u in d.get("urls") or []:
            if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", str(u)):
                errors.append(f"{where}: url {u!r} is not an absolute URI")
        if "data" in d:
            try:
                base64.b64decode(d["data"], validate=True)
            except (binascii.Error, ValueError):
                errors.append(f"{where}: data not padded base64")
    if media_type == mt.OCI_CONFIG:
        for e in (doc.get("config") or {}).get("Env") or []:
            if not re.fullmatch(r"[^=]+=.*", str(e), re.S):
                errors.append(f"Env entry {e!r} is not NAME=value")
    assert not errors, f"{media_type} invalid: {errors}"


READERS = {
    mt.OCI_DESCRIPTOR: Descriptor.from_json,
    mt.OCI_MANIFEST: Manifest.from_json,
    mt.OCI_INDEX: Index.from_json,
    mt.OCI_CONFIG: ImageConfig.from_json,
    mt.OCI_LAYOUT_HEADER: parse_layout_header,
}


def _cases():
    lines = [ln for ln in (DIR / "cases" / "cases.tsv").read_text().splitlines() if ln and not ln.startswith("#")]
    head = lines[0].split("\t")
    return [dict(zip(head, ln.split("\t"))) for ln in lines[1:]]


CASES = _cases()


def test_all_84_cases_present():
    assert len(CASES) == 84


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["file"])
def test_our_reader_gives_upstream_verdict(case):
    raw = (DIR / "cases" / case["file"]).read_bytes()
    data = raw
    if case["preprocess"] == "docker-to-oci":
        text = raw.decode()
        for a, b in DOCKER_TO_OCI:
            text = text.replace(a, b)
        data = text.encode()
    read = READERS[case["mediatype"]]
    if case["expect"] == "pass":
        read(data)
        if case["preprocess"]:
            read(raw)  # our readers take the Docker schema2 media types as they are
    else:
        with pytest.raises(InvalidDocument):
            read(data)
    if case["sha256_of_raw_file"]:
        assert digest_bytes(raw) == case["sha256_of_raw_file"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["file"])
def test_reference_validator_agrees(case):
    # The test-side validator must itself give upstream's verdicts, or it proves nothing.
    raw = (DIR / "cases" / case["file"]).read_bytes()
    text = raw.decode(errors="replace")
    if case["preprocess"] == "docker-to-oci":
        for a, b in DOCKER_TO_OCI:
            text = text.replace(a, b)
    try:
        validate_document(case["mediatype"], text.encode())
        ok = True
    except (AssertionError, ValueError):
        ok = False
    assert ok == (case["expect"] == "pass")


def _sample_documents():
    d1 = digest_bytes(b"layer one")
    cfg = ImageConfig(architecture="amd64", os="linux", created="2024-01-02T03:04:05Z",
                      config=ContainerConfig(user="app", env=("PATH=/usr/bin", "EMPTY="), entrypoint=("/bin/sh", "-c"),
                                             cmd=(), working_dir="/srv", labels={"a": "b"},
                                             exposed_ports={"80/tcp": {}}, volumes={"/data": {}},
                                             stop_signal="SIGTERM",
                                             healthcheck={"Test": ["CMD", "true"], "Interval": 1000000000},
                                             on_build=("RUN x",), shell=("/bin/bash", "-c"), args_escaped=True))
    cfg = cfg.with_layer(d1, History(created="2024-01-02T03:04:05Z", created_by="RUN make")) \
             .with_history(History(created_by="CMD []", comment="ünïcode"))
    cfg_bytes = cfg.to_json()
    cdesc = Descriptor(mt.OCI_CONFIG, digest_bytes(cfg_bytes), len(cfg_bytes))
    layer = Descriptor(mt.OCI_LAYER_ZSTD, digest_bytes(b"z"), 1, annotations={"k": "v"},
                       urls=("https://example.com/x",))
    man = Manifest(config=cdesc, layers=(layer,), annotations={"x": "y"})
    mdesc = Descriptor(mt.OCI_MANIFEST, digest_bytes(man.to_json()), len(man.to_json()),
                       platform=Platform("arm64", "linux", variant="v8"),
                       annotations={mt.ANNOTATION_REF_NAME: "app"})
    idx = Index(manifests=(mdesc,))
    return {mt.OCI_CONFIG: cfg_bytes, mt.OCI_MANIFEST: man.to_json(), mt.OCI_INDEX: idx.to_json(),
            mt.OCI_DESCRIPTOR: layer.to_json(), mt.OCI_LAYOUT_HEADER: layout_header()}


@pytest.mark.parametrize("media_type", list(SCHEMA_FILES))
def test_documents_we_write_validate_and_round_trip(media_type):
    data = _sample_documents()[media_type]
    validate_document(media_type, data)
    value = READERS[media_type](data)
    if media_type != mt.OCI_LAYOUT_HEADER:
        assert value.to_json() == data  # canonical: read → write is the identity
    assert canonical_json(json.loads(data)) == data


def test_env_without_equals_is_rejected():
    with pytest.raises(InvalidDocument, match=r"Env\[0\]"):
        ImageConfig.from_json(b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},'
                              b'"config":{"Env":["NOEQUALS"]}}')


def test_digest_validation():
    Digest("sha256:" + "a" * 64)
    for bad in ("sha256:" + "A" * 64, "sha256:abc", "nohash", "sha256+-x:abc", "sha512:" + "a" * 64):
        with pytest.raises(InvalidDocument):
            Digest(bad)
