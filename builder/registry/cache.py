"""The registry cache transport: `--cache-to/--cache-from type=registry,ref=REPO:TAG`.

Owns: moving an OCI layout — the engine's cache exchange format (builder.engine.cache: one
artifact manifest per record, index.json annotated with the cache keys) — to a registry as
an OCI image index tagged REPO:TAG, and back. `export_to_registry` / `import_from_registry`
wrap the engine's `export_local` / `import_local` (duck-typed: this package may not import the
engine) around a temp layout. The format is carried as is, so whatever the engine puts in the
layout (mode=min/max records, `mounts=true` cache-mount contents) travels unchanged.
Must not: decide which records to export or whether a step hits (the engine does); print.
"""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterable

from builder.errors import CacheError, InvalidDocument
from builder.oci import mediatypes as mt
from builder.oci.digest import digest_bytes
from builder.oci.model import Descriptor, Index, Manifest, layout_header
from builder.oci.reference import parse_reference
from builder.oci.store import DirStore, atomic_write
from builder.registry.transfer import (BlobProgress, Options, Progress, _download_to, _run_parallel,
                                       default_options, upload_blob)


def _noop(_: BlobProgress) -> None:
    pass


def push_layout(layout: Path, ref: str, *, options: Options | None = None, progress: Progress | None = None,
                mount_from: Iterable[str] = ()) -> Descriptor:
    """Upload every manifest listed in `layout`/index.json (with its blobs) and tag an index of
    them as `ref`. Returns the index descriptor. Annotations on index entries are kept."""
    layout = Path(layout)
    r = parse_reference(ref)
    opts = options or default_options()
    progress = progress or _noop
    client = opts.client(r.registry)
    store = DirStore(layout, layout / ".tmp")
    try:
        index = Index.from_json((layout / "index.json").read_bytes())
    except (OSError, InvalidDocument) as e:
        raise CacheError(f"cache export {layout} is not an OCI layout: {e}") from None
    mounts = tuple(mount_from)
    docs: list[tuple[Descriptor, bytes]] = []
    blobs: dict[str, Descriptor] = {}
    for d in index.manifests:
        if not mt.is_manifest(d.media_type):
            raise CacheError(f"cache export {layout}: entry {d.digest.short} is a {d.media_type}, not a manifest")
        data = store.read_bytes(d.digest)
        man = Manifest.from_json(data, allow_empty_layers=True)
        for b in (man.config, *man.layers):
            blobs.setdefault(b.digest, b)
        docs.append((d, data))
    # every record's blobs at once (one small config + at most one layer each), then the manifests
    _run_parallel(opts.jobs, [lambda b=b: upload_blob(client, _AsImageStore(store), b, r.repository, opts,
                                                      progress, mounts) for b in blobs.values()])
    _run_parallel(opts.jobs, [lambda d=d, data=data: client.put_manifest(r.repository, d.digest, data, d.media_type)
                              for d, data in docs])
    entries = [d for d, _ in docs]
    idx = Index(manifests=tuple(entries), annotations={"dev.pybuild.cache.format": "oci-layout-records.v1"})
    data = idx.to_json()
    got = client.put_manifest(r.repository, r.tag or "latest", data, mt.OCI_INDEX)
    desc = Descriptor(mt.OCI_INDEX, digest_bytes(data), len(data))
    if got and got != desc.digest:
        raise CacheError(f"{r.registry}: cache index {r.repository}:{r.tag} stored as {got}, expected {desc.digest}")
    return desc


