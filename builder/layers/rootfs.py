"""Whole root filesystems in and out: `import_rootfs` (a tarball becomes a one-layer image,
like `docker import`) and `export_rootfs` (an image's layers flattened into a directory or
a tar stream).

Owns: those two verbs. Import stores the tarball in one pass, hashing the uncompressed bytes
on the way for the diff_id (a compressed tarball is kept as it is; a plain one is compressed
with the configured compression). Export applies the layers in
order (whiteouts applied) below `$ROOT/tmp` and archives the result with the deterministic
writer. Must not: tag anything but the reference it was given; print.
"""
from __future__ import annotations

import io
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from builder.errors import LayerError
from builder.layers.tarball import Warn, write_tar
from builder.layers.unpack import apply_layer
from builder.oci.archive import store_layer_stream
from builder.oci.compression import CHUNK, detect
from builder.oci.config import ContainerConfig, History, ImageConfig
from builder.oci.image import Image, host_platform, write_image
from builder.oci.layout import ImageStore
from builder.oci.model import Descriptor, Platform
from builder.layers import fstree


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def import_rootfs(store: ImageStore, source: Path | str | BinaryIO, ref: str | None = None, *,
                  platform: Platform | None = None, message: str | None = None,
                  config: ContainerConfig | None = None, created: str | None = None,
                  compression: str | None = None) -> Descriptor:
    """A one-layer image from a rootfs tarball; tagged `ref` when given. Returns the manifest.
    A plain tarball is compressed with `compression` on the way in (None: stored as it is)."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            return import_rootfs(store, f, ref, platform=platform, message=message, config=config,
                                 created=created, compression=compression)
    store.ensure()
    buf = source if hasattr(source, "peek") else io.BufferedReader(source, CHUNK)  # type: ignore[arg-type]
    head = buf.peek(512)[:512]
    # No length guard: a non-empty input shorter than one 512-byte header is no tar either (a
    # "len >= 262" guard here let `pybuild import` store any short file as a layer).
    if detect(head) == "none" and head[257:262] != b"ustar" and any(head):
        raise LayerError("import: the input is not a tar archive (nor gzip/zstd compressed)")
    layer, diff_id = store_layer_stream(store, buf, compression=compression)
    plat = platform or host_platform()
    when = created or _now()
    cfg = ImageConfig(architecture=plat.architecture, os=plat.os, variant=plat.variant, created=when,
                      config=config or ContainerConfig())
    cfg = cfg.with_layer(diff_id, History(created=when, created_by="pybuild import", comment=message))
    mdesc = write_image(store.blobs, cfg, [layer])
    if ref:
        store.tag(ref, mdesc)
    return mdesc


def export_rootfs(store: ImageStore, ref: str, dest: Path | BinaryIO, *, warn: Warn | None = None) -> None:
    """Flatten image `ref` into the directory `dest` (a Path) or as a tar onto a stream."""
    img = Image.load(store.blobs, store.resolve(ref))
    if isinstance(dest, (str, Path)):
        _apply_all(store, img, Path(dest), warn)
        return
    store.tmp.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="export-", dir=store.tmp))
    try:
        root = work / "rootfs"
        _apply_all(store, img, root, warn)
        write_tar(root, dest, warn=warn)
    finally:
        fstree.rmtree(work, ignore_errors=True)


def _apply_all(store: ImageStore, img: Image, root: Path, warn: Warn | None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for desc, want in zip(img.layers, img.diff_ids):
        with store.blobs.open(desc.digest) as f:
            got = apply_layer(f, root, media_type=desc.media_type, warn=warn)
        if got != want:
            raise LayerError(f"layer {desc.digest} unpacked to diff_id {got}, the config says {want}")
