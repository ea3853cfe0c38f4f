"""The local image store, which IS an OCI image layout (so skopeo and umoci read it directly).

Owns: `oci-layout` + `index.json` + `blobs/` at a root; tags as index.json entries annotated with
`org.opencontainers.image.ref.name`; writer lock (fcntl on `$ROOT/lock`), atomic index.json
writes (temp → fsync → rename) so readers never lock and never see half a file; resolving a
reference, digest or short id; `write_oci_layout` for exports (a directory or a tar).
Must not: build images or unpack layers.

Ref names: the annotation holds docker's familiar form with a `:latest` tag dropped — so
`docker.io/library/app:latest` is stored as `app`, `app:v1` as `app:v1`, `ghcr.io/o/r:latest`
as `ghcr.io/o/r`. `skopeo inspect oci:ROOT:app` and `umoci unpack --image ROOT:app` look the
name up literally and find it; we normalise both sides when resolving, so `app`,
`app:latest` and `docker.io/library/app:latest` all name the same entry.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import BinaryIO, Iterator

from builder.errors import ImageNotFound, InvalidReference, StoreError
from builder.oci import mediatypes as mt
from builder.oci.digest import Digest, is_digest
from builder.oci.image import reachable
from builder.oci.model import Descriptor, Index, Manifest, layout_header, parse_layout_header
from builder.oci.store import DirStore, atomic_write


def normalize_ref(ref: str) -> str:
    """Full docker-style form: `app` → `docker.io/library/app:latest`."""
    from builder.oci.reference import parse_reference

    return str(parse_reference(ref))


def stored_name(ref: str) -> str:
    """What goes in the ref.name annotation (see the module docstring)."""
    from builder.oci.reference import parse_reference

    r = parse_reference(ref)
    fam = r.familiar()
    if r.digest is None and r.tag == "latest":
        return fam[: -len(":latest")]
    return fam


# The state directory holds image snapshots (setuid binaries, private files of every image)
# and containers' layers: nobody but its owner may traverse it (issue 14). The top directory
# alone would do; the subdirectories are closed as well so that a copied or moved subtree
# stays closed. A store an older version left open is repaired on the next write.
STATE_DIR_MODE = 0o700
PRIVATE_SUBDIRS = ("blobs", "snapshots", "containers", "cache", "tmp", "volumes")


def protect_state_dir(root: Path) -> None:
    """Create `root` 0700 (with its private subdirectories), or close an existing one that
    group or others may enter. One stat when all is well (called by every writer)."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(root, STATE_DIR_MODE)
            for name in PRIVATE_SUBDIRS:
                os.mkdir(root / name, STATE_DIR_MODE)
        except FileExistsError:  # a concurrent creator
            pass
        st = os.stat(root)
    if st.st_mode & 0o077 == 0 or st.st_uid != os.geteuid():
        return  # closed already (or not ours to change: then the write fails on its own)
    os.chmod(root, STATE_DIR_MODE)
    for name in PRIVATE_SUBDIRS:
        try:
            os.chmod(root / name, STATE_DIR_MODE)
        except FileNotFoundError:
            os.mkdir(root / name, STATE_DIR_MODE)


