"""One COPY/ADD layer for every platform of a multi-platform build, when it is provably the same.

A plain COPY (no --link) reads the stage's base: its destination is resolved through symlinks
there, parents that exist there are copied up with their owner/mode/mtime, existing paths are
replaced or merged into, --chown names are looked up in /etc/passwd. Everything else it depends
on (the context's content, the instruction, the destination, the store's compression and
SOURCE_DATE_EPOCH) is the same on every platform and makes up `share_key`.

So the first platform to execute such a step copies through a `RecordingFS`: a view of its upper
over the base that writes down what every lookup reaching the base answered (kind, mode, owner,
mtime, size, symlink target) and the content of every file read there. A later platform with
the same `share_key` replays those lookups on its own base (`Footprint.matches`); when every
answer is the same, the copy would take the same path and write the same upper, byte for byte
(the copier's only other inputs are in the key), so it reuses that layer and snapshot instead of
copying again. Any difference (a /app the other base has, another /etc/passwd) and it copies
for itself, as before. Images do not change: the layer is the one that platform would write.

The clock is the one input not written down: without SOURCE_DATE_EPOCH a directory the copy
creates takes the time of the copy, so a shared layer carries the first platform's (as the
platforms' layers already did whenever their copies, which run at once, fell in the same second).

Owns: `RecordingFS`, `Footprint`, `Shared` (a candidate: footprint + layer + snapshot chain),
`share_key`. Must not: decide cache hits (solver.py) or know Dockerfile syntax. Not recorded,
and not content: a copied-up directory's atime (it never reaches a layer).
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from builder.engine.fsview import LayeredFS, in_layer
from builder.oci.model import Descriptor
from builder.plan.graph import CopyOp
from runtime.record import Record

Answer = tuple | None


def _answer(hit: tuple[str, os.stat_result] | None) -> Answer:
    """What a lookup in the base told the copier: what copy_up, resolve and the destination
    rules read from a hit (the host path itself differs per platform and is no content)."""
    if hit is None:
        return None
    path, st = hit
    m = st.st_mode
    link = os.readlink(path) if stat.S_ISLNK(m) else None
    return (m, st.st_uid, st.st_gid, st.st_mtime_ns, 0 if stat.S_ISDIR(m) else st.st_size, st.st_rdev, link)


class Footprint(Record, frozen=False):
    lookups: dict  # path parts (tuple) -> Answer of the base for it
    reads: dict  # in-root path -> sha256 of the content read (None: no such file)
    complete: bool = True  # False: the copy read the base in a way not written down

    def matches(self, lowers: list[str]) -> bool:
        """Whether the base made of `lowers` answers every lookup and read the same way."""
        if not self.complete:
            return False
        base = LayeredFS(lowers)
        for parts, want in self.lookups.items():
            if _answer(base._lookup(list(parts))) != want:
                return False
        for rel, want in self.reads.items():
            data = base.read_file(rel)
            if (None if data is None else hashlib.sha256(data).hexdigest()) != want:
                return False
        return True


class RecordingFS(LayeredFS):
    """`upper` over the base `lowers`, writing down every answer the base gives (a Footprint).
    Lookups the upper decides are not the base's: the same copy writes the same upper."""

    def __init__(self, upper: Path | str, lowers: list[str] | tuple[str, ...]) -> None:
        super().__init__([upper, *lowers])
        self.upper = str(upper)
        self.base = LayeredFS(list(lowers))
        self.footprint = Footprint({}, {})

    def _lookup(self, parts: list[str]) -> tuple[str, os.stat_result] | None:
        decided, hit = in_layer(self.upper, parts)
        if decided:
            return hit
        hit = self.base._lookup(parts)
        key = tuple(parts)
        if key not in self.footprint.lookups:
            self.footprint.lookups[key] = _answer(hit)
        return hit

    def read_file(self, rel: str) -> bytes | None:
        data = super().read_file(rel)
        if os.listdir(self.upper):
            self.footprint.complete = False  # read through a written upper: not replayable on a base alone
        else:
            self.footprint.reads.setdefault(rel, None if data is None else hashlib.sha256(data).hexdigest())
        return data

    def listdir(self, rel: str) -> list[str]:  # not used by the copier's destination side
        self.footprint.complete = False
        return super().listdir(rel)

    def merged_dirs(self, rel: str) -> list[str]:
        self.footprint.complete = False
        return super().merged_dirs(rel)


class Shared(Record):
    """A layer one platform's COPY wrote, and what that copy read of its base."""

    footprint: Footprint
    descriptor: Descriptor
    diff_id: str
    chain: str  # its snapshot (the copier's upper, committed)


def share_key(op: CopyOp, pre_image: dict, *, workdir: str | None, compression: str,
              source_date_epoch: int | None) -> str | None:
    """What the step's layer depends on besides its base: its cache key's recipe without the
    parent (the base) and the platform, plus the working directory, compression and
    SOURCE_DATE_EPOCH. None when it may depend on more: a source in another stage or image
    (their content is per platform), a URL or git repository (fetched per platform)."""
    if op.source_from is not None:
        return None
    if any(s.startswith(("http://", "https://", "git@", "git://")) for s in op.sources):
        return None
    body = {"op": {k: v for k, v in pre_image["op"].items() if k != "platform"}, "kind": pre_image["kind"],
            "v": pre_image["v"], "inputs": list(pre_image["inputs"]), "workdir": workdir,
            "compression": compression, "sde": source_date_epoch}
    return "copyshare:" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
