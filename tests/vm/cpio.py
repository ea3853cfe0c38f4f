"""A newc ("070701") cpio writer: the initramfs format the kernel unpacks (several archives
concatenated, gzip-compressed or not, are unpacked one over the other).

Owns: `write(out, entries)` and the command line `python3 tests/vm/cpio.py DIR` (DIR's tree,
owners and modes kept, to stdout). Used by tests/vm/provision.sh for the guest's root
filesystem and by tests/vm/test_cgroup_v2_vm.py for the per-boot archive (/init, the
checkout): no cpio package, and device nodes without mknod.
"""
from __future__ import annotations

import os
import stat
import sys
from typing import BinaryIO, Iterable, NamedTuple


class Entry(NamedTuple):
    name: str  # without a leading slash
    mode: int  # st_mode: type and permissions
    data: bytes = b""  # file content, or a symlink's target
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    rdev: tuple[int, int] = (0, 0)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def write(out: BinaryIO, entries: Iterable[Entry]) -> None:
    ino = 1
    for e in [*entries, Entry("TRAILER!!!", 0)]:
        name = e.name.encode() + b"\0"
        fields = (ino, e.mode, e.uid, e.gid, 1, e.mtime, len(e.data), 0, 0, e.rdev[0], e.rdev[1],
                  len(name), 0)
        head = b"070701" + b"".join(b"%08x" % f for f in fields)
        out.write(head + name + _pad(len(head) + len(name)))
        out.write(e.data + _pad(len(e.data)))
        ino += 1


def tree(top: str, prefix: str = "") -> Iterable[Entry]:
    """`top`'s files, directories, symlinks and device nodes (hard links become copies), not
    crossing into other file systems."""
    dev = os.lstat(top).st_dev
    for d, dirs, files in os.walk(top):
        rel = os.path.relpath(d, top)
        for name in sorted(dirs) + sorted(files):
            p = os.path.join(d, name)
            st = os.lstat(p)
            if name in dirs and st.st_dev != dev:
                dirs.remove(name)
                continue
            arc = os.path.normpath(os.path.join(prefix, rel, name)).lstrip("/")
            data = b""
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    data = f.read()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p).encode()
            rdev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else (0, 0)
            yield Entry(arc, st.st_mode, data, st.st_uid, st.st_gid, int(st.st_mtime), rdev)


if __name__ == "__main__":
    write(sys.stdout.buffer, tree(sys.argv[1]))