class ImageStore:
    """An OCI image layout at `root` used as the local image store."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = DirStore(self.root)
        self.tmp = self.root / "tmp"
        self.lock_path = self.root / "lock"

    # -- setup and locking -------------------------------------------------------------
    def ensure(self) -> "ImageStore":
        """Create the layout if missing (idempotent, safe against concurrent creators)."""
        protect_state_dir(self.root)
        if (self.root / "index.json").is_file() and (self.root / "oci-layout").is_file():
            return self
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        with self.locked():
            if not (self.root / "oci-layout").is_file():
                atomic_write(self.root / "oci-layout", layout_header(), self.tmp)
            if not (self.root / "index.json").is_file():
                atomic_write(self.root / "index.json", Index().to_json(), self.tmp)
        return self

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The writer lock: tag/untag/prune hold it; readers never take it."""
        protect_state_dir(self.root)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    # -- index.json ----------------------------------------------------------------------
    def index(self) -> Index:
        try:
            data = (self.root / "index.json").read_bytes()
        except FileNotFoundError:
            return Index()
        return Index.from_json(data)

    def _write_index(self, index: Index) -> None:
        atomic_write(self.root / "index.json", index.to_json(), self.tmp)

    def list(self) -> list[tuple[str, Descriptor]]:
        """(full reference, manifest descriptor) for every tagged image, sorted by reference."""
        out = []
        for d in self.index().manifests:
            name = d.ref_name
            if name is None:
                continue
            try:
                out.append((normalize_ref(name), d))
            except InvalidReference:
                out.append((name, d))  # a name another tool wrote; show it as it is
        return sorted(out, key=lambda x: x[0])

    def tag(self, ref: str, manifest_desc: Descriptor) -> Descriptor:
        """Point `ref` at the manifest (replacing what it named before); returns the index entry."""
        if not self.blobs.has(manifest_desc.digest):
            raise StoreError(f"cannot tag {ref}: {manifest_desc.digest} is not in the store")
        full, name = normalize_ref(ref), stored_name(ref)
        entry = manifest_desc.with_annotations(**{mt.ANNOTATION_REF_NAME: name})
        self.ensure()
        with self.locked():
            idx = self.index()
            kept = tuple(d for d in idx.manifests if not self._names(d, full))
            self._write_index(Index(manifests=kept + (entry,), annotations=idx.annotations))
        return entry

    def untag(self, ref: str) -> Descriptor:
        full = normalize_ref(ref)
        with self.locked():
            idx = self.index()
            gone = [d for d in idx.manifests if self._names(d, full)]
            if not gone:
                raise ImageNotFound(f"no image tagged {ref}")
            self._write_index(Index(manifests=tuple(d for d in idx.manifests if not self._names(d, full)),
                                    annotations=idx.annotations))
        return gone[0]

    @staticmethod
    def _names(d: Descriptor, full: str) -> bool:
        name = d.ref_name
        if name is None:
            return False
        try:
            return normalize_ref(name) == full
        except InvalidReference:
            return name == full

    def resolve(self, ref: str) -> Descriptor:
        """A tag, a full manifest digest, or an id prefix (of the manifest or config digest)."""
        entries = self.index().manifests
        # Only known algorithms name a digest here: "app:1" passes the digest grammar (algorithm
        # "app") and used to select whatever image id started with "1".
        digest_ref = ref.startswith(("sha256:", "sha384:", "sha512:")) and is_digest(ref)
        if digest_ref or (len(ref) >= 4 and all(ch in "0123456789abcdef" for ch in ref)):
            hexpart = Digest(ref).hex if digest_ref else ref
            hits = {d.digest: d for d in entries if d.digest.hex.startswith(hexpart)}
            if not hits:
                for d in entries:
                    try:
                        man = Manifest.from_json(self.blobs.read_bytes(d.digest), allow_empty_layers=True)
                    except StoreError:
                        continue
                    if man.config.digest.hex.startswith(hexpart):
                        hits[d.digest] = d
            if len(hits) == 1:
                return next(iter(hits.values()))
            if len(hits) > 1:
                raise ImageNotFound(f"image id prefix {ref!r} is ambiguous ({len(hits)} images)")
            if digest_ref and self.blobs.has(ref):
                return Descriptor(mt.OCI_MANIFEST, Digest(ref), self.blobs.size(ref))
        try:
            full = normalize_ref(ref)
        except InvalidReference:
            raise ImageNotFound(f"no image {ref!r} in the local store") from None
        for d in entries:
            if self._names(d, full):
                return d
        raise ImageNotFound(f"no image {ref!r} in the local store", hint="pybuild images lists what there is")


def write_oci_layout(dest: Path | BinaryIO, blobs: DirStore, images: list[tuple[str | None, Descriptor]]) -> None:
    """Export `images` ((ref name or None, manifest/index descriptor)) as an OCI layout:
    a directory when `dest` is a Path to a directory (created if missing), else a tar stream."""
    entries = []
    needed: dict[Digest, Descriptor] = {}
    for name, d in images:
        ann = dict(d.annotations or {})
        ann.pop(mt.ANNOTATION_REF_NAME, None)
        if name:
            ann[mt.ANNOTATION_REF_NAME] = name
        entries.append(Descriptor(d.media_type, d.digest, d.size, annotations=ann or None, platform=d.platform))
        for b in reachable(blobs, d):
            needed.setdefault(b.digest, b)
    index = Index(manifests=tuple(entries)).to_json()
    if isinstance(dest, (str, Path)):
        out = Path(dest)
        target = ImageStore(out)
        target.ensure()
        for dg in sorted(needed):
            if not target.blobs.has(dg):
                with blobs.open(dg) as src:
                    target.blobs.put(src, needed[dg].media_type, expected=dg)
        with target.locked():
            old = target.index().manifests
            names = {e.ref_name for e in entries if e.ref_name}
            kept = tuple(e for e in old if not (e.ref_name and e.ref_name in names))
            target._write_index(Index(manifests=kept + tuple(entries)))
        (out / "lock").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (out / "tmp").rmdir()
        return
    import tarfile  # lazy: only exports need it (start-up budget)

    with tarfile.open(fileobj=dest, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _tar_bytes(tar, "oci-layout", layout_header())
        _tar_bytes(tar, "index.json", index)
        _tar_dir(tar, "blobs/")
        _tar_dir(tar, "blobs/sha256/")
        for dg in sorted(needed):
            info = tarfile.TarInfo(f"blobs/sha256/{dg.hex}")
            info.size = blobs.size(dg)
            info.mode = 0o644
            with blobs.open(dg) as src:
                tar.addfile(info, src)


def _tar_bytes(tar, name: str, data: bytes) -> None:
    import io
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _tar_dir(tar, name: str) -> None:
    import tarfile

    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def open_layout(root: Path) -> ImageStore:
    """An existing OCI layout (checked: oci-layout header and index.json present)."""
    try:
        parse_layout_header((Path(root) / "oci-layout").read_bytes())
    except FileNotFoundError:
        raise StoreError(f"{root} is not an OCI layout (no oci-layout file)") from None
    if not (Path(root) / "index.json").is_file():
        raise StoreError(f"{root} is not an OCI layout (no index.json)")
    return ImageStore(Path(root))
