"""DiffHasher: the diff_id of compressed bytes, multi-frame / multi-member, bounded memory."""
from __future__ import annotations

import gzip
import hashlib
import os

import pytest
import zstandard

from builder.errors import LayerError
from builder.oci import compression
from builder.oci.compression import CHUNK, DiffHasher, detect


def _blob(kind: str, parts: list[bytes]) -> bytes:
    if kind == "zstd":
        return b"".join(zstandard.ZstdCompressor().compress(p) for p in parts)
    if kind == "gzip":
        return b"".join(gzip.compress(p) for p in parts)
    return b"".join(parts)


@pytest.mark.parametrize("kind", ["zstd", "gzip", "none"])
def test_hashes_what_is_inside_with_bounded_pieces(kind, monkeypatch):
    parts = [os.urandom(100_000), bytes(64 << 20), b"tail"]  # zeros: ~1000:1, one chunk holds a lot
    data = b"".join(parts)
    blob = _blob(kind, parts)
    assert detect(blob[:4]) == kind
    biggest = []
    orig = compression._HashSink.write

    def spy(self, b):
        biggest.append(len(b))
        return orig(self, b)

    monkeypatch.setattr(compression._HashSink, "write", spy)
    h = DiffHasher(kind)
    for i in range(0, len(blob), CHUNK):
        h.feed(blob[i:i + CHUNK])
    assert h.finish() == ("sha256:" + hashlib.sha256(data).hexdigest(), len(data))
    assert max(biggest) <= CHUNK


@pytest.mark.parametrize("kind", ["zstd", "gzip"])
def test_garbage_is_a_layer_error(kind):
    h = DiffHasher(kind)
    with pytest.raises(LayerError):
        h.feed(_blob(kind, [b"x" * 1000])[:8] + b"\xff" * 5000)
        h.finish()
