"""Helpers for the build integration tests (tests/integration/test_build_*.py).

Owns: a busybox base image in a fresh store (made through the library: the rootfs maker,
write_layer, write_image, tag), running `pybuild build` through the real entry point, and the
layout validation every integration build ends with (digests, sizes, diff_ids vs config).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from builder.layers.unpack import open_layer_stream
from builder.oci import mediatypes as mt
from builder.oci.config import ContainerConfig, History, ImageConfig
from builder.oci.image import write_image
from builder.oci.layout import ImageStore
from builder.layers.tarball import write_layer
from tests.conftest import run_cli
from tests.fixtures.busybox_rootfs import make_busybox_rootfs

_BASE_CACHE: dict[str, Path] = {}


def make_busybox_image(root: Path, tmp: Path, ref: str = "busybox") -> str:
    """Store a one-layer busybox image at `root`, tagged `ref`; returns the manifest digest."""
    store = ImageStore(root).ensure()
    rootfs = make_busybox_rootfs(tmp / "busybox-rootfs")
    info = write_layer(rootfs, store.blobs, compression="gzip", source_date_epoch=1_700_000_000)
    created = "2023-11-14T22:13:20Z"
    cfg = ImageConfig(architecture="amd64", os="linux", created=created,
                      config=ContainerConfig(env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
                                             cmd=("sh",)))
    cfg = cfg.with_layer(info.diff_id, History(created=created, created_by="busybox rootfs"))
    cfg = cfg.with_history(History(created=created, created_by='CMD ["sh"]'))
    desc = write_image(store.blobs, cfg, [info.descriptor])
    store.tag(ref, desc)
    return str(desc.digest)


def build(root: Path, ctx: Path, *args: str, input: bytes | None = None, env: dict | None = None):
    e = {"PYBUILD_ROOT": str(root)}
    e.update(env or {})
    return run_cli("build", "--progress=plain", *args, str(ctx), input=input, env=e)


def steps(stderr: bytes) -> list[tuple[str, str]]:
    """(instruction, 'CACHED'|'DONE'|'ERROR') per step in plain progress output, in order."""
    names: dict[str, str] = {}
    order: list[str] = []
    result: dict[str, str] = {}
    for ln in stderr.decode(errors="replace").splitlines():
        if not ln.startswith("#"):
            continue
        num, _, rest = ln.partition(" ")
        if rest.startswith("["):
            names[num] = rest.split("] ", 1)[1] if "] " in rest else rest
            if num not in order:
                order.append(num)
        elif rest == "CACHED" or rest.startswith("DONE") or rest.startswith("ERROR"):
            result[num] = rest.split()[0].rstrip(":")
    return [(names[n], result.get(n, "?")) for n in order]


def _sha(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return "sha256:" + h.hexdigest(), n


def validate_layout(root: Path, ref: str | None = None) -> dict:
    """Every blob an image names exists with its digest and size; diff_ids match the layers."""
    root = Path(root)
    assert json.loads((root / "oci-layout").read_text())["imageLayoutVersion"] == "1.0.0"
    index = json.loads((root / "index.json").read_text())
    checked = None
    for m in index["manifests"]:
        name = m.get("annotations", {}).get("org.opencontainers.image.ref.name")
        blob = root / "blobs" / "sha256" / m["digest"].split(":")[1]
        d, n = _sha(blob)
        assert d == m["digest"] and n == m["size"], f"manifest {m['digest']} corrupt"
        man = json.loads(blob.read_bytes())
        cblob = root / "blobs" / "sha256" / man["config"]["digest"].split(":")[1]
        d, n = _sha(cblob)
        assert d == man["config"]["digest"] and n == man["config"]["size"]
        cfg = json.loads(cblob.read_bytes())
        assert len(cfg["rootfs"]["diff_ids"]) == len(man["layers"])
        assert sum(1 for h in cfg.get("history", []) if not h.get("empty_layer")) == len(man["layers"])
        for layer, diff_id in zip(man["layers"], cfg["rootfs"]["diff_ids"]):
            lb = root / "blobs" / "sha256" / layer["digest"].split(":")[1]
            d, n = _sha(lb)
            assert d == layer["digest"] and n == layer["size"], f"layer {layer['digest']} corrupt"
            h = hashlib.sha256()
            with open(lb, "rb") as f:
                s = open_layer_stream(f, layer["mediaType"])
                while chunk := s.read(1 << 20):
                    h.update(chunk)
            assert "sha256:" + h.hexdigest() == diff_id, "diff_id does not match the layer"
        if ref is not None and name == ref:
            checked = {"manifest": man, "config": cfg, "digest": m["digest"]}
    if ref is not None:
        assert checked is not None, f"{ref} not tagged"
    return checked or {}


def write_ctx(ctx: Path, files: dict[str, str | bytes]) -> Path:
    for rel, data in files.items():
        p = ctx / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data)
    return ctx


def layer_files(root: Path, layer_digest: str) -> dict[str, "object"]:
    """name -> TarInfo of one stored layer."""
    import tarfile

    out = {}
    with open(Path(root) / "blobs" / "sha256" / layer_digest.split(":")[1], "rb") as f:
        with tarfile.open(fileobj=open_layer_stream(f), mode="r|") as tf:
            for m in tf:
                out[m.name.rstrip("/")] = m
    return out


__all__ = ["make_busybox_image", "build", "steps", "validate_layout", "write_ctx", "layer_files", "os", "mt"]


def ok(r) -> None:
    """Assert a CLI run succeeded, showing its stderr when it did not."""
    assert r.returncode == 0, r.stderr.decode()
