"""Store maintenance: verify every blob and image, and prune unreferenced blobs.

Owns: `verify_store` (re-hash every blob; check that each tagged image's manifest, config and
layers are present with the sizes its descriptors claim and that config diff_ids match the
layer count) and `prune_blobs` (mark from the tags in index.json plus caller-given roots, sweep
the rest; blobs and temp files younger than a grace period are kept because a build in
flight writes its layers before it tags). Runs under the image store's writer lock.
Must not: know about snapshots or the build cache (the CLI passes their roots in).
"""
from __future__ import annotations

import os
import time
from typing import Iterable

from builder.errors import StoreError
from builder.oci import mediatypes as mt
from builder.oci.digest import Digest
from builder.oci.layout import ImageStore
from builder.oci.model import Descriptor, ImageConfig, Index, Manifest
from runtime.record import Record


class Problem(Record):
    subject: str  # a digest, ref or path
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


class PruneResult(Record):
    removed: tuple[Digest, ...]
    freed: int
    tmp_removed: int


def verify_store(store: ImageStore) -> tuple[int, list[Problem]]:
    """(number of blobs checked, problems). Reads every byte once."""
    problems: list[Problem] = []
    base = store.root / "blobs"
    n = 0
    if base.is_dir():
        for algo in sorted(os.listdir(base)):
            for name in sorted(os.listdir(base / algo)) if (base / algo).is_dir() else []:
                try:
                    d = Digest(f"{algo}:{name}")
                except StoreError:
                    problems.append(Problem(f"blobs/{algo}/{name}", "not a valid digest name"))
                    continue
                n += 1
                msg = store.blobs.verify(d)
                if msg:
                    problems.append(Problem(str(d), msg))
    try:
        index = store.index()
    except StoreError as e:
        return n, problems + [Problem("index.json", str(e))]
    for entry in index.manifests:
        _verify_tree(store, entry, entry.ref_name or str(entry.digest), problems)
    return n, problems


def _verify_tree(store: ImageStore, desc: Descriptor, label: str, problems: list[Problem]) -> None:
    if not store.blobs.has(desc.digest):
        problems.append(Problem(label, f"{desc.media_type} {desc.digest} is missing"))
        return
    size = store.blobs.size(desc.digest)
    if size != desc.size:
        problems.append(Problem(label, f"{desc.digest} is {size} bytes, its descriptor says {desc.size}"))
    if not (mt.is_manifest(desc.media_type) or mt.is_index(desc.media_type)):
        return
    try:
        data = store.blobs.read_bytes(desc.digest)
        if mt.is_index(desc.media_type):
            for m in Index.from_json(data).manifests:
                if not store.blobs.has(m.digest) and m.platform is not None:
                    continue  # a platform a pull did not keep (`pull --platform`): absent by design
                _verify_tree(store, m, label, problems)
            return
        man = Manifest.from_json(data, allow_empty_layers=True)
        for d in (man.config, *man.layers):
            _verify_tree(store, d, label, problems)
        if store.blobs.has(man.config.digest) and man.config.media_type in mt.CONFIG_TYPES:
            cfg = ImageConfig.from_json(store.blobs.read_bytes(man.config.digest))
            if len(cfg.diff_ids) != len(man.layers):
                problems.append(Problem(label, f"{len(man.layers)} layers but {len(cfg.diff_ids)} diff_ids"))
    except StoreError as e:
        problems.append(Problem(label, str(e)))


def live_blobs(store: ImageStore, roots: Iterable[Digest | str] = ()) -> set[Digest]:
    """Every blob reachable from the tags, plus `roots` (kept as they are, not followed)."""
    live: set[Digest] = {Digest(r) for r in roots}
    todo: list[Descriptor] = list(store.index().manifests)
    while todo:
        desc = todo.pop()
        live.add(desc.digest)
        if not store.blobs.has(desc.digest):
            continue
        if mt.is_index(desc.media_type):
            todo.extend(Index.from_json(store.blobs.read_bytes(desc.digest)).manifests)
        elif mt.is_manifest(desc.media_type):
            man = Manifest.from_json(store.blobs.read_bytes(desc.digest), allow_empty_layers=True)
            todo.append(man.config)
            todo.extend(man.layers)
    return live


def prune_blobs(store: ImageStore, *, roots: Iterable[Digest | str] = (), grace: float = 600.0,
                dry_run: bool = False) -> PruneResult:
    """Delete blobs no tag (or root) reaches, older than `grace` seconds; also stale temp files."""
    now = time.time()
    removed: list[Digest] = []
    freed = 0
    tmp_removed = 0
    with store.locked():
        live = live_blobs(store, roots)
        for d in list(store.blobs.walk()):
            if d in live:
                continue
            p = store.blobs.path(d)
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            if now - st.st_mtime < grace:
                continue
            if not dry_run:
                store.blobs.delete(d)
            removed.append(d)
            freed += st.st_size
        if store.tmp.is_dir():
            for name in os.listdir(store.tmp):
                p = store.tmp / name
                try:
                    st = p.lstat()
                except FileNotFoundError:
                    continue
                if name.startswith("blob-") and now - st.st_mtime >= grace and p.is_file():
                    if not dry_run:
                        p.unlink(missing_ok=True)
                    tmp_removed += 1
    return PruneResult(tuple(removed), freed, tmp_removed)
