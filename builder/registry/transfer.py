"""Pull and push images between a registry and the local image store.

Owns: `pull` (index → platform manifest, OCI or Docker schema2; config and layers downloaded
in parallel, hashed while streaming straight into the content store, resumed with Range and
retried with backoff; manifest written only after every blob it names, tag last) and `push`
(HEAD existence checks, cross-repository mounts, monolithic or chunked uploads in parallel,
manifest PUT with the stored bytes and media type, several tags), progress per blob as plain
callables. Must not: print, read settings (callers pass `insecure_registries`/`ca_cert`), or
leave a half-written blob: a failed download aborts its BlobWriter (temp file removed).
"""
from __future__ import annotations

import time
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable, Iterable

from builder.errors import DigestMismatch, PybuildError, RegistryError, StoreError
from builder.oci import mediatypes as mt
from builder.oci.digest import Digest, digest_bytes
from builder.oci.image import select_platform
from builder.oci.layout import ImageStore
from builder.oci.model import Descriptor, Index, Manifest, Platform
from builder.oci.reference import Reference, parse_reference
from builder.oci.store import DirStore
from builder.registry.client import MANIFEST_TYPES, RegistryClient
from runtime.record import Record, field, replace

CHUNK = 1 << 20
ATTEMPTS = 4  # per blob: first try + retries with backoff


class BlobProgress(Record):
    """One progress report for one blob. status: downloading, uploading, exists, mounted, done."""

    digest: str
    media_type: str
    done: int
    total: int
    status: str


Progress = Callable[[BlobProgress], None]


class Options(Record, frozen=False):
    """How to reach registries; the CLI fills this from flags and builder.settings."""

    ca_cert: str | None = None
    insecure_registries: tuple[str, ...] = ()
    jobs: int = 3  # docker's max-concurrent-downloads; more only contends on small machines
    chunk_size: int | None = None  # None: monolithic uploads; else PATCH chunks of this size
    backoff: float = 0.25  # seconds before the first retry; doubles each time
    mirrors: dict = field(default_factory=dict)  # registry -> (mirror hosts...), tried in order for pulls
    credentials: object = field(default=None)  # None: look up docker config; else Credentials
    clients: dict = field(default_factory=dict, repr=False)

    def client(self, registry: str) -> RegistryClient:
        c = self.clients.get(registry)
        if c is None:
            kw = {} if self.credentials is None else {"credentials": self.credentials}
            c = RegistryClient(registry, ca_cert=self.ca_cert, insecure_registries=self.insecure_registries,
                               pool=max(4, self.jobs * 2), backoff=self.backoff, **kw)
            self.clients[registry] = c
        return c


_defaults: dict = {}


def configure(**defaults) -> None:
    """Process-wide defaults for every Options() made here (the CLI sets insecure_registries,
    mirrors from settings, so the engine's FROM pulls honour them without knowing settings)."""
    _defaults.update(defaults)


def default_options() -> Options:
    return Options(**_defaults)


def parse_platform(s: str) -> Platform:
    parts = s.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise RegistryError(f"invalid platform {s!r}: expected os/arch[/variant]")
    return Platform(architecture=parts[1], os=parts[0], variant=parts[2] if len(parts) == 3 else None)


def _noop(_: BlobProgress) -> None:
    pass


# --- pull --------------------------------------------------------------------------------------

def pull(ref: str, image_store: ImageStore, *, progress: Progress | None = None, platform: str = "linux/amd64",
         options: Options | None = None, tag: bool = True, all_platforms: bool = False) -> Descriptor:
    """Download `ref` into `image_store` and tag it there; returns the platform manifest descriptor.

    The engine's FROM calls this when an image is not local (and with --pull).
    """
    r = parse_reference(ref)
    opts = options or default_options()
    progress = progress or _noop
    # Mirrors first (settings `mirrors: {docker.io: [mirror:5000]}`), then the registry itself;
    # a mirror that fails for any reason but corrupt content is skipped.
    for host in opts.mirrors.get(r.registry, ()):
        try:
            return _pull_from(opts.client(host), replace(r, registry=host), r, image_store, progress, platform,
                              opts, tag, all_platforms)
        except DigestMismatch:
            raise
        except RegistryError:
            continue
    return _pull_from(opts.client(r.registry), r, r, image_store, progress, platform, opts, tag, all_platforms)


