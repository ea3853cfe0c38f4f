"""A faithful directory copy: the no-overlayfs fallback snapshot and the bundle rootfs.

Owns: copying a tree with owners, modes, times, symlinks, hard links, device nodes, fifos
and extended attributes preserved, and merging overlay lowerdirs (top-first) into one
plain directory with whiteouts applied. Must not: follow symlinks out of the tree, or
import builder.
"""
from __future__ import annotations

import os
import stat

_WHITEOUT_PREFIX = ".wh."
_OPAQUE = ".wh..wh..opq"


def copy_tree(src: str, dst: str, *, hardlinks: dict[tuple[int, int], str] | None = None) -> None:
    """Copy the contents of directory `src` into `dst` (created if missing; existing entries
    of the same name are replaced). Never follows a symlink."""
    links = {} if hardlinks is None else hardlinks
    st = os.lstat(src)
    if not os.path.isdir(dst):
        os.mkdir(dst, 0o700)
    _copy_dir(src, dst, links)
    _meta(src, dst, st)


def _copy_dir(src: str, dst: str, links: dict[tuple[int, int], str]) -> None:
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
            _copy_dir(s, d, links)
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
    for root, dirs, files in os.walk(path, topdown=False):
        for f in files:
            os.unlink(os.path.join(root, f))
        for d in dirs:
            p = os.path.join(root, d)
            if os.path.islink(p):
                os.unlink(p)
            else:
                os.rmdir(p)
    os.rmdir(path)


def merge_layers(lowerdirs: tuple[str, ...] | list[str], dst: str) -> None:
    """Flatten overlay lowerdirs (top-most first, as in lowerdir=) into `dst`, honouring
    overlayfs whiteouts (0:0 char devices) and opaque directories (trusted.overlay.opaque),
    and the OCI-style .wh. files if a layer still has them."""
    os.makedirs(dst, exist_ok=True)
    links: dict[tuple[int, int], str] = {}
    for layer in reversed(list(lowerdirs)):  # bottom first, upper layers overwrite
        _apply(layer, dst, links)


def _apply(src: str, dst: str, links: dict[tuple[int, int], str]) -> None:
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
            _apply(s, d, links)
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
