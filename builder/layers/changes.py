"""Change sets: what a layer adds, deletes (whiteouts) and makes opaque.

Owns: `ChangeSet` (sorted `Change`s read from one tree), `changes_from_upper(upperdir)` for an
overlayfs upper directory (char device 0/0 → delete, `trusted.overlay.opaque` /
`user.overlay.opaque` = "y" → opaque), and `diff_trees(lower, upper)`, a two-tree diff for when
overlayfs is not available. Must not: write tar bytes (tarball.py) or modify either tree.

Paths are bytes, relative, '/'-separated, without a leading '/' or './' (b"etc/passwd"), so
names that are not UTF-8 survive. Order: parents before children, siblings by bytes.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterator

from builder.errors import LayerError
from runtime.record import Record, field

ADD, DELETE, OPAQUE = "add", "delete", "opaque"
OPAQUE_XATTRS = (b"trusted.overlay.opaque", b"user.overlay.opaque")
WHITEOUT_PREFIX = b".wh."
OPAQUE_MARKER = b".wh..wh..opq"


class Change(Record):
    path: bytes  # relative to the change set's root
    kind: str    # ADD (content at root/path), DELETE (whiteout), OPAQUE (hide lower content of a dir)
    # the lstat the walk took (saves the tar writer a second one per file); not part of the value
    st: os.stat_result | None = field(default=None, compare=False, repr=False)


class ChangeSet(Record):
    root: Path
    changes: tuple[Change, ...]

    def __len__(self) -> int:
        return len(self.changes)

    def paths(self, kind: str | None = None) -> list[bytes]:
        return [c.path for c in self.changes if kind is None or c.kind == kind]


def sort_key(path: bytes) -> tuple[bytes, ...]:
    """Parents before children, siblings in byte order: the order of every tar we write."""
    return tuple(path.split(b"/"))


PATH_MAX = os.pathconf("/", "PC_PATH_MAX")


def walk(root: bytes, rel: bytes = b"") -> Iterator[tuple[bytes, bytes, os.stat_result]]:
    """(relative path, absolute path, lstat) of everything below root, in sort_key order.

    Depth-first on an explicit stack, not by recursion: a tree may be thousands of
    directories deep (up to PATH_MAX, where it is a clear LayerError)."""
    stack = [_listing(root, rel)]
    while stack:
        for r, path, st in stack[-1]:
            yield r, path, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(_listing(root, r))
                break
        else:
            stack.pop()


def _listing(root: bytes, rel: bytes) -> Iterator[tuple[bytes, bytes, os.stat_result]]:
    base = root + b"/" + rel if rel else root
    with os.scandir(base) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if len(e.path) >= PATH_MAX:  # before the lstat, which would fail less clearly
            r = os.fsdecode(rel + b"/" + e.name)
            raise LayerError(f"the step made a path too deep for the system to name: the host path of "
                             f"/{r if len(r) <= 100 else r[:50] + '…' + r[-30:]} would be {len(e.path)} bytes "
                             f"long, more than PATH_MAX ({PATH_MAX})")
        yield (rel + b"/" + e.name if rel else e.name), e.path, e.stat(follow_symlinks=False)


def _is_opaque(path: bytes) -> bool:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return False
    for name in names:
        if name.endswith(("overlay.redirect", "overlay.metacopy")) and \
                name.startswith(("trusted.", "user.")):
            # The directory's content lives elsewhere in the lower layers: the upperdir alone
            # does not describe the change. The mount must use redirect_dir=off,metacopy=off.
            raise LayerError(f"{os.fsdecode(path)}: overlayfs {name} in the upper directory; "
                             "mount with redirect_dir=off,metacopy=off")
    for name in OPAQUE_XATTRS:
        if os.fsdecode(name) in names:
            try:
                if os.getxattr(path, name, follow_symlinks=False) == b"y":
                    return True
            except OSError:
                continue
    return False


def changes_from_upper(upperdir: Path | str) -> ChangeSet:
    """The change set an overlayfs upper directory stands for."""
    root = os.fsencode(str(upperdir))
    out: list[Change] = []
    for rel, path, st in walk(root):
        m = st.st_mode
        if stat.S_ISCHR(m) and st.st_rdev == 0:
            out.append(Change(rel, DELETE, st))
            continue
        out.append(Change(rel, ADD, st))
        if stat.S_ISDIR(m) and _is_opaque(path):
            out.append(Change(rel, OPAQUE))
    return ChangeSet(Path(upperdir), tuple(out))


def _same(a: os.stat_result, b: os.stat_result, pa: bytes, pb: bytes) -> bool:
    if (stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode) or a.st_mode != b.st_mode or a.st_uid != b.st_uid
            or a.st_gid != b.st_gid):
        return False
    if stat.S_ISDIR(a.st_mode):
        return a.st_mtime_ns == b.st_mtime_ns and _xattrs(pa) == _xattrs(pb)
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(pa) == os.readlink(pb)
    if stat.S_ISCHR(a.st_mode) or stat.S_ISBLK(a.st_mode):
        return a.st_rdev == b.st_rdev
    if a.st_size != b.st_size or a.st_mtime_ns != b.st_mtime_ns or _xattrs(pa) != _xattrs(pb):
        return False
    if stat.S_ISREG(a.st_mode) and a.st_mtime_ns % 1_000_000_000 == 0:
        # Whole-second mtimes may come from a tar that dropped the fraction: compare content.
        return _same_content(pa, pb)
    return True


def _same_content(pa: bytes, pb: bytes) -> bool:
    with open(pa, "rb") as fa, open(pb, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def _xattrs(path: bytes) -> dict:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names}


def diff_trees(lower: Path | str, upper: Path | str) -> ChangeSet:
    """Changes that turn `lower` into `upper` (entries of `upper` are the content source).

    Added or modified entries are ADDs (with their parent directories, so the layer carries
    their owners and modes); entries gone from `upper` become DELETEs (only the topmost one
    of a removed subtree).
    """
    lo, up = os.fsencode(str(lower)), os.fsencode(str(upper))
    out: dict[bytes, list[str]] = {}

    def add(rel: bytes, kind: str) -> None:
        out.setdefault(rel, []).append(kind)

    def rec(rel: bytes, below: list[bytes]) -> None:
        """Compare one directory; directories present in both go to `below` (an explicit
        stack, not recursion: the trees may be thousands of levels deep)."""
        lpath = lo + b"/" + rel if rel else lo
        upath = up + b"/" + rel if rel else up
        lnames = set(os.listdir(lpath))
        for name in sorted(set(os.listdir(upath)) | lnames):
            r = rel + b"/" + name if rel else name
            ua, la = upath + b"/" + name, lpath + b"/" + name
            try:
                ust = os.lstat(ua)
            except FileNotFoundError:
                add(r, DELETE)
                continue
            lst = os.lstat(la) if name in lnames else None
            if lst is None:
                add(r, ADD)
                if stat.S_ISDIR(ust.st_mode):
                    for sub, _, _ in walk(up, r):
                        add(sub, ADD)
                continue
            both_dirs = stat.S_ISDIR(ust.st_mode) and stat.S_ISDIR(lst.st_mode)
            if both_dirs:
                if not _same(lst, ust, la, ua):
                    add(r, ADD)
                below.append(r)
                continue
            if not _same(lst, ust, la, ua):
                add(r, ADD)  # unpack replaces a directory by a non-directory wholesale
                if stat.S_ISDIR(ust.st_mode):
                    for sub, _, _ in walk(up, r):
                        add(sub, ADD)

    todo = [b""]
    while todo:
        subs: list[bytes] = []
        rec(todo.pop(), subs)
        todo.extend(reversed(subs))
    # Parents of every change ride along (overlayfs copy-up does the same).
    for rel in list(out):
        parts = rel.split(b"/")
        for i in range(1, len(parts)):
            p = b"/".join(parts[:i])
            if ADD not in out.get(p, []):
                out.setdefault(p, []).append(ADD)
    changes = [Change(p, k) for p in sorted(out, key=sort_key) for k in sorted(out[p], key=(DELETE, ADD, OPAQUE).index)]
    return ChangeSet(Path(upper), tuple(changes))
