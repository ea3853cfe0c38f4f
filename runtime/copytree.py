"""A faithful directory copy: the no-overlayfs fallback snapshot and the bundle rootfs.

Owns: copying a tree with owners, modes, times, symlinks, hard links, device nodes, fifos
and extended attributes preserved, and merging overlay lowerdirs (top-first) into one
plain directory with whiteouts applied. Must not: follow symlinks out of the tree, or
import builder.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator

_WHITEOUT_PREFIX = ".wh."
_OPAQUE = ".wh..wh..opq"


def copy_tree(src: str, dst: str, *, hardlinks: dict[tuple[int, int], str] | None = None) -> None:
    """Copy the contents of directory `src` into `dst` (created if missing; existing entries
    of the same name are replaced). Never follows a symlink."""
    links = {} if hardlinks is None else hardlinks
    st = os.lstat(src)
    if not os.path.isdir(dst):
        os.mkdir(dst, 0o700)
    _drive(_copy_dir(src, dst, links))
    _meta(src, dst, st)


def _drive(task: Iterator) -> None:
    """Run a tree task and the sub-tasks (one per directory) it yields on an explicit stack:
    a tree may be thousands of directories deep, past Python's recursion limit."""
    stack = [task]
    while stack:
        try:
            stack.append(next(stack[-1]))
        except StopIteration:
            stack.pop()


def _copy_dir(src: str, dst: str, links: dict[tuple[int, int], str]) -> Iterator:
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        s, d = e.path, os.path.join(dst, e.name)
        st = e.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            if os.path.lexists(d) and not os.path.isdir(d):
                os.unlink(d)
            if not os.path.lexists(d):
                os.mkdir(d, 0o700)
            yield _copy_dir(s, d, links)
            _meta(s, d, st)
            continue
        if os.path.lexists(d):
            _remove(d)
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            os.link(links[key], d)
            continue
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISREG(st.st_mode):
            _copy_file(s, d)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            os.mknod(d, st.st_mode, st.st_rdev)
        else:
            continue  # sockets are not copied (they mean nothing without their server)
        _meta(s, d, st)
        if st.st_nlink > 1:
            links[key] = d


def _copy_file(src: str, dst: str) -> None:
    fi = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            size = os.fstat(fi).st_size
            off = 0
            while off < size:
                n = os.copy_file_range(fi, fo, size - off)  # reflink/in-kernel where possible
                if n == 0:
                    break
                off += n
        finally:
            os.close(fo)
    finally:
        os.close(fi)


def _meta(src: str, dst: str, st: os.stat_result) -> None:
    try:
        os.lchown(dst, st.st_uid, st.st_gid)
    except PermissionError:
        pass  # unprivileged copy: files become the copier's
    for name in _listxattr(src):
        if name.startswith(("trusted.overlay.", "user.overlay.")):
            continue  # overlayfs bookkeeping of the source, meaningless in a copy
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
        except OSError:
            pass  # e.g. trusted.* without privilege, or a filesystem without xattrs
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid bits
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _listxattr(path: str) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []


def _remove(path: str) -> None:
    """Remove what is at `path`: a real directory with its contents, anything else unlinked."""
    if os.path.isdir(path) and not os.path.islink(path):
        _rmtree(path)
    else:
        os.unlink(path)


def _rmtree(path: str) -> None:
    _drive(_rmtree_task(path))


def _rmtree_task(path: str) -> Iterator:
    with os.scandir(path) as it:
        entries = [(e.path, e.is_dir(follow_symlinks=False)) for e in it]
    for p, is_dir in entries:
        if is_dir:
            yield _rmtree_task(p)
        else:
            os.unlink(p)
    os.rmdir(path)


def merge_layers(lowerdirs: tuple[str, ...] | list[str], dst: str) -> None:
    """Flatten overlay lowerdirs (top-most first, as in lowerdir=) into `dst`, honouring
    overlayfs whiteouts (0:0 char devices) and opaque directories (trusted.overlay.opaque),
    and the OCI-style .wh. files if a layer still has them."""
    os.makedirs(dst, exist_ok=True)
    links: dict[tuple[int, int], str] = {}
    for layer in reversed(list(lowerdirs)):  # bottom first, upper layers overwrite
        _drive(_apply(layer, dst, links))


def _apply(src: str, dst: str, links: dict[tuple[int, int], str]) -> Iterator:
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        s, d = e.path, os.path.join(dst, e.name)
        st = e.stat(follow_symlinks=False)
        if e.name == _OPAQUE:
            continue
        if e.name.startswith(_WHITEOUT_PREFIX) or (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0):
            victim = os.path.join(dst, e.name[len(_WHITEOUT_PREFIX):] if e.name.startswith(_WHITEOUT_PREFIX) else e.name)
            if os.path.isdir(victim) and not os.path.islink(victim):
                _rmtree(victim)
            elif os.path.lexists(victim):
                os.unlink(victim)
            continue
        if stat.S_ISDIR(st.st_mode):
            opaque = os.path.exists(os.path.join(s, _OPAQUE))
            for key in ("trusted.overlay.opaque", "user.overlay.opaque"):  # root / userns (userxattr)
                try:
                    opaque = opaque or os.getxattr(s, key, follow_symlinks=False) == b"y"
                except OSError:
                    pass
            if os.path.lexists(d) and (opaque or not os.path.isdir(d) or os.path.islink(d)):
                _remove(d)
            if not os.path.lexists(d):
                os.mkdir(d, 0o700)
            yield _apply(s, d, links)
            _meta(s, d, st)
            continue
        if os.path.lexists(d):
            _remove(d)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links and os.path.exists(links[key]):
                os.link(links[key], d)
                continue
            _copy_file(s, d)
            if st.st_nlink > 1:
                links[key] = d
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            os.mknod(d, st.st_mode, st.st_rdev)
        else:
            continue
        _meta(s, d, st)


def walk(top: str, *, topdown: bool = True) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk(top, topdown) (symlinks listed, never entered; unreadable directories skipped)
    without recursion: Python 3.11's os.walk recurses and a tree thousands of directories deep
    would end in RecursionError."""
    stack: list[tuple[str, bool]] = [(top, False)]
    done: dict[str, tuple[list[str], list[str]]] = {}
    while stack:
        path, listed = stack.pop()
        if listed:  # bottom-up: its subdirectories have been yielded
            dirs, files = done.pop(path)
            yield path, dirs, files
            continue
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:
            continue
        dirs, files, descend = [], [], []
        for e in entries:
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            (dirs if is_dir else files).append(e.name)
            if is_dir and not e.is_symlink():
                descend.append(e.path)
        if topdown:
            yield path, dirs, files
            entered = set(descend)  # the caller may have pruned dirs, as with os.walk
            descend = [p for p in (os.path.join(path, d) for d in dirs) if p in entered]
        else:
            done[path] = (dirs, files)
            stack.append((path, True))
        stack.extend((p, False) for p in reversed(descend))
