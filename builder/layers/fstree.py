"""Removing a directory tree of any depth: `rmtree(path)`.

Owns: deleting trees that untrusted input made (an image layer, a RUN's upper directory, a
build context copy), which may be thousands of directories deep: deeper than Python's
recursion limit (shutil.rmtree recurses, one frame and one open fd per level) and deeper than
PATH_MAX (no full path to a deep entry can even be named). So: no recursion and no long
paths. Each directory met is renamed up into the top directory (renameat between two open
directory fds), emptied there and removed: one fd open at a time, every path one name long.
Must not: follow a symlink (a link to a directory is unlinked, never entered).
"""
from __future__ import annotations

import errno
import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def rmtree(path: str | os.PathLike, *, ignore_errors: bool = False) -> None:
    """Remove `path` and everything below it (a file or symlink: just unlink it)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(path)
            return
        top = os.open(path, _DIR_FLAGS)
    except OSError:
        if ignore_errors:
            return
        raise
    try:
        _empty(top, ignore_errors)
    finally:
        os.close(top)
    try:
        os.rmdir(path)
    except OSError:
        if not ignore_errors:
            raise


def _empty(top: int, ignore_errors: bool) -> None:
    token = os.urandom(6).hex()
    serial = 0
    queue: list[str | None] = [None]  # None: top itself; names: directories now directly in top
    while queue:
        name = queue.pop()
        try:
            fd = top if name is None else os.open(name, _DIR_FLAGS, dir_fd=top)
        except OSError:
            if ignore_errors:
                continue
            raise
        try:
            with os.scandir(fd) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            for entry, is_dir in entries:
                try:
                    if not is_dir:
                        os.unlink(entry, dir_fd=fd)
                    elif name is None:
                        queue.append(entry)  # already one name below top
                    else:
                        while True:
                            serial += 1
                            moved = f".rmtree-{token}-{serial}"
                            try:
                                os.rename(entry, moved, src_dir_fd=fd, dst_dir_fd=top)
                                break
                            except FileExistsError:
                                continue
                            except OSError as e:
                                if e.errno == errno.ENOTEMPTY:  # the name is taken by a directory
                                    continue
                                raise
                        queue.append(moved)
                except FileNotFoundError:
                    continue
                except OSError:
                    if not ignore_errors:
                        raise
        finally:
            if fd != top:
                os.close(fd)
        if name is not None:
            try:  # every subdirectory moved up, every file gone: it is empty now
                os.rmdir(name, dir_fd=top)
            except OSError:
                if not ignore_errors:
                    raise


def tree_size(path: str | os.PathLike) -> int:
    """Bytes in the regular files below `path` (symlinks not followed), without recursion.
    What cannot be read (a path past PATH_MAX, a racing delete) counts as 0."""
    total = 0
    todo = [os.fspath(path)]
    while todo:
        d = todo.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            todo.append(e.path)
                        elif e.is_file(follow_symlinks=False):
                            total += e.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total
