"""Image archives: docker-archive (what `docker save` writes and `docker load` reads) and
OCI layouts (directory or tar), both ways.

Owns: `save_docker_archive` (manifest.json + repositories + `<config hex>.json` +
`<diff_id hex>/layer.tar`, layers uncompressed as docker writes them, streamed: memory stays
flat), `save_oci` (layout dir or tar), `load_archive` (detects docker-archive / OCI tar /
OCI dir; every blob verified; layers stored as they come with their diff_id checked against the
config). Must not: unpack layers (builder.layers does), print.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from builder.errors import DigestMismatch, InvalidReference, StoreError
from builder.oci import mediatypes as mt
from builder.oci.compression import CHUNK, DiffHasher, compressor, detect, open_decompressed
from builder.oci.digest import Digest, canonical_json
from builder.oci.image import Image
from builder.oci.layout import ImageStore, write_oci_layout
from builder.oci.model import Descriptor, ImageConfig, Index, Manifest, parse_layout_header


def _familiar(ref: str) -> str:
    from builder.oci.reference import parse_reference

    return parse_reference(ref).familiar()


# -- save -----------------------------------------------------------------------------------

def save_docker_archive(store: ImageStore, refs: list[str], out: BinaryIO, platform=None) -> None:
    """Write a docker-archive of `refs` (tags or ids) to the stream `out`; a multi-platform
    image contributes its `platform` entry (a model.Platform; default: this machine's)."""
    entries, repositories = [], {}
    images: list[Image] = []
    for ref in refs:
        img = Image.load(store.blobs, store.resolve(ref), platform)
        images.append(img)
        tags = []
        if not _looks_like_id(ref):
            fam = _familiar(ref)
            if "@" not in fam:
                tags.append(fam if ":" in fam.rsplit("/", 1)[-1] else fam + ":latest")
        layers = [f"{d.hex}/layer.tar" for d in img.diff_ids]
        entries.append({"Config": f"{img.id.hex}.json", "RepoTags": tags or None, "Layers": layers})
        for t in tags:
            name, _, tag = t.rpartition(":")
            if img.diff_ids:
                repositories.setdefault(name, {})[tag] = img.diff_ids[-1].hex
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "manifest.json", json.dumps(entries, separators=(",", ":")).encode())
        if repositories:
            _add_bytes(tar, "repositories", canonical_json(repositories))
        done: set[str] = set()
        for img in images:
            if img.id.hex not in done:
                done.add(img.id.hex)
                _add_bytes(tar, f"{img.id.hex}.json", img.config_bytes)
            for desc, diff_id in zip(img.layers, img.diff_ids):
                if diff_id.hex in done:
                    continue
                done.add(diff_id.hex)
                _add_dir(tar, f"{diff_id.hex}/")
                _add_layer(tar, store, desc, diff_id)


def _looks_like_id(ref: str) -> bool:
    return ref.startswith("sha256:") or (len(ref) >= 4 and all(c in "0123456789abcdef" for c in ref))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def _add_layer(tar: tarfile.TarFile, store: ImageStore, desc: Descriptor, diff_id: Digest) -> None:
    """The uncompressed layer as `<diff_id hex>/layer.tar`. A tar header needs the size first,
    so a compressed layer is read twice: once to count (and check the diff_id), once to copy."""
    if mt.layer_compression(desc.media_type) == "none":
        size = desc.size
    else:
        h = DiffHasher(mt.layer_compression(desc.media_type) or "none")
        with store.blobs.open(desc.digest) as f:
            while chunk := f.read(CHUNK):
                h.feed(chunk)
        got, size = h.finish()
        if got != diff_id:
            raise DigestMismatch(f"layer {desc.digest} uncompresses to {got}, the config says {diff_id}")
    info = tarfile.TarInfo(f"{diff_id.hex}/layer.tar")
    info.size, info.mode = size, 0o644
    with store.blobs.open(desc.digest) as f:
        tar.addfile(info, open_decompressed(f, desc.media_type))


def save_oci(store: ImageStore, refs: list[str], dest: Path | BinaryIO) -> None:
    """An OCI layout (directory if `dest` is a Path, else a tar stream) holding `refs`."""
    from builder.oci.layout import stored_name

    images = []
    for ref in refs:
        desc = store.resolve(ref)
        images.append((None if _looks_like_id(ref) else stored_name(ref), desc))
    write_oci_layout(dest, store.blobs, images)


