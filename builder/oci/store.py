"""The content-addressed blob store: ContentStore protocol and DirStore.

Owns: `blobs/sha256/<hex>` under a root, written atomically (temp file in `$ROOT/tmp` on the
same filesystem → fsync → rename; idempotent: an existing blob wins), read with verification
(`open()` hashes while reading and raises DigestMismatch at EOF), `BlobWriter` for streaming
producers (the layer writer). Must not: know what blobs mean (manifests, layers): that is
layout.py / image.py; delete anything but the blob asked for.
"""
from __future__ import annotations

import errno
import io
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol, runtime_checkable

from builder.errors import BlobNotFound, DigestMismatch, InvalidDocument, StoreError
from builder.oci.digest import Digest, sha256, sha256_hasher
from builder.oci.model import Descriptor

CHUNK = 1 << 20


@runtime_checkable
class ContentStore(Protocol):
    def put(self, stream: BinaryIO, media_type: str, expected: Digest | None = None) -> Descriptor: ...
    def put_bytes(self, data: bytes, media_type: str) -> Descriptor: ...
    def open(self, digest: Digest) -> BinaryIO: ...
    def read_bytes(self, digest: Digest) -> bytes: ...
    def has(self, digest: Digest) -> bool: ...
    def delete(self, digest: Digest) -> bool: ...
    def walk(self) -> Iterator[Digest]: ...
    def writer(self, media_type: str) -> "BlobWriter": ...


class BlobWriter:
    """Write a blob in pieces; hashed as written. `commit()` → Descriptor; `abort()` on failure.

    Usable as a context manager: leaving the block by an exception aborts (removes the temp file).
    """

    def __init__(self, store: "DirStore", media_type: str) -> None:
        self._store = store
        self.media_type = media_type
        store.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="blob-", dir=store.tmp)
        self._tmp = Path(name)
        self._f = os.fdopen(fd, "wb", buffering=0)
        self._h = sha256_hasher()
        self.size = 0
        self._done = False

    def write(self, data) -> int:
        self._h.update(data)
        # An unbuffered write may be short (a disk filling up takes what fits): loop until all
        # of it is down. Ignoring the count committed a truncated file under the digest of the
        # whole content, i.e. a corrupt blob in the store, when the disk filled on the last write.
        view = memoryview(data).cast("B")
        try:
            while view:
                view = view[self._f.write(view):]
        except OSError as e:
            raise StoreError(f"cannot write a blob under {self._store.tmp}: {e.strerror}",
                             hint="free some space there (or point PYBUILD_ROOT elsewhere)"
                             if e.errno == errno.ENOSPC else None) from None
        n = len(data)
        self.size += n
        return n

    def commit(self, expected: Digest | str | None = None, *, annotations: dict | None = None) -> Descriptor:
        digest = Digest("sha256:" + self._h.hexdigest())
        try:
            if expected is not None and digest != expected:
                raise DigestMismatch(f"content for {expected} hashes to {digest}")
            os.fsync(self._f.fileno())
            self._f.close()
            final = self._store.path(digest)
            if final.exists():
                self._tmp.unlink()  # idempotent: the blob is already there (and was verified then)
                _touch(final)
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(self._tmp, 0o644)
                os.rename(self._tmp, final)
                _fsync_dir(final.parent)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return Descriptor(self.media_type, digest, self.size, annotations=annotations or None)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._f.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, et, ev, tb) -> None:
        if et is not None:
            self.abort()


