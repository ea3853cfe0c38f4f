"""On-disk memo of parsed Dockerfiles, so a no-op rebuild never imports Lark.

Owns: the cache file name (sha256 of a format version + filename + text), reading it back
(any unreadable or stale entry is ignored and rewritten) and writing it atomically
(temp file → fsync → rename). The values are ast.Dockerfile objects (plain frozen
dataclasses; unpickling them imports builder.dockerfile.ast, not lark).
Must not: hold anything but parse results, or write outside the directory it is given.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path

from builder.dockerfile.ast import Dockerfile

FORMAT = "pybuild.dockerfile-parse.v3"  # v2: nodes are runtime.record Records; v3: MountSpec.raw


def cache_key(text: str, filename: str) -> str:
    h = hashlib.sha256()
    for part in (FORMAT, filename, text):
        b = part.encode("utf-8", "surrogateescape")
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return h.hexdigest()


def cached_parse(text: str, filename: str, cache_dir: Path, parse: Callable[[str, str], Dockerfile]) -> Dockerfile:
    path = cache_dir / f"{cache_key(text, filename)}.pickle"
    try:
        with open(path, "rb") as f:
            value = pickle.load(f)
        if isinstance(value, Dockerfile):
            return value
    except FileNotFoundError:
        pass
    except Exception:  # noqa: BLE001 - a corrupt or incompatible entry is just a miss
        pass
    value = parse(text, filename)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".parse-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass  # a read-only state dir only costs speed
    return value
