"""The copy snapshot: what the sandbox does when overlayfs cannot be mounted here.

Owns: probing overlayfs support, and for an overlay Rootfs that cannot be mounted:
flattening lowerdirs + upperdir into a scratch directory, running there, then writing the
difference back into upperdir in overlayfs' own format (changed entries copied, deleted
ones as 0:0 character-device whiteouts) so the caller (the layer differ) cannot tell
which way the run happened. Must not: import builder, or be used when overlay works (a
copy costs time and space proportional to the image).
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile

from runtime.copytree import _copy_file, _meta, merge_layers, walk
from runtime.errors import SandboxError

_supported: bool | None = None


def overlay_supported() -> bool:
    """Whether this kernel has overlayfs (loaded or loadable: we ask the kernel's list)."""
    global _supported
    if _supported is None:
        try:
            with open("/proc/filesystems") as f:
                _supported = any(line.split()[-1] == "overlay" for line in f if line.strip())
        except OSError:
            _supported = False
        if not _supported and os.geteuid() == 0:
            # not loaded yet: a modprobe'able module still counts
            _supported = os.path.exists(f"/lib/modules/{os.uname().release}/kernel/fs/overlayfs")
    return _supported


_usable: dict[int, bool] = {}  # by st_dev: one probe per filesystem


def overlay_usable(near: str | None) -> bool:
    """Whether a snapshot next to `near` (the upper dir's parent) can be an overlay mount.
    Root of the host: when the kernel has overlayfs. Root of a user namespace (rootless): a
    real userxattr mount is tried once per filesystem, since the kernel (< 5.11), a filesystem
    without user xattrs or a policy may refuse it. PYBUILD_SNAPSHOTTER=copy forces the copy."""
    if os.environ.get("PYBUILD_SNAPSHOTTER") == "copy" or not overlay_supported():
        return False
    from runtime.namespaces import userns_root
    if not userns_root() or near is None:
        return True
    try:
        dev = os.stat(near).st_dev
    except OSError:
        return True  # let the mount itself say what is wrong
    if dev not in _usable:
        _usable[dev] = _try_userxattr_overlay(near)
    return _usable[dev]


def _try_userxattr_overlay(near: str) -> bool:
    from runtime import syscalls as sc
    try:
        d = tempfile.mkdtemp(prefix="pybuild-overlay-probe-", dir=near)
    except OSError:
        return False
    try:
        for sub in ("l", "u", "w", "m"):
            os.mkdir(f"{d}/{sub}")
        try:
            sc.mount("overlay", f"{d}/m", "overlay", 0, f"lowerdir={d}/l,upperdir={d}/u,workdir={d}/w,userxattr")
        except OSError:
            return False
        sc.umount2(f"{d}/m", sc.MNT_DETACH)
        return True
    finally:
        shutil.rmtree(d, ignore_errors=True)


Signature = tuple


def _signature(st: os.stat_result, path: str) -> Signature:
    link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
    # ctime catches what mtime misses (chmod, chown, touch -d to the old time)
    return (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_rdev, link)


def manifest(root: str) -> dict[str, Signature]:
    out: dict[str, Signature] = {}
    for dirpath, dirnames, filenames in walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = _signature(os.lstat(p), p)
    return out


class CopySnapshot:
    """prepare() -> a plain directory to run in; commit() -> the changes into upperdir."""

    def __init__(self, lowerdirs: tuple[str, ...], upperdir: str | None) -> None:
        self.lowerdirs, self.upperdir = lowerdirs, upperdir
        self.scratch: str | None = None
        self.before: dict[str, Signature] = {}

    def prepare(self) -> str:
        parent = os.path.dirname(self.upperdir) if self.upperdir else None
        self.scratch = tempfile.mkdtemp(prefix="pybuild-copy-snapshot-", dir=parent)
        try:
            merge_layers((*([self.upperdir] if self.upperdir else []), *self.lowerdirs), self.scratch)
        except OSError as e:
            self.cleanup()
            raise SandboxError(f"copy snapshot (no overlayfs): {e.strerror}: {e.filename}") from None
        self.before = manifest(self.scratch)
        return self.scratch

    def commit(self) -> None:
        """Write what the run changed in the scratch tree into upperdir, overlayfs-style."""
        if not self.upperdir or self.scratch is None:
            return
        after = manifest(self.scratch)
        try:
            for rel in sorted(after):  # parents sort before their children
                if self.before.get(rel) != after[rel]:
                    self._copy_up(rel)
            for rel in sorted(set(self.before) - set(after)):
                if os.path.dirname(rel) and os.path.dirname(rel) not in after:
                    continue  # under a deleted directory: its whiteout covers it
                self._white_out(rel)
        except OSError as e:
            raise SandboxError(f"copy snapshot: writing changes to {self.upperdir}: {e.strerror}: {e.filename}") from None

    def _copy_up(self, rel: str) -> None:
        assert self.scratch is not None and self.upperdir is not None
        src, dst = os.path.join(self.scratch, rel), os.path.join(self.upperdir, rel)
        self._parents(rel)
        st = os.lstat(src)
        if os.path.lexists(dst) and not (stat.S_ISDIR(st.st_mode) and os.path.isdir(dst) and not os.path.islink(dst)):
            if os.path.isdir(dst) and not os.path.islink(dst):
                shutil.rmtree(dst)
            else:
                os.unlink(dst)
        if stat.S_ISDIR(st.st_mode):
            if not os.path.isdir(dst):
                os.mkdir(dst, 0o700)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISREG(st.st_mode):
            _copy_file(src, dst)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            os.mknod(dst, st.st_mode, st.st_rdev)
        else:
            return
        _meta(src, dst, st)

    def _parents(self, rel: str) -> None:
        assert self.scratch is not None and self.upperdir is not None
        parts = rel.split(os.sep)[:-1]
        for i in range(1, len(parts) + 1):
            sub = os.path.join(*parts[:i])
            d = os.path.join(self.upperdir, sub)
            if not os.path.isdir(d):
                os.mkdir(d, 0o700)
                src = os.path.join(self.scratch, sub)
                _meta(src, d, os.lstat(src))

    def _white_out(self, rel: str) -> None:
        assert self.upperdir is not None
        self._parents(rel)
        dst = os.path.join(self.upperdir, rel)
        if os.path.isdir(dst) and not os.path.islink(dst):
            shutil.rmtree(dst)
        elif os.path.lexists(dst):
            os.unlink(dst)
        if any(os.path.lexists(os.path.join(low, rel)) for low in self.lowerdirs):
            try:
                os.mknod(dst, stat.S_IFCHR | 0o000, os.makedev(0, 0))
            except PermissionError:
                raise SandboxError(f"copy snapshot: cannot record the deletion of /{rel} "
                                   "(a whiteout needs CAP_MKNOD)") from None

    def cleanup(self) -> None:
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None