def pull_layout(ref: str, layout: Path, *, options: Options | None = None, progress: Progress | None = None,
                skip_blob: Callable[[str], bool] = lambda _d: False) -> int:
    """Download the index tagged `ref` and everything it lists into an OCI layout at `layout`.

    Layer blobs for which `skip_blob(digest)` is true (already in the local store) are not
    downloaded. Returns the number of manifests. A missing tag raises NotFound (callers of
    --cache-from usually turn that into a warning: the first CI run has no cache yet).
    """
    layout = Path(layout)
    r = parse_reference(ref)
    opts = options or default_options()
    progress = progress or _noop
    client = opts.client(r.registry)
    data, media_type = client.get_manifest(r.repository, r.reference)
    if not mt.is_index(media_type):
        raise CacheError(f"{r.registry}: {r.repository}:{r.reference} is a {media_type or 'document'}, "
                         "not a cache index")
    index = Index.from_json(data)
    store = DirStore(layout, layout / ".tmp")
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def fetch(d: Descriptor) -> tuple[Descriptor, bytes]:
        mdata, _ = client.get_manifest(r.repository, d.digest, accept=(d.media_type,))
        if digest_bytes(mdata) != d.digest:
            raise CacheError(f"{r.registry}: cache manifest {d.digest} of {r.repository} does not match its digest")
        return d, mdata

    docs = _run_parallel(opts.jobs, [lambda d=d: fetch(d) for d in index.manifests])
    wanted: dict[str, Descriptor] = {}
    for _d, mdata in docs:
        man = Manifest.from_json(mdata, allow_empty_layers=True)
        for b in (man.config, *man.layers):
            if b is man.config or not skip_blob(b.digest):
                wanted.setdefault(b.digest, b)
    cancel = threading.Event()
    _run_parallel(opts.jobs, [lambda b=b: _download_to(client, r, b, store, progress, opts.backoff, cancel)
                              for b in wanted.values()], cancel)
    for d, mdata in docs:  # manifests after the blobs they name
        store.put_bytes(mdata, d.media_type)
    atomic_write(layout / "index.json", Index(manifests=index.manifests).to_json(), layout / ".tmp")
    atomic_write(layout / "oci-layout", layout_header(), layout / ".tmp")
    return len(index.manifests)


def export_to_registry(cache, keys: list[str], blobs: DirStore, ref: str, *, options: Options | None = None,
                       progress: Progress | None = None, tmp_dir: Path | None = None,
                       mount_from: Iterable[str] = ()) -> int:
    """`cache.export_local(keys, blobs, dir)` into a temp layout, then `push_layout` it to `ref`."""
    with tempfile.TemporaryDirectory(prefix="cache-export-", dir=_tmp(tmp_dir)) as d:
        n = cache.export_local(list(keys), blobs, Path(d))
        push_layout(Path(d), ref, options=options, progress=progress, mount_from=mount_from)
    return n


def import_from_registry(cache, blobs: DirStore, ref: str, *, options: Options | None = None,
                         progress: Progress | None = None, tmp_dir: Path | None = None) -> int:
    """`pull_layout(ref)` into a temp layout (skipping layers we have), then `cache.import_local`."""
    with tempfile.TemporaryDirectory(prefix="cache-import-", dir=_tmp(tmp_dir)) as d:
        pull_layout(ref, Path(d), options=options, progress=progress, skip_blob=blobs.has)
        return cache.import_local(Path(d), blobs)


def _tmp(tmp_dir: Path | None) -> str | None:
    if tmp_dir is None:
        return None
    Path(tmp_dir).mkdir(parents=True, exist_ok=True)
    return str(tmp_dir)


class _AsImageStore:
    """upload_blob reads `.blobs`; a bare DirStore of a layout is enough."""

    def __init__(self, blobs: DirStore) -> None:
        self.blobs = blobs


def parse_cache_spec(spec: str) -> dict[str, str]:
    """`type=registry,ref=REPO:TAG,mode=max,mounts=true` → {"type": …, "ref": …, …} (validated)."""
    out: dict[str, str] = {}
    for part in spec.split(","):
        k, sep, v = part.partition("=")
        if not sep or not k.strip():
            raise CacheError(f"invalid cache option {part!r} in {spec!r}: expected key=value")
        out[k.strip()] = v.strip()
    if out.get("type") == "registry":
        if "ref" not in out:
            raise CacheError(f"cache spec {spec!r}: type=registry needs ref=REPO:TAG")
        parse_reference(out["ref"])
        if out.get("mode", "min") not in ("min", "max"):
            raise CacheError(f"cache spec {spec!r}: mode must be min or max")
        if out.get("mounts", "false") not in ("true", "false"):
            raise CacheError(f"cache spec {spec!r}: mounts must be true or false")
    return out