# -- load -----------------------------------------------------------------------------------

@contextlib.contextmanager
def _seekable(source: Path | BinaryIO, tmp: Path) -> Iterator[Path]:
    """A path to read randomly: the source itself, or a spooled copy of a pipe."""
    if isinstance(source, (str, Path)):
        yield Path(source)
        return
    tmp.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="load-", dir=tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(source, f, CHUNK)
        yield Path(name)
    finally:
        os.unlink(name)


def load_archive(store: ImageStore, source: Path | BinaryIO, *, tag: str | None = None,
                 compression: str | None = None) -> list[tuple[str | None, Descriptor]]:
    """Load a docker-archive, OCI tar or OCI layout directory; returns (ref, manifest) pairs.
    `compression`: compress a docker-archive's plain layers with it (OCI blobs stay as they are:
    their digests are named by the manifests)."""
    store.ensure()
    with _seekable(source, store.tmp) as path:
        if path.is_dir():
            return _load_oci(store, _DirSource(path), tag)
        import zlib

        try:
            tar = tarfile.open(path, mode="r:*")
        except (tarfile.TarError, EOFError, zlib.error):
            # (tarfile's own text lists every method it tried, one per line: not one line)
            raise StoreError(f"{path}: not an image archive (neither a tar nor a compressed tar)") from None
        except OSError as e:
            raise StoreError(f"{path}: not an image archive ({e.strerror or e})") from None
        try:
            with tar:
                names = set(tar.getnames())
                if "manifest.json" in names:
                    return _load_docker(store, tar, tag, compression)
                if "oci-layout" in names:
                    return _load_oci(store, _TarSource(tar), tag)
        except (tarfile.TarError, EOFError, zlib.error) as e:
            # A truncated or corrupted archive surfaced here as an internal error (exit 3).
            raise StoreError(f"{path}: damaged image archive: {e}") from None
        except OSError as e:
            if e.errno is not None:
                raise  # a real I/O problem (disk full...), reported as such
            # gzip's BadGzipFile (bad CRC), bz2's "Invalid data stream": data errors, no errno
            raise StoreError(f"{path}: damaged image archive: {e}") from None
        raise StoreError(f"{path}: neither a docker-archive (manifest.json) nor an OCI layout (oci-layout)")


def _member(tar: tarfile.TarFile, name: str) -> BinaryIO:
    while name.startswith("./"):
        name = name[2:]
    try:
        f = tar.extractfile(name)
    except KeyError:
        f = None
    if f is None:
        raise StoreError(f"archive has no file {name!r}")
    return f  # type: ignore[return-value]


def _load_docker(store: ImageStore, tar: tarfile.TarFile, tag: str | None,
                 compression: str | None) -> list[tuple[str | None, Descriptor]]:
    try:
        entries = json.loads(_member(tar, "manifest.json").read())
        assert isinstance(entries, list)
    except (ValueError, AssertionError):
        raise StoreError("docker-archive: manifest.json is not a list of images") from None
    if tag and len(entries) != 1:
        raise StoreError(f"cannot tag {tag}: the archive holds {len(entries)} images")
    out = []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("Config"), str):
            raise StoreError("docker-archive: a manifest.json entry has no Config")
        cfg_bytes = _member(tar, e["Config"]).read()
        config = ImageConfig.from_json(cfg_bytes)
        if len(config.diff_ids) != len(e.get("Layers") or []):
            raise StoreError(f"docker-archive: {e['Config']} lists {len(config.diff_ids)} diff_ids "
                             f"but the image has {len(e.get('Layers') or [])} layers")
        layers = [store_layer_stream(store, _member(tar, name), want, compression)[0]
                  for name, want in zip(e["Layers"], config.diff_ids)]
        cdesc = store.blobs.put_bytes(cfg_bytes, mt.OCI_CONFIG)
        man = Manifest(config=cdesc, layers=tuple(layers))
        mdesc = store.blobs.put_bytes(man.to_json(), mt.OCI_MANIFEST)
        mdesc = Descriptor(mdesc.media_type, mdesc.digest, mdesc.size,
                           platform=_platform_of(config))
        refs = [tag] if tag else list(e.get("RepoTags") or [])
        for r in refs:
            store.tag(r, mdesc)
        out.extend((r, mdesc) for r in refs) if refs else out.append((None, mdesc))
    return out