class VerifyingReader(io.RawIOBase):
    """A read-only stream that hashes what passes through and checks it at EOF."""

    def __init__(self, f: BinaryIO, digest: Digest, size: int | None = None) -> None:
        self._f = f
        self._digest = digest
        try:
            length = os.fstat(f.fileno()).st_size if size is None else size
        except (OSError, AttributeError, io.UnsupportedOperation):
            length = None
        self._h = sha256(size=length) if length is not None else sha256_hasher()
        self._n = 0
        self._size = size
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b)
        if n:
            self._h.update(memoryview(b)[:n])
            self._n += n
        else:
            self._check()
        return n or 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read() if n is None or n < 0 else self._f.read(n)
        if data:
            self._h.update(data)
            self._n += len(data)
        if not data or n is None or n < 0:
            self._check()
        return data

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        got = "sha256:" + self._h.hexdigest()
        if got != self._digest:
            raise DigestMismatch(f"blob {self._digest} is corrupt: content hashes to {got}")
        if self._size is not None and self._n != self._size:
            raise DigestMismatch(f"blob {self._digest}: {self._n} bytes, expected {self._size}")

    def close(self) -> None:
        self._f.close()
        super().close()


def _touch(path: Path) -> None:
    """Mark an existing blob as just written: prune spares blobs younger than its grace period,
    so a build that re-uses an old unreferenced blob does not lose it before it tags."""
    try:
        os.utime(path)
    except FileNotFoundError:
        pass


def atomic_write(path: Path, data: bytes, tmp_dir: Path, *, mode: int = 0o644) -> None:
    """Write a small file so readers see the old or the new bytes, never half:
    temp file in `tmp_dir` (same filesystem) → fsync → rename over `path`."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="." + path.name + ".", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(name, mode)
        os.rename(name, path)
    except BaseException:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirStore:
    """Blobs in `root/blobs/<algorithm>/<encoded>`; temp files in `tmp` (default `root/tmp`)."""

    def __init__(self, root: Path, tmp: Path | None = None) -> None:
        self.root = Path(root)
        self.tmp = Path(tmp) if tmp is not None else self.root / "tmp"

    def path(self, digest: Digest | str) -> Path:
        d = Digest(digest)
        return self.root / "blobs" / d.algorithm / d.hex

    def writer(self, media_type: str) -> BlobWriter:
        return BlobWriter(self, media_type)

    def put(self, stream: BinaryIO, media_type: str, expected: Digest | None = None) -> Descriptor:
        if expected is not None and self.has(expected):
            _touch(self.path(expected))
            return Descriptor(media_type, Digest(expected), self.path(expected).stat().st_size)
        with self.writer(media_type) as w:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                w.write(chunk)
            return w.commit(expected)

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        d = Digest("sha256:" + sha256(data).hexdigest())
        if self.has(d):
            _touch(self.path(d))
            return Descriptor(media_type, d, len(data))
        with self.writer(media_type) as w:
            w.write(data)
            return w.commit(d)

    def has(self, digest: Digest | str) -> bool:
        try:
            return self.path(digest).is_file()
        except InvalidDocument:
            return False

    def size(self, digest: Digest | str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found in {self.root}") from None

    def open(self, digest: Digest | str, *, verify: bool = True) -> BinaryIO:
        d = Digest(digest)
        if d.algorithm != "sha256":
            raise StoreError(f"unsupported digest algorithm {d.algorithm!r} (only sha256 is stored)")
        try:
            f = open(self.path(d), "rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {d} not found in {self.root}") from None
        if not verify:
            return f
        return io.BufferedReader(VerifyingReader(f, d), CHUNK)  # type: ignore[return-value]

    def read_bytes(self, digest: Digest | str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def delete(self, digest: Digest | str) -> bool:
        try:
            self.path(digest).unlink()
            return True
        except FileNotFoundError:
            return False

    def walk(self) -> Iterator[Digest]:
        base = self.root / "blobs"
        if not base.is_dir():
            return
        for algo in sorted(os.listdir(base)):
            adir = base / algo
            if not adir.is_dir():
                continue
            for name in sorted(os.listdir(adir)):
                try:
                    yield Digest(f"{algo}:{name}")
                except InvalidDocument:
                    continue  # not a blob name (stray file): verify reports it

    def verify(self, digest: Digest | str) -> str | None:
        """None when the blob hashes to its name, else a one-line problem."""
        try:
            with self.open(digest) as f:
                while f.read(CHUNK):
                    pass
        except (DigestMismatch, BlobNotFound, StoreError) as e:
            return str(e)
        return None
