"""Builds for several platforms at once, and what single builds need to know about platforms.

Owns: `build_multi(req, platforms, settings, reporter)` (one `build()` per platform, run
concurrently, sharing one cache and a `KeyLocks` so a step whose key is the same for every
platform — a stage pinned with `FROM --platform=$BUILDPLATFORM`, the cross-compile shape — runs
once while the others wait for its record; the Dockerfile parsed once; a COPY whose layer is
provably the same on every platform copied once (engine/copyshare.py, through `KeyLocks.copies`);
then one OCI image index naming each manifest's
platform, tagged under the request's names), `KeyLocks`, `local_image` (a local name resolved
for one platform: a stored index's entry, or a single manifest of that platform) and
`check_emulation` (a stage with RUN on a foreign platform needs a binfmt_misc handler; said
before any work).

Must not: print (events go through the reporter, each step name prefixed with its platform),
write outputs other than the local store, or register emulators (builder.platforms /
`pybuild setup emulation` do, on request).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Iterator

from builder.errors import ImageNotFound, PybuildError, StoreError
from builder.oci import mediatypes as mt
from builder.oci.image import Image, select_platform
from builder.oci.layout import ImageStore
from builder.oci.model import Descriptor, Index, Platform
from builder.plan.graph import BuildGraph, RunOp
from builder.report import BuildFinished, BuildStarted, NullReporter, Reporter
from runtime.record import Record, replace


class KeyLocks:
    """One lock per cache key, shared by concurrent builds: the first to miss a key executes it.
    Also carries the one BuildContext the builds share (`context`), so the context is hashed once."""

    def __init__(self, context=None) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.context = context
        self.cancel = threading.Event()  # every platform's solver stops when it is set
        self.dockerfile = None  # the Dockerfile parsed once for every platform (None: each parses)
        # COPY/ADD layers one platform made, by what they depend on apart from the base
        # (copyshare.share_key): another platform's same step reuses one when its base
        # answers every lookup the copy made the same way (engine/copyshare.py)
        self.copies: dict[str, list] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield


def to_platform(platform: str) -> Platform:
    os_, _, rest = platform.partition("/")
    arch, _, variant = rest.partition("/")
    return Platform(arch, os_, variant=variant or None)


def local_image(store: ImageStore, ref: str, desc: Descriptor, platform: str) -> Image | None:
    """`ref` (resolved to `desc`) for `platform`, or None when the store lacks that platform."""
    want = to_platform(platform)
    if mt.is_index(desc.media_type):
        try:
            child = select_platform(Index.from_json(store.blobs.read_bytes(desc.digest)), want)
            if not store.blobs.has(child.digest):
                return None  # a platform a pull did not keep
            return Image.load(store.blobs, child)
        except StoreError:
            return None
    img = Image.load(store.blobs, desc)
    c = img.config
    if c.os != want.os or c.architecture != want.architecture or (
            want.variant and c.variant and c.variant != want.variant):
        return None
    return img


def check_emulation(graph: BuildGraph) -> None:
    """A RUN in a stage for another architecture than this machine's needs a binfmt handler."""
    from builder import platforms

    host_arch = platforms.split(platforms.host())[1]
    for si in graph.needed():
        plat = graph.platform_of(si)
        if platforms.split(plat)[1] != host_arch and any(isinstance(s.op, RunOp) for s in graph.stages[si].steps):
            platforms.require_emulation(plat)


class _Tagged:
    """Passes one platform build's events on, step numbers made unique and names prefixed."""

    def __init__(self, inner: Reporter, platform: str, offset: int) -> None:
        self.inner, self.platform, self.offset = inner, platform, offset

    def emit(self, event) -> None:
        if isinstance(event, (BuildStarted, BuildFinished)):
            return  # build_multi reports the whole build once
        if getattr(event, "id", 0):
            event = replace(event, id=event.id + self.offset)
        if hasattr(event, "name"):
            n = event.name
            event = replace(event, name=f"[{self.platform}] {n}")
        self.inner.emit(event)


class MultiResult(Record):
    manifest: Descriptor  # the index
    config_digest: str  # the index digest (what docker prints as the id of a multi-platform image)
    image: Image  # the first platform's image (outputs that need one image)
    results: dict[str, object]  # platform -> BuildResult
    seconds: float


