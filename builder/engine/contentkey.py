"""Content digests of what a step reads from another stage: the cut-off in the cache keys.

Owns: `stage_inputs(...)`, the cache-key inputs of a `COPY --from=<stage|image>` or a
`RUN --mount=from=<stage|image>` bind: one `content:<source>=<digest>` per source, where the
digest covers the paths the source names in that stage's (image's) filesystem (wildcards matched as the
copy matches them, a top-level symlink followed as the copy follows it) — not the key of the
step that produced them. So an edit that changes a builder stage's steps but not its output
(a comment in a compiled file) leaves the COPY --from, and every step after it, CACHED, as
BuildKit's content-based cache keys do.

What counts per entry, as in BuildKit's content hash (tarsum v1 headers): relative path, file
type and mode bits (setuid/setgid/sticky included), uid, gid, size, symlink target, device
numbers, extended attributes, content sha256, and which earlier entry it is a hardlink of;
never mtimes (a rebuilt file with the same bytes is the same input).

Digests are memoized under `$ROOT/cache/content/` by the stage's top chain id (a chain id
names one exact filesystem), so a rebuild that leaves the stage alone hashes nothing.
Must not: write anywhere but that memo; decide hits (the solver does).
"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from builder.context import read_xattrs
from builder.engine.fsview import LayeredFS
from builder.errors import BuildStepError
from builder.oci.digest import canonical_json
from builder.oci.store import atomic_write

MEMO_VERSION = "pybuild.content.v1"


def _file_sha256(host: str) -> str:
    h = hashlib.sha256()
    with open(host, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _entry(view: LayeredFS, path: str, rel: str, host: str, st: os.stat_result,
           links: dict[tuple[int, int], str], h) -> None:
    """Hash the entry at `path` and, depth first in name order, everything under it (iterative:
    a tree deeper than Python's recursion limit is hashed all the same)."""
    todo = [(path, rel, host, st)]
    while todo:
        path, rel, host, st = todo.pop()
        mode = st.st_mode
        rec: list[object] = [rel, mode, st.st_uid, st.st_gid]
        if stat.S_ISREG(mode):
            ino = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and ino in links:
                rec += ["link", links[ino]]
            else:
                if st.st_nlink > 1:
                    links[ino] = rel
                rec += [st.st_size, _file_sha256(host)]
        elif stat.S_ISLNK(mode):
            rec += [os.readlink(host)]
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            rec += [os.major(st.st_rdev), os.minor(st.st_rdev)]
        rec += [[k, v.hex()] for k, v in read_xattrs(host)]
        h.update(canonical_json(rec) + b"\n")
        if stat.S_ISDIR(mode):
            children = []
            for name in view.listdir(path):
                sub = f"{path.rstrip('/')}/{name}"
                hit = view.find(sub)
                if hit is not None:
                    children.append((sub, f"{rel}/{name}" if rel else name, hit[0], hit[1]))
            todo.extend(reversed(children))  # popped in name order


def tree_digest(view: LayeredFS, path: str) -> str:
    """sha256 over every entry under `path` (the top one followed if it is a symlink)."""
    real = view.resolve(path)
    hit = view.find(real)
    if hit is None:
        return "missing"
    h = hashlib.sha256()
    _entry(view, real, "", hit[0], hit[1], {}, h)
    return "sha256:" + h.hexdigest()


def source_digest(view: LayeredFS, src: str) -> str:
    """The digest of one COPY --from / mount source: every path it matches, in order."""
    from builder.engine.transfer import _match_in_view

    try:
        matches = _match_in_view(view, src)
    except BuildStepError:
        return "missing"  # the copy itself reports it, with the step's line
    if len(matches) == 1 and not any(c in src for c in "*?["):
        return tree_digest(view, matches[0][0])
    h = hashlib.sha256()
    for path, _keep in matches:
        h.update(canonical_json([path, tree_digest(view, path)]) + b"\n")
    return "sha256:" + h.hexdigest()


class ContentMemo:
    """`$ROOT/cache/content/<hex>`: (chain id, source) → digest (atomic writes; junk is a miss)."""

    def __init__(self, cache_dir: Path, tmp_dir: Path) -> None:
        self.dir = Path(cache_dir) / "content"
        self.tmp = Path(tmp_dir)

    def _path(self, chain: str, src: str) -> Path:
        k = hashlib.sha256(canonical_json([MEMO_VERSION, chain, src])).hexdigest()
        return self.dir / k

    def get(self, chain: str, src: str) -> str | None:
        try:
            v = self._path(chain, src).read_text()
        except (OSError, UnicodeDecodeError):
            return None
        return v if v.startswith("sha256:") and len(v) == 71 else None

    def put(self, chain: str, src: str, digest: str) -> None:
        if not digest.startswith("sha256:"):
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self._path(chain, src), digest.encode(), self.tmp)
        except OSError:
            pass  # a read-only or full state dir only costs speed


def stage_inputs(chains: tuple[str, ...], sources: list[str] | tuple[str, ...], memo: ContentMemo | None,
                 view_factory) -> list[str]:
    """`content:<src>=<digest>` per source read from a stage whose layers are `chains`.

    `view_factory()` gives the stage's LayeredFS (unpacking its snapshots); it is only called
    when a digest is not memoized.
    """
    top = chains[-1] if chains else "empty"
    out: list[str] = []
    view: LayeredFS | None = None
    for src in sources:
        d = memo.get(top, src) if memo is not None else None
        if d is None:
            if view is None:
                view = view_factory()
            d = source_digest(view, src)
            if memo is not None:
                memo.put(top, src, d)
        out.append(f"content:{src}={d}")
    return out