def _pull_from(client: RegistryClient, r: Reference, name: Reference, image_store: ImageStore,
               progress: Progress, platform: str, opts: Options, tag: bool, all_platforms: bool = False) -> Descriptor:
    """Pull `r`. An index is kept (stored and tagged as the index) with the manifests of the
    requested platforms (`platform` may list several, comma-separated; `all_platforms`: every
    one), so a later build for another of its platforms finds the name locally; returns the
    first requested platform's manifest descriptor."""
    data, media_type = client.get_manifest(r.repository, r.reference)
    if r.digest and digest_bytes(data) != r.digest:
        raise DigestMismatch(f"{r.registry}: manifest {r.repository}@{r.digest} hashes to {digest_bytes(data)}")
    if mt.is_index(media_type):
        index = Index.from_json(data)
        if all_platforms:
            children = [d for d in index.manifests if mt.is_manifest(d.media_type) and d.platform is not None
                        and d.platform.os != "unknown"]
        else:
            children = list(dict.fromkeys(_pick(r, index, p) for p in platform.split(",") if p))
        results = []
        for desc in children:
            cdata, ctype = client.get_manifest(r.repository, desc.digest, accept=(desc.media_type,))
            if digest_bytes(cdata) != desc.digest:
                raise DigestMismatch(f"{r.registry}: manifest {r.repository}@{desc.digest} hashes to "
                                     f"{digest_bytes(cdata)}")
            results.append(_pull_manifest(client, r, cdata, ctype, image_store, progress, opts))
        idesc = image_store.blobs.put_bytes(data, media_type)  # after its children: never dangling
        if tag:
            image_store.tag(str(name), Descriptor(media_type, idesc.digest, idesc.size))
        return results[0]
    if media_type == "application/vnd.docker.distribution.manifest.v1+prettyjws" or \
            media_type == "application/vnd.docker.distribution.manifest.v1+json":
        raise RegistryError(f"{r.registry}: {r.repository}:{r.reference} is a Docker schema 1 manifest, "
                            "which is not supported")
    elif not mt.is_manifest(media_type):
        raise RegistryError(f"{r.registry}: {r}: unexpected manifest media type {media_type or '(none)'!r}")
    result = _pull_manifest(client, r, data, media_type, image_store, progress, opts)
    if tag:
        image_store.tag(str(name), result)  # under the name asked for, even when a mirror served it
    return result


def _pull_manifest(client: RegistryClient, r: Reference, data: bytes, media_type: str, image_store: ImageStore,
                   progress: Progress, opts: Options) -> Descriptor:
    manifest = Manifest.from_json(data, allow_empty_layers=True)
    image_store.ensure()
    blobs = [manifest.config, *manifest.layers]
    cancel = threading.Event()
    _run_parallel(opts.jobs, [lambda d=d: _download_to(client, r, d, image_store.blobs, progress, opts.backoff,
                                                       cancel) for d in blobs], cancel)
    mdesc = image_store.blobs.put_bytes(data, media_type)  # after its blobs: never a dangling manifest
    cfg_platform = _config_platform(image_store, manifest)
    return Descriptor(media_type, mdesc.digest, mdesc.size, platform=cfg_platform)


def _pick(r: Reference, index: Index, platform: str) -> Descriptor:
    try:
        return select_platform(index, parse_platform(platform))
    except StoreError as e:
        raise RegistryError(f"{r.registry}: {r.repository}:{r.reference}: {e}") from None


def _config_platform(store: ImageStore, manifest: Manifest) -> Platform | None:
    import json

    try:
        cfg = json.loads(store.blobs.read_bytes(manifest.config.digest))
        return Platform(cfg["architecture"], cfg["os"], variant=cfg.get("variant"))
    except (ValueError, KeyError, TypeError, StoreError):
        return None


