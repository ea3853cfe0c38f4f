"""A read view of a layer stack (overlay lowerdirs + an upper) without mounting anything.

Owns: overlay lookup rules done by hand — a path is the topmost layer's entry unless a higher
layer whites it out (0/0 char device) or has a non-directory / an opaque directory on the way —
`find`, `listdir`, `resolve` (symlinks followed *inside* the root only: an absolute link target
or `..` never leaves it), and `copy_up` (create an upper's parent directories with the metadata
the lower layers give them, as overlayfs would on a write).

Also `export_tree`: materialize a path of a stack on the host (bind mount sources, COPY --from),
with owners, modes, times, xattrs and the hardlinks among the exported files.
Must not: mount, or write anywhere but the upper / export destination it was given. Used by
COPY/ADD/WORKDIR (the destination side), COPY --from (the source side) and --chown lookups.
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from builder.errors import BuildStepError
from builder.layers.changes import OPAQUE_XATTRS  # the one list of overlay opaque-dir xattrs

MAX_SYMLINKS = 40


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            pass
    return False


def split(rel: str) -> list[str]:
    return [p for p in rel.split("/") if p and p != "."]


def in_layer(layer: str, parts: list[str]) -> tuple[bool, tuple[str, os.stat_result] | None]:
    """One layer's say on the entry at `parts`: (True, hit or None) when this layer decides it
    (the entry is here; or a whiteout, a non-directory or an opaque directory on the way hides
    the layers below), (False, None) when the layers below decide."""
    cur = layer
    hidden = False
    for i, name in enumerate(parts):
        cur = os.path.join(cur, name)
        try:
            st = os.lstat(cur)
        except (FileNotFoundError, NotADirectoryError):
            break  # not in this layer: look lower
        if is_whiteout(st):
            return True, None
        if i == len(parts) - 1:
            return True, (cur, st)
        if not stat.S_ISDIR(st.st_mode):
            return True, None  # a file here hides everything below in lower layers
        if is_opaque(cur):
            hidden = True
    else:
        if not parts:
            return True, (layer, os.lstat(layer))
    if hidden:
        # an opaque directory on the path in this layer: lower layers don't show through
        sub = os.path.join(layer, *parts)
        if os.path.lexists(sub):
            st = os.lstat(sub)
            return True, (None if is_whiteout(st) else (sub, st))
        return True, None
    return False, None


class LayeredFS:
    """Layers top first (an upper, if any, is simply the first layer)."""

    def __init__(self, layers: list[Path] | tuple[Path, ...] | tuple[str, ...]) -> None:
        self.layers = [str(p) for p in layers]

    def _lookup(self, parts: list[str]) -> tuple[str, os.stat_result] | None:
        """Host path + lstat of the entry at `parts` (no symlinks followed), or None."""
        for layer in self.layers:
            decided, hit = in_layer(layer, parts)
            if decided:
                return hit
        return None

    def find(self, rel: str) -> tuple[str, os.stat_result] | None:
        return self._lookup(split(rel))

    def exists(self, rel: str) -> bool:
        return self._lookup(split(rel)) is not None

    def listdir(self, rel: str) -> list[str]:
        names: set[str] = set()
        gone: set[str] = set()
        for d in self.merged_dirs(rel):
            try:
                entries = list(os.scandir(d))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for e in entries:
                if e.name in names or e.name in gone:
                    continue
                st = e.stat(follow_symlinks=False)
                (gone if is_whiteout(st) else names).add(e.name)
        return sorted(names)

    def merged_dirs(self, rel: str) -> list[str]:
        """The host directories (top layer first) whose entries make up directory `rel`."""
        parts = split(rel)
        out: list[str] = []
        for layer in self.layers:
            d = os.path.join(layer, *parts)
            blocked = False
            cur = layer
            for name in parts:  # a non-dir ancestor here ends the merge
                cur = os.path.join(cur, name)
                try:
                    st = os.lstat(cur)
                except OSError:
                    blocked = None  # type: ignore[assignment]
                    break
                if not stat.S_ISDIR(st.st_mode):
                    blocked = True
                    break
            if blocked is True:
                break
            if blocked is None:
                continue
            if not os.path.isdir(d):
                continue
            out.append(d)
            if is_opaque(d):
                break
        return out

    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """An absolute in-root path with every symlink resolved inside the root ('/a/b')."""
        todo = split(path)
        done: list[str] = []
        hops = 0
        while todo:
            name = todo.pop(0)
            if name == "..":
                if done:
                    done.pop()
                continue
            done.append(name)
            if not todo and not follow_last:
                break
            hit = self._lookup(done)
            if hit is None or not stat.S_ISLNK(hit[1].st_mode):
                continue
            hops += 1
            if hops > MAX_SYMLINKS:
                raise BuildStepError(f"too many levels of symbolic links resolving {path}")
            target = os.readlink(hit[0])
            done.pop()
            if target.startswith("/"):
                done = []
            todo = split(target) + todo
        return "/" + "/".join(done)

    def read_file(self, rel: str) -> bytes | None:
        hit = self.find(self.resolve(rel))
        if hit is None or not stat.S_ISREG(hit[1].st_mode):
            return None
        with open(hit[0], "rb") as f:
            return f.read()


def copy_up(view: LayeredFS, upper: Path, rel_dir: str, *, new_mode: int = 0o755,
            new_owner: tuple[int, int] | None = None) -> Path:
    """Make `rel_dir` exist as a directory in `upper`, metadata taken from the lowers; a directory
    the lowers lack is made with `new_mode` and `new_owner` (default 0755 root)."""
    cur = Path(upper)
    parts = split(rel_dir)
    for i, name in enumerate(parts):
        cur = cur / name
        if os.path.lexists(cur):
            st = os.lstat(cur)
            if stat.S_ISDIR(st.st_mode):
                continue
            os.unlink(cur)  # a file or whiteout in the upper where a directory must go
        hit = view._lookup(parts[: i + 1])
        if hit is not None and stat.S_ISDIR(hit[1].st_mode):
            st = hit[1]
            os.mkdir(cur)
            os.chmod(cur, stat.S_IMODE(st.st_mode))
            os.chown(cur, st.st_uid, st.st_gid)
            os.utime(cur, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            os.mkdir(cur)
            os.chmod(cur, new_mode)
            if new_owner is not None and new_owner != (0, 0):
                os.chown(cur, *new_owner)
    return cur


def _copy_entry(src: str, dst: Path) -> None:
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
    elif os.path.isdir(src):
        dst.mkdir(exist_ok=True)
        shutil.copystat(src, dst)
    else:
        shutil.copy2(src, dst)


def _export_file(host: str, dest: Path, st: os.stat_result, links: dict[tuple[int, int], Path]) -> None:
    """A regular file: a hardlink to an earlier exported name of the same inode (a lower layer's
    hardlinks stay one inode, which COPY --from then keeps), else a copy with its metadata."""
    if st.st_nlink > 1:
        first = links.get((st.st_dev, st.st_ino))
        if first is not None:
            os.link(first, dest)
            return
    shutil.copyfile(host, dest, follow_symlinks=False)
    os.lchown(dest, st.st_uid, st.st_gid)
    from builder.context import read_xattrs  # (not at import: hashlib et al. are `run`'s start-up)

    for k, v in read_xattrs(host):  # after chown, which drops security.capability
        try:
            os.setxattr(dest, k, v, follow_symlinks=False)
        except OSError:
            pass
    os.chmod(dest, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid bits
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    if st.st_nlink > 1:
        links[(st.st_dev, st.st_ino)] = dest


def export_tree(view: LayeredFS, rel: str, dest: Path) -> None:
    """Materialize a path of a layer stack at `dest` on the host (for bind mounts, COPY --from)."""
    path = view.resolve(rel)
    hit = view.find(path)
    if hit is None:
        raise BuildStepError(f"{rel} not found in the source stage")
    host, st = hit
    if stat.S_ISDIR(st.st_mode):
        dest.mkdir(exist_ok=True)
        _export_children(view.merged_dirs(path), dest, {})
        shutil.copystat(host, dest)
    elif stat.S_ISREG(st.st_mode):
        _export_file(host, dest, st, {})  # owner and mode kept: COPY --from keeps them, as BuildKit
    else:
        _copy_entry(host, dest)


def export_tree_nofollow(view: LayeredFS, path: str, dest: Path,
                         links: dict[tuple[int, int], Path] | None = None) -> None:
    hit = view.find(path)
    if hit is None:
        return
    host, st = hit
    if links is None:
        links = {}
    if stat.S_ISDIR(st.st_mode):
        dest.mkdir(exist_ok=True)
        _export_children(view.merged_dirs(path), dest, links)
        shutil.copystat(host, dest, follow_symlinks=False)
        os.lchown(dest, st.st_uid, st.st_gid)
    else:
        _export_one(host, st, dest, links)


def _export_one(host: str, st: os.stat_result, dest: Path, links: dict[tuple[int, int], Path]) -> None:
    if stat.S_ISREG(st.st_mode):
        _export_file(host, dest, st, links)
    elif stat.S_ISLNK(st.st_mode):
        _copy_entry(host, dest)
        os.lchown(dest, st.st_uid, st.st_gid)
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _merged_children(dirs: list[str]) -> list[tuple[str, str, os.stat_result, list[str]]]:
    """The entries of one merged directory whose host directories are `dirs` (top layer first,
    already cut at an opaque one): (name, host path, lstat, the child's own host directories
    when it is a directory). Overlay rules, one level at a time: the top-most entry of a name
    decides (a whiteout hides it, a non-directory hides lower ones); a directory merges with
    the same-named directories below it down to the first non-directory or opaque one."""
    top: dict[str, tuple[str, os.stat_result, list[str]]] = {}
    closed: set[str] = set()  # names whose merge is over (a file, whiteout or opaque dir above)
    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            name = e.name
            if name in closed:
                continue
            st = e.stat(follow_symlinks=False)
            if name in top:  # a lower layer under a directory of the same name
                if stat.S_ISDIR(st.st_mode) and not is_whiteout(st):
                    top[name][2].append(e.path)
                    if is_opaque(e.path):
                        closed.add(name)
                else:
                    closed.add(name)
                continue
            if is_whiteout(st):
                closed.add(name)
                continue
            if stat.S_ISDIR(st.st_mode):
                top[name] = (e.path, st, [e.path])
                if is_opaque(e.path):
                    closed.add(name)
            else:
                top[name] = (e.path, st, [])
                closed.add(name)
    return [(n, *top[n]) for n in sorted(top)]


def _export_children(dirs: list[str], dest: Path, links: dict[tuple[int, int], Path]) -> None:
    """Write the merged directory `dirs` below `dest`: depth-first on an explicit stack (a tree
    may be thousands of directories deep), one scandir per layer directory (no lookup from the
    root per entry); a directory's metadata is set once its children are written."""
    todo: list[tuple[list[str], Path, tuple[str, os.stat_result] | None]] = [(dirs, dest, None)]
    while todo:
        layer_dirs, d, done = todo.pop()
        if done is not None:
            shutil.copystat(done[0], d, follow_symlinks=False)
            os.lchown(d, done[1].st_uid, done[1].st_gid)
            continue
        children = _merged_children(layer_dirs)
        for name, host, st, sub in reversed(children):
            target = d / name
            if stat.S_ISDIR(st.st_mode):
                target.mkdir(exist_ok=True)
                todo.append(([], target, (host, st)))  # after its children (popped later)
                todo.append((sub, target, None))
            else:
                _export_one(host, st, target, links)
