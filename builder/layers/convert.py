"""Re-encode an image for export or push: layer compression, media type family, annotations.

Owns: `convert_image(blobs, manifest_desc, ...) -> Descriptor`: the same image (same config,
same diff_ids: the tar inside each layer is unchanged) with its layers compressed as asked
(`gzip` | `zstd` | `none`, at a level), its manifest and layers in the OCI or the Docker
media types, and manifest annotations added. Layers already in the asked compression are kept
byte for byte unless `force` (then re-compressed at `level`). The result is stored in `blobs`
(unreferenced: an export or push uses it, `prune` reclaims it). Re-encoding is deterministic
(fixed compressor parameters), so converting twice gives the same digests; converted layers are
memoized in `memo_dir` (source digest + compression + level → converted descriptor).
Must not: touch the image index or tags; import zstandard unless a layer needs it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from builder.errors import StoreError
from builder.oci import mediatypes as mt
from builder.layers.tarball import layer_compressor as compressor
from builder.oci.compression import CHUNK, open_decompressed
from builder.oci.digest import Digest
from builder.oci.model import Descriptor, Manifest
from builder.oci.store import DirStore, atomic_write
from runtime.record import replace

COMPRESSIONS = {"gzip": "gzip", "zstd": "zstd", "uncompressed": "none", "none": "none"}
LEVELS = {"gzip": (0, 9), "zstd": (1, 22), "none": (0, 0)}


def _layer_type(compression: str, oci: bool, nondist: bool = False) -> str:
    if oci:
        if nondist:
            return {"none": mt.OCI_LAYER_NONDIST, "gzip": mt.OCI_LAYER_NONDIST_GZIP,
                    "zstd": mt.OCI_LAYER_NONDIST_ZSTD}[compression]
        return mt.OCI_LAYER_FOR[compression]
    return mt.DOCKER_LAYER_FOR[compression]


def _recompress(blobs: DirStore, layer: Descriptor, compression: str, level: int | None, media_type: str) -> Descriptor:
    comp = compressor(compression, level)
    with blobs.open(layer.digest) as raw, blobs.writer(media_type) as w:
        src = open_decompressed(raw, layer.media_type)
        while chunk := src.read(CHUNK):
            out = comp.compress(chunk) if comp is not None else chunk
            if out:
                w.write(out)
        if comp is not None:
            w.write(comp.flush())
        d = w.commit()
    return Descriptor(media_type, d.digest, d.size, annotations=layer.annotations)


def _memo_path(memo_dir: Path | None, src: Digest, compression: str, level: int | None) -> Path | None:
    if memo_dir is None:
        return None
    k = hashlib.sha256(f"v1 {src} {compression} {level}".encode()).hexdigest()
    return Path(memo_dir) / k


def convert_layer(blobs: DirStore, layer: Descriptor, *, compression: str, level: int | None = None,
                  force: bool = False, oci: bool = True, memo_dir: Path | None = None,
                  tmp_dir: Path | None = None) -> Descriptor:
    have = mt.layer_compression(layer.media_type)
    if have is None:
        return layer  # a foreign/unknown blob type: passed through untouched
    nondist = "nondistributable" in layer.media_type
    want_type = _layer_type(compression, oci, nondist)
    if have == compression and not (force and level is not None and compression != "none"):
        return replace(layer, media_type=want_type)  # same bytes, maybe the other family's name
    mp = _memo_path(memo_dir, layer.digest, compression, level)
    if mp is not None:
        try:
            d = json.loads(mp.read_text())
            if blobs.has(Digest(d["digest"])):
                return Descriptor(want_type, Digest(d["digest"]), int(d["size"]), annotations=layer.annotations)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    out = _recompress(blobs, layer, compression, level, want_type)
    if mp is not None:
        try:
            mp.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(mp, json.dumps({"digest": str(out.digest), "size": out.size}).encode(),
                         Path(tmp_dir) if tmp_dir else mp.parent)
        except OSError:
            pass
    return out


def convert_image(blobs: DirStore, manifest_desc: Descriptor, *, compression: str | None = None,
                  level: int | None = None, force: bool = False, oci_mediatypes: bool | None = None,
                  annotations: dict[str, str] | None = None, memo_dir: Path | None = None,
                  tmp_dir: Path | None = None) -> Descriptor:
    """The manifest descriptor of the converted image (the input when nothing changes)."""
    if not mt.is_manifest(manifest_desc.media_type):
        raise StoreError(f"cannot convert {manifest_desc.media_type}: an image manifest is needed")
    man = Manifest.from_json(blobs.read_bytes(manifest_desc.digest), allow_empty_layers=True)
    oci = (man.media_type == mt.OCI_MANIFEST) if oci_mediatypes is None else oci_mediatypes
    layers = []
    for layer in man.layers:
        comp = compression or mt.layer_compression(layer.media_type) or "none"
        layers.append(convert_layer(blobs, layer, compression=comp, level=level, force=force, oci=oci,
                                    memo_dir=memo_dir, tmp_dir=tmp_dir))
    cfg_type = mt.OCI_CONFIG if oci else mt.DOCKER_CONFIG
    new = Manifest(config=replace(man.config, media_type=cfg_type), layers=tuple(layers),
                   media_type=mt.OCI_MANIFEST if oci else mt.DOCKER_MANIFEST,
                   annotations={**(man.annotations or {}), **(annotations or {})} or None,
                   subject=man.subject if oci else None, artifact_type=man.artifact_type if oci else None)
    data = new.to_json()
    if new.to_dict() == man.to_dict():
        return manifest_desc
    d = blobs.put_bytes(data, new.media_type)
    return Descriptor(new.media_type, d.digest, d.size, platform=manifest_desc.platform)