def _download_to(client: RegistryClient, r: Reference, d: Descriptor, blobs: DirStore, progress: Progress,
                 backoff: float, cancel: threading.Event | None = None) -> None:
    """One blob into `blobs`, verified while streaming; resumed with Range after a cut."""
    if blobs.has(d.digest):
        progress(BlobProgress(d.digest, d.media_type, d.size, d.size, "exists"))
        return
    import requests
    import urllib3

    # raw.stream raises urllib3's errors (ProtocolError on a cut connection), not requests'.
    transient = (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                 requests.exceptions.Timeout, urllib3.exceptions.HTTPError, OSError)
    w = blobs.writer(d.media_type)
    try:
        attempt = 0
        while True:
            resp = None
            try:
                resp = client.open_blob(r.repository, d.digest, offset=w.size)
                if w.size and resp.status_code != 206:  # server ignored Range: start over
                    w.abort()
                    w = blobs.writer(d.media_type)
                for chunk in resp.raw.stream(CHUNK, decode_content=False):
                    if cancel is not None and cancel.is_set():
                        raise Cancelled(f"{r.registry}: download of {d.digest.short} cancelled")
                    w.write(chunk)
                    if w.size > d.size:
                        raise DigestMismatch(f"{r.registry}: blob {d.digest} of {r.repository} is larger "
                                             f"than the {d.size} bytes the manifest says")
                    progress(BlobProgress(d.digest, d.media_type, w.size, d.size, "downloading"))
                if w.size < d.size:
                    raise ConnectionError(f"stream ended after {w.size} of {d.size} bytes")
                break
            except transient as e:
                attempt += 1
                if attempt >= ATTEMPTS:
                    raise RegistryError(f"{r.registry}: download of blob {d.digest.short} of {r.repository} failed "
                                        f"after {ATTEMPTS} attempts: {_reason(e)}") from None
                time.sleep(backoff * 2 ** attempt)
            finally:
                if resp is not None:
                    resp.close()
        try:
            w.commit(d.digest)
        except DigestMismatch:
            raise DigestMismatch(f"{r.registry}: blob {d.digest} of {r.repository} failed verification: "
                                 f"the content received does not hash to its digest") from None
    except BaseException:
        w.abort()  # the temp file goes; nothing half-written stays in the store
        raise
    progress(BlobProgress(d.digest, d.media_type, d.size, d.size, "done"))


def _reason(e: Exception) -> str:
    s = str(e)
    for needle in ("Connection refused", "Connection reset", "IncompleteRead", "timed out", "stream ended"):
        if needle in s:
            return s[s.index(needle):].split(")")[0][:120] if needle == "stream ended" else needle.lower()
    return type(e).__name__


class Cancelled(RegistryError):
    """A transfer stopped because a sibling failed or the user interrupted."""


def _run_parallel(jobs: int, tasks: list[Callable[[], object]], cancel: threading.Event | None = None) -> list:
    """Run tasks on `jobs` threads. On the first failure (or Ctrl-C) set `cancel` so running
    transfers stop at their next chunk (aborting their temp files), drop queued ones, and raise it."""
    if len(tasks) <= 1 or jobs <= 1:
        out = []
        for t in tasks:
            if cancel is not None and cancel.is_set():
                raise Cancelled("transfer cancelled")
            out.append(t())
        return out
    with ThreadPoolExecutor(max_workers=min(jobs, len(tasks))) as pool:
        futures = [pool.submit(t) for t in tasks]
        try:
            for f in as_completed(futures):
                exc = f.exception()
                if exc is not None:
                    raise exc
        except BaseException:
            if cancel is not None:
                cancel.set()
            for f in futures:
                f.cancel()
            raise
        return [f.result() for f in futures]


# --- push --------------------------------------------------------------------------------------

