"""Layer compression: detect it, undo it as a stream, and hash what is inside (diff_id).

Owns: magic-number detection (zstd, gzip, plain), `open_decompressed(f, media_type)` (a
readable stream of tar bytes), and `DiffHasher` — fed compressed bytes chunk by chunk, it
hashes the uncompressed bytes, so a blob can be stored and its diff_id known in ONE pass.
Must not: write anything; import zstandard before it is needed (start-up budget).
"""
from __future__ import annotations

import hashlib
import io
import zlib
from typing import BinaryIO

from builder.errors import LayerError
from builder.oci import mediatypes as mt
from builder.oci.digest import Digest

CHUNK = 1 << 20
ZSTD_LEVEL = 3
ZSTD_JOB = 1 << 20
GZIP_LEVEL = 6
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"


def detect(head: bytes) -> str:
    """'zstd' | 'gzip' | 'none' from the first bytes of a layer."""
    if head[:4] == ZSTD_MAGIC:
        return "zstd"
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    return "none"


def compressor(compression: str, level: int | None = None):
    """A streaming compressor (`.compress(b)`, `.flush()`) with pybuild's fixed parameters, or
    None for "none". Same parameters, same bytes: layer digests are reproducible. `level`:
    gzip 0-9 (default 6; builder.layers prefers ISA-L when it is installed), zstd 1-22 (default 3)."""
    if compression == "none":
        return None
    if compression == "zstd":
        import os

        import zstandard  # lazy: 27 ms of import

        # threads >= 1 selects zstd's multi-threaded mode, whose output does not depend on
        # the number of workers: the same tree gives the same digest on any machine. A fixed
        # job size keeps the output fixed too; 1 MiB jobs hold peak memory near 50 MB (8 MiB,
        # zstd's default here: ~145 MB) for the same ratio and CPU.
        params = zstandard.ZstdCompressionParameters.from_level(
            ZSTD_LEVEL if level is None else level, threads=max(1, os.cpu_count() or 1), job_size=ZSTD_JOB)
        return zstandard.ZstdCompressor(compression_params=params).compressobj()
    if compression == "gzip":
        # wbits 31 = gzip wrapper with mtime 0 and no file name: deterministic.
        return zlib.compressobj(GZIP_LEVEL if level is None else level, zlib.DEFLATED, 31)
    raise LayerError(f"unknown compression {compression!r} (zstd, gzip or none)")


def open_decompressed(f: BinaryIO, media_type: str | None = None) -> BinaryIO:
    """Uncompressed bytes of `f`, by media type, or by magic number when the type is unknown."""
    comp = mt.layer_compression(media_type) if media_type else None
    buf = f if hasattr(f, "peek") else io.BufferedReader(f, CHUNK)  # type: ignore[arg-type]
    if comp is None:
        comp = detect(buf.peek(4)[:4])
    if comp == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(buf, read_size=CHUNK, read_across_frames=True)
    if comp == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=buf)  # type: ignore[return-value]
    return buf  # type: ignore[return-value]


class _HashSink:
    """Where decompressed bytes go: hashed and counted, never kept."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.h.update(data)
        self.size += len(data)
        return len(data)


class DiffHasher:
    """Feed compressed (or plain) layer bytes; get the sha256 and size of the tar inside.

    Memory stays bounded however well the input compresses (a megabyte of zstd can hold
    gigabytes of zeros): output is produced in pieces of at most CHUNK bytes."""

    def __init__(self, compression: str) -> None:
        self.compression = compression
        self._sink = _HashSink()
        if compression == "zstd":
            import zstandard

            self._w = zstandard.ZstdDecompressor().stream_writer(self._sink, write_size=CHUNK, closefd=False)
        elif compression == "gzip":
            self._d = zlib.decompressobj(47)
        elif compression != "none":
            raise LayerError(f"unknown compression {compression!r}")

    @property
    def size(self) -> int:
        return self._sink.size

    def feed(self, raw: bytes) -> None:
        if self.compression == "none":
            self._sink.write(raw)
            return
        try:
            if self.compression == "zstd":
                self._w.write(raw)
                return
            while raw:
                self._sink.write(self._d.decompress(raw, CHUNK))
                if self._d.eof:
                    raw = self._d.unused_data  # a multi-member gzip stream: next member
                    if raw:
                        self._d = zlib.decompressobj(47)
                else:
                    raw = self._d.unconsumed_tail
        except (zlib.error, Exception) as e:  # noqa: BLE001 - zstd raises its own ZstdError
            raise LayerError(f"layer data is not valid {self.compression}: {e}") from None

    def finish(self) -> tuple[Digest, int]:
        if self.compression == "zstd":
            self._w.flush()
        elif self.compression == "gzip":
            while not self._d.eof and (out := self._d.decompress(b"", CHUNK)):
                self._sink.write(out)
        return Digest("sha256:" + self._sink.h.hexdigest()), self._sink.size
