"""Content digests and the one canonical JSON writer.

Owns: `Digest` (a validated `algorithm:encoded` string; sha256/sha384/sha512 must be lower-case
hex of the right length, as go-digest demands), `digest_bytes`, `sha256_hasher`, `sha256`, and
`canonical_json` — the ONLY function that turns data into bytes that get digested.
Must not: touch the filesystem or know about stores.
"""
from __future__ import annotations

import json
import re

from builder.errors import InvalidDocument

# OCI descriptor grammar: algorithm components joined by one of + . _ -, then an encoding.
_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+\Z")
_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX = re.compile(r"[0-9a-f]+\Z")


class Digest(str):
    """`sha256:<64 lower-case hex>` (or another registered algorithm), validated on creation."""

    __slots__ = ()

    def __new__(cls, value: str) -> "Digest":
        if type(value) is cls:
            return value  # type: ignore[return-value]
        if not isinstance(value, str) or not _GRAMMAR.match(value):
            raise InvalidDocument(f"invalid digest {value!r}: expected algorithm:encoded")
        algo, _, enc = value.partition(":")
        n = _HEX_LEN.get(algo)
        # Unknown algorithms pass the grammar check only (go-digest lets them through too).
        if n is not None and (len(enc) != n or not _LOWER_HEX.match(enc)):
            raise InvalidDocument(f"invalid {algo} digest {value!r}: expected {n} lower-case hex digits")
        return str.__new__(cls, value)

    @property
    def algorithm(self) -> str:
        return self.partition(":")[0]

    @property
    def hex(self) -> str:  # type: ignore[override]
        """The encoded part (hex for sha256)."""
        return self.partition(":")[2]

    @property
    def short(self) -> str:
        """The 12-character id docker shows."""
        return self.hex[:12]

    @classmethod
    def from_hex(cls, hexstr: str, algorithm: str = "sha256") -> "Digest":
        return cls(f"{algorithm}:{hexstr}")


def is_digest(value: str) -> bool:
    try:
        Digest(value)
    except InvalidDocument:
        return False
    return True


SMALL = 1 << 20  # bytes: below this, sha256() hashes without OpenSSL


def sha256(data: bytes = b"", *, size: int | None = None):
    """A sha256 hasher fed `data`, for about `size` bytes in all when known (default: `data`'s).
    Small inputs (manifests, configs, chain ids) get CPython's own sha256, which needs no
    OpenSSL: loading it (hashlib's import) is ~2.5 ms of `pybuild run IMAGE true`'s start-up.
    Large ones get hashlib's, several times faster per byte."""
    if (len(data) if size is None else size) <= SMALL:
        try:
            from _sha2 import sha256 as builtin  # Python 3.12+
            return builtin(data)
        except ImportError:
            pass
        try:
            from _sha256 import sha256 as builtin  # 3.11
            return builtin(data)
        except ImportError:  # (a Python built without either)
            pass
    import hashlib
    return hashlib.sha256(data)


def digest_bytes(data: bytes) -> Digest:
    return Digest("sha256:" + sha256(data).hexdigest())


def sha256_hasher():
    """For a stream of unknown length: hashlib's."""
    import hashlib
    return hashlib.sha256()


def digest_of_hasher(h) -> Digest:
    return Digest("sha256:" + h.hexdigest())


def canonical_json(obj: object) -> bytes:
    """Sorted keys, compact separators, UTF-8 without escaping: identical input, identical bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")