def build_multi(req, platforms_: tuple[str, ...], settings, reporter: Reporter | None = None,
                max_parallel: int = 2) -> MultiResult:
    """One image per platform, concurrently, and an index of them tagged under `req.tags`."""
    import time

    from builder.context import BuildContext, StatCache, read_ignore_patterns, stat_cache_path
    from builder.engine.build import _tag_if_changed, build

    rep = reporter or NullReporter()
    t0 = time.monotonic()
    stat_cache = None
    ctx = None
    if req.context_dir is not None:
        stat_cache = StatCache.load(stat_cache_path(settings.cache_dir, req.context_dir))
        ign = BuildContext.ignore_file_for(req.context_dir, req.dockerfile_path)
        ctx = BuildContext(req.context_dir, read_ignore_patterns(ign.read_text()) if ign else [], stat_cache)
    locks = KeyLocks(ctx)
    rep.emit(BuildStarted(0, str(req.context_dir or "")))
    from builder.engine.build import _parse

    try:  # once, not once per platform at the same time (Lark holds the GIL: it was paid twice)
        locks.dockerfile = _parse(req, settings)
    except PybuildError:
        pass  # each platform's build reports it, as before

    def one(i: int, plat: str):
        r = replace(req, platform=plat, tags=(), memo_fields=None, shared=locks, cache_to=None)
        try:
            return build(r, settings, _Tagged(rep, plat, 1000 * i))
        except PybuildError as e:  # say which platform failed (a RUN may fail on one architecture only)
            if plat not in e.message:
                e.message = f"[{plat}] {e.message}"
            raise

    results: dict[str, object] = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(platforms_))),
                                thread_name_prefix="platform") as pool:
            futs = {pool.submit(one, i, p): p for i, p in enumerate(platforms_)}
            errors: list[BaseException] = []  # in the order they happened: the first is the cause
            try:
                for f in as_completed(futs):
                    try:
                        results[futs[f]] = f.result()
                    except BaseException as e:  # noqa: BLE001 - the others are stopped, the cause reported
                        locks.cancel.set()
                        errors.append(e)
            except BaseException:  # Ctrl-C while waiting: stop every platform's build (sandboxes killed)
                locks.cancel.set()
                raise
            if errors:  # the failure that caused the stop, not another platform's "interrupted"
                raise next((e for e in errors if not isinstance(e, KeyboardInterrupt)), errors[0])
    except BaseException as e:
        rep.emit(BuildFinished(time.monotonic() - t0, error=getattr(e, "message", None) or type(e).__name__))
        raise
    finally:
        if stat_cache is not None:
            stat_cache.save()  # once, after every build has stopped hashing
    store = ImageStore(settings.store_dir)
    entries = tuple(replace(results[p].manifest, platform=to_platform(p), annotations=None) for p in platforms_)
    index = Index(manifests=entries)
    desc = store.blobs.put_bytes(index.to_json(), mt.OCI_INDEX)
    desc = Descriptor(mt.OCI_INDEX, desc.digest, desc.size)
    for t in req.tags:
        _tag_if_changed(store, t, desc)
    if req.cache_to is not None:
        from builder.engine.cache import CacheStore

        keys = [k.key.key for p in platforms_ for k in results[p].solution.keys]
        CacheStore(settings.cache_dir, settings.tmp_dir).export_local(keys, store.blobs, req.cache_to)
    secs = time.monotonic() - t0
    from builder.oci.reference import full_names

    rep.emit(BuildFinished(secs, image=str(desc.digest), tags=full_names(req.tags)))
    first = results[platforms_[0]]
    return MultiResult(desc, str(desc.digest), first.image, results, secs)


def index_platforms(store: ImageStore, desc: Descriptor) -> list[tuple[str, Descriptor, bool]]:
    """(platform, manifest descriptor, stored here?) per entry of an index; one row for a manifest."""
    if not mt.is_index(desc.media_type):
        img = Image.load(store.blobs, desc)
        c = img.config
        return [(str(Platform(c.architecture, c.os, variant=c.variant)), desc, True)]
    idx = Index.from_json(store.blobs.read_bytes(desc.digest))
    out = []
    for d in idx.manifests:
        if d.platform is None or not mt.is_manifest(d.media_type):
            continue  # attestations and nested indexes name no runnable platform
        if d.platform.os == "unknown":
            continue
        out.append((str(d.platform), d, store.blobs.has(d.digest)))
    return out


def load_for(store: ImageStore, desc: Descriptor, platform: str | None = None) -> Image:
    """The image of `platform` in `desc`; without one: this machine's, else the first stored entry."""
    from builder.oci.image import host_platform

    if not mt.is_index(desc.media_type):
        return Image.load(store.blobs, desc)
    rows = index_platforms(store, desc)
    if platform is not None:
        return Image.load(store.blobs, desc, to_platform(platform))
    host = str(host_platform())
    for p, d, present in rows:
        if present and p.split("/")[:2] == host.split("/")[:2]:
            return Image.load(store.blobs, d)
    for _p, d, present in rows:
        if present:
            return Image.load(store.blobs, d)
    raise ImageNotFound(f"{desc.digest}: the index names no platform stored here")