def _platform_of(config: ImageConfig):
    from builder.oci.model import Platform

    return Platform(config.architecture, config.os, variant=config.variant)


def store_layer_stream(store: ImageStore, f: BinaryIO, want: Digest | None = None,
                       compression: str | None = None) -> tuple[Descriptor, Digest]:
    """Store layer bytes (plain, gzip or zstd) in one pass; returns (descriptor, diff_id) and
    checks the diff_id against `want`. Compressed input is kept as it is; plain input is
    compressed with `compression` on the way (None: kept plain)."""
    buf = io.BufferedReader(f, CHUNK) if not hasattr(f, "peek") else f  # type: ignore[arg-type]
    comp = detect(buf.peek(4)[:4])
    h = DiffHasher(comp)
    target = compression if comp == "none" and compression else comp
    squeeze = compressor(target) if target != comp else None
    with store.blobs.writer(mt.OCI_LAYER_FOR[target]) as w:
        while chunk := buf.read(CHUNK):
            h.feed(chunk)
            if squeeze is None:
                w.write(chunk)
            elif out := squeeze.compress(chunk):
                w.write(out)
        if squeeze is not None:
            w.write(squeeze.flush())
        diff_id, _ = h.finish()
        if want is not None and diff_id != want:
            raise DigestMismatch(f"layer uncompresses to {diff_id}, the image config says {want}")
        return w.commit(), diff_id


class _DirSource:
    def __init__(self, root: Path) -> None:
        parse_layout_header((root / "oci-layout").read_bytes()) if (root / "oci-layout").exists() else None
        if not (root / "index.json").is_file():
            raise StoreError(f"{root} is not an OCI layout (no index.json)")
        self.root = root

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def open_blob(self, d: Digest) -> BinaryIO:
        try:
            return open(self.root / "blobs" / d.algorithm / d.hex, "rb")
        except FileNotFoundError:
            raise StoreError(f"OCI layout is missing blob {d}") from None


class _TarSource:
    def __init__(self, tar: tarfile.TarFile) -> None:
        parse_layout_header(_member(tar, "oci-layout").read())
        self.tar = tar

    def read(self, name: str) -> bytes:
        return _member(self.tar, name).read()

    def open_blob(self, d: Digest) -> BinaryIO:
        return _member(self.tar, f"blobs/{d.algorithm}/{d.hex}")


def _copy(store: ImageStore, src, desc: Descriptor) -> None:
    if not store.blobs.has(desc.digest):
        with src.open_blob(desc.digest) as f:
            store.blobs.put(f, desc.media_type, expected=desc.digest)
    # The digest is checked, the size was not: a descriptor lying about it got tagged, and the
    # store then failed `store verify` (found by bench/fuzz_long.py on damaged OCI archives).
    if store.blobs.size(desc.digest) != desc.size:
        raise StoreError(f"{desc.digest}: the archive's descriptor says {desc.size} bytes, "
                         f"the blob has {store.blobs.size(desc.digest)}")
    if mt.is_index(desc.media_type):
        for m in Index.from_json(store.blobs.read_bytes(desc.digest)).manifests:
            _copy(store, src, m)
    elif mt.is_manifest(desc.media_type):
        man = Manifest.from_json(store.blobs.read_bytes(desc.digest), allow_empty_layers=True)
        for d in (man.config, *man.layers):
            _copy(store, src, d)


def _load_oci(store: ImageStore, src, tag: str | None) -> list[tuple[str | None, Descriptor]]:
    index = Index.from_json(src.read("index.json"))
    if tag and len(index.manifests) != 1:
        raise StoreError(f"cannot tag {tag}: the layout holds {len(index.manifests)} images")
    out: list[tuple[str | None, Descriptor]] = []
    for d in index.manifests:
        _copy(store, src, d)
        # containerd and docker >= 25 put the full name in their own annotation and only a tag
        # in ref.name; prefer the full name when it is there.
        name = tag or (d.annotations or {}).get("io.containerd.image.name") or d.ref_name
        entry = Descriptor(d.media_type, d.digest, d.size, platform=d.platform)
        if name:
            try:
                store.tag(name, entry)
            except InvalidReference:
                name = None  # a bare tag like "1.0" written by another tool: loaded, untagged
        out.append((name, entry))
    return out