def push(image_store: ImageStore, source: "str | Descriptor", destinations: str | Iterable[str], *,
         progress: Progress | None = None, options: Options | None = None,
         mount_from: Iterable[str] = ()) -> Descriptor:
    """Upload the local image `source` (ref, digest or id) under every destination reference.

    Blobs go once per repository; a second repository on the same registry gets them by
    cross-repository mount (also tried from `mount_from` repositories). Returns the pushed
    manifest (or index) descriptor, whose digest equals the registry's.
    """
    dests = [destinations] if isinstance(destinations, str) else list(destinations)
    if not dests:
        raise RegistryError("push: no destination given")
    refs = [parse_reference(d) for d in dests]
    # a Descriptor: an image in the store's blobs that no tag names (e.g. re-compressed for the push)
    desc = source if isinstance(source, Descriptor) else image_store.resolve(source)
    opts = options or default_options()
    progress = progress or _noop
    done_repos: dict[str, list[str]] = {}  # registry -> repositories that already hold the blobs
    known: dict[str, dict[str, list[str]]] = {}  # registry -> layer digest -> repos we pulled it from
    for r in refs:
        client = opts.client(r.registry)
        sources = [*done_repos.get(r.registry, ()), *mount_from]
        if r.registry not in known:
            known[r.registry] = _known_sources(image_store, r.registry)
        push_tree(client, image_store, desc, r.repository, opts, progress, sources, known[r.registry])
        tag = r.tag or r.reference
        data = image_store.blobs.read_bytes(desc.digest)
        got = client.put_manifest(r.repository, r.digest or tag, data, desc.media_type)
        if got and got != desc.digest:
            raise RegistryError(f"{r.registry}: manifest for {r.repository}:{tag} stored as {got}, "
                                f"expected {desc.digest}")
        done_repos.setdefault(r.registry, []).append(r.repository)
    return Descriptor(desc.media_type, desc.digest, desc.size, platform=desc.platform)


def _known_sources(store: ImageStore, registry: str) -> dict[str, list[str]]:
    """Layers of local images tagged on `registry` (e.g. a pulled base image): the registry has
    them in those repositories, so a push elsewhere there can mount instead of upload."""
    out: dict[str, list[str]] = {}
    for name, d in store.list():
        try:
            r = parse_reference(name)
            if r.registry != registry or not mt.is_manifest(d.media_type):
                continue
            man = Manifest.from_json(store.blobs.read_bytes(d.digest), allow_empty_layers=True)
        except (PybuildError, ValueError):
            continue  # a name or manifest we cannot read is just not a mount source
        for layer in man.layers:
            repos = out.setdefault(layer.digest, [])
            if r.repository not in repos and len(repos) < 3:
                repos.append(r.repository)
    return out


def push_tree(client: RegistryClient, store: ImageStore, desc: Descriptor, repo: str, opts: Options,
              progress: Progress, mount_from: Iterable[str] = (),
              known: dict[str, list[str]] | None = None) -> None:
    """Every blob under `desc` into `repo` (children of an index are pushed by digest first)."""
    data = store.blobs.read_bytes(desc.digest)
    if mt.is_index(desc.media_type):
        for child in Index.from_json(data).manifests:
            if mt.is_manifest(child.media_type) or mt.is_index(child.media_type):
                if not store.blobs.has(child.digest):
                    continue  # a platform we did not pull: the registry must already have it
                push_tree(client, store, child, repo, opts, progress, mount_from, known)
                client.put_manifest(repo, child.digest, store.blobs.read_bytes(child.digest), child.media_type)
        return
    manifest = Manifest.from_json(data, allow_empty_layers=True)
    blobs = {d.digest: d for d in [manifest.config, *manifest.layers]}
    known = known or {}

    def sources(d: Descriptor) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m for m in (*mount_from, *known.get(d.digest, ())) if m != repo))
    cancel = threading.Event()
    _run_parallel(opts.jobs, [lambda d=d: upload_blob(client, store, d, repo, opts, progress, sources(d), cancel)
                              for d in blobs.values()], cancel)


def upload_blob(client: RegistryClient, store: ImageStore, d: Descriptor, repo: str, opts: Options,
                progress: Progress, mount_from: tuple[str, ...] = (), cancel: threading.Event | None = None) -> str:
    """One blob into `repo`: "exists", "mounted" or "uploaded"."""
    if client.blob_size(repo, d.digest, push=True) is not None:
        progress(BlobProgress(d.digest, d.media_type, d.size, d.size, "exists"))
        return "exists"
    for src in mount_from:
        if client.mount_blob(repo, d.digest, src):
            progress(BlobProgress(d.digest, d.media_type, d.size, d.size, "mounted"))
            return "mounted"
    if not store.blobs.has(d.digest):
        raise RegistryError(f"{client.registry}: cannot push blob {d.digest.short} to {repo}: "
                            "it is not in the local store (and the registry does not have it)")
    size = store.blobs.size(d.digest)
    attempt = 0
    while True:
        try:
            if opts.chunk_size:
                _upload_chunked(client, store, d, repo, size, opts.chunk_size, progress, cancel)
            else:
                _upload_monolithic(client, store, d, repo, size, progress, cancel)
            break
        except RegistryError as e:
            attempt += 1
            if attempt >= ATTEMPTS or not _retryable(e) or (cancel is not None and cancel.is_set()):
                raise
            time.sleep(opts.backoff * 2 ** attempt)
    progress(BlobProgress(d.digest, d.media_type, size, size, "done"))
    return "uploaded"


def _retryable(e: RegistryError) -> bool:
    s = str(e)
    return "cannot reach" in s or "HTTP 5" in s or "connection" in s.lower()


class _CountingReader:
    """A file wrapper requests can stream (it knows its length) that reports progress."""

    def __init__(self, f, size: int, on_read: Callable[[int], None], cancel: threading.Event | None = None) -> None:
        self._f, self._size, self._n, self._on, self._cancel = f, size, 0, on_read, cancel
        self.len = size

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        if self._cancel is not None and self._cancel.is_set():
            self._f.close()
            raise Cancelled("upload cancelled")
        data = self._f.read(CHUNK if n is None or n < 0 or n < CHUNK else n)
        if data:
            self._n += len(data)
            self._on(self._n)
        else:
            self._f.close()  # requests does not close bodies it was given
        return data

    def close(self) -> None:
        self._f.close()


def _upload_monolithic(client: RegistryClient, store: ImageStore, d: Descriptor, repo: str, size: int,
                       progress: Progress, cancel: threading.Event | None = None) -> None:
    loc = client.start_upload(repo)

    def body():
        f = store.blobs.open(d.digest, verify=False)  # the registry verifies the digest on PUT
        return _CountingReader(f, size, lambda n: progress(BlobProgress(d.digest, d.media_type, n, size,
                                                                         "uploading")), cancel)
    client.finish_upload(repo, loc, d.digest, body=body, size=size)


def _upload_chunked(client: RegistryClient, store: ImageStore, d: Descriptor, repo: str, size: int,
                    chunk_size: int, progress: Progress, cancel: threading.Event | None = None) -> None:
    loc = client.start_upload(repo)
    offset = 0
    with store.blobs.open(d.digest, verify=False) as f:
        while True:
            chunk = f.read(chunk_size)
            if not chunk:
                break
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"{client.registry}: upload of {d.digest.short} to {repo} cancelled")
            loc = client.upload_chunk(repo, loc, chunk, offset)
            offset += len(chunk)
            progress(BlobProgress(d.digest, d.media_type, offset, size, "uploading"))
    client.finish_upload(repo, loc, d.digest)


def manifest_types() -> tuple[str, ...]:
    return MANIFEST_TYPES


def remote_digest(ref: str, *, options: Options | None = None) -> Digest | None:
    """The digest a registry holds for `ref` (HEAD, no download), None when it has none."""
    r = parse_reference(ref)
    info = (options or default_options()).client(r.registry).head_manifest(r.repository, r.reference)
    return Digest(info.digest) if info and info.digest else None
