"""Apply a layer (tar, tar+gzip, tar+zstd) to a directory, safely.

Owns: whiteouts (`.wh.NAME` deletes, `.wh..wh..opq` hides lower content; or, for overlay
lowerdirs, conversion to overlay whiteouts), hardlinks, owners, modes, xattrs, mtimes —
and never writing outside the root: absolute names and `..` are rejected, every parent
component is resolved inside the root (a symlink is followed as if the root were `/`, so it
can never lead out), hardlink targets must be inside the root, device nodes are created only
where permitted. Every refusal is a LayerError naming the entry.
Must not: trust the archive, or print (warnings go to a callback).
"""
from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path
from typing import BinaryIO, Callable

from builder.errors import LayerError
from builder.layers.tarread import BLK, CHR, FIFO, LNK, SYM, Entry, TarReader
from builder.oci.compression import open_decompressed
from builder.oci.digest import Digest
from builder.layers import fstree

CHUNK = 1 << 20
MAX_LINKS = 40
Warn = Callable[[str], None]


class _Hashing(io.RawIOBase):
    """Counts and hashes the uncompressed tar bytes as the tar reader reads them (→ diff_id)."""

    def __init__(self, f) -> None:
        self._f = f
        self.h = hashlib.sha256()
        self.n = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            data = self._f.read(len(b))
        except Exception as e:  # noqa: BLE001 - zstd/gzip/zlib each have their own error types
            raise LayerError(f"layer stream is corrupt: {e}") from None
        n = len(data)
        b[:n] = data
        self.h.update(data)
        self.n += n
        return n


def open_layer_stream(f: BinaryIO, media_type: str | None = None) -> BinaryIO:
    """Uncompressed tar bytes of a layer; gzip through ISA-L when installed (3-4x zlib)."""
    from builder.oci import mediatypes as mt
    from builder.oci.compression import detect

    comp = mt.layer_compression(media_type) if media_type else None
    if comp is None or comp == "gzip":
        buf = f if hasattr(f, "peek") else io.BufferedReader(f, CHUNK)  # type: ignore[arg-type]
        if (comp or detect(buf.peek(4)[:4])) == "gzip":
            try:
                from isal import igzip  # type: ignore[import-not-found]
            except ImportError:
                return open_decompressed(buf, "application/vnd.oci.image.layer.v1.tar+gzip")
            return igzip.IGzipFile(fileobj=buf)  # type: ignore[return-value]
        f = buf
    return open_decompressed(f, media_type)


class _Root:
    """Resolves entry parents inside the root, creating missing directories (mode 0755)."""

    def __init__(self, root: Path) -> None:
        self.path = os.path.realpath(root)
        self._cache: dict[str, str] = {}

    def forget(self) -> None:
        self._cache.clear()  # a symlink or directory changed: cached resolutions may be stale

    def dir(self, parts: list[str], entry: str, create: bool = True) -> str:
        key = "/".join(parts)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        resolved: list[str] = []
        pending = list(parts)
        up = self._cache.get("/".join(parts[:-1])) if len(parts) > 1 else None
        if up is not None:
            # the parent was resolved (tar order: parents first): go on from there, so a
            # thousand-level tree costs one lstat per level, not one per level per entry
            resolved = up[len(self.path) + 1:].split("/") if up != self.path else []
            pending = parts[-1:]
        links = 0
        while pending:
            c = pending.pop(0)
            if c in ("", "."):
                continue
            if c == "..":
                if resolved:
                    resolved.pop()  # `..` at the root stays at the root, as in a chroot
                continue
            cand = self.path + "/" + "/".join(resolved + [c])
            check_length(cand, entry)
            try:
                st = os.lstat(cand)
            except FileNotFoundError:
                if not create:
                    raise LayerError(f"layer entry {entry!r}: {'/'.join(resolved + [c])} does not exist") from None
                os.mkdir(cand, 0o755)
                resolved.append(c)
                continue
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise LayerError(f"layer entry {entry!r}: too many levels of symbolic links")
                target = os.readlink(cand)
                if target.startswith("/"):
                    resolved = []
                pending = target.split("/") + pending
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise LayerError(f"layer entry {entry!r}: {'/'.join(resolved + [c])} is not a directory")
            resolved.append(c)
        out = self.path + ("/" + "/".join(resolved) if resolved else "")
        self._cache[key] = out
        return out


PATH_MAX = os.pathconf("/", "PC_PATH_MAX")


def _reached_plainly(path: str, root: str, memo: dict[str, bool]) -> bool:
    """Whether every component of `path` below `root` is a directory (no symlink on the way):
    os.path.realpath without its cost (an lstat per component per call; a 1500-level tree
    made that cubic). Each directory is checked once and remembered in `memo`."""
    chain = []
    p = path
    while p != root and p not in memo:
        chain.append(p)
        parent = os.path.dirname(p)
        if len(parent) >= len(p):
            return False  # not below root
        p = parent
    ok = True if p == root else memo[p]
    for q in reversed(chain):
        if ok:
            try:
                ok = stat.S_ISDIR(os.lstat(q).st_mode)
            except OSError:
                ok = False
        memo[q] = ok
    return memo[path] if path in memo else ok


def check_length(path: str, entry: str) -> None:
    """An entry deeper than the system can name (PATH_MAX) is a clear error, not ENAMETOOLONG."""
    if len(os.fsencode(path)) >= PATH_MAX:
        short = entry if len(entry) <= 100 else f"{entry[:50]}…{entry[-30:]}"
        raise LayerError(f"layer entry {short!r}: unpacked here its path would be longer than the "
                         f"system allows (PATH_MAX {PATH_MAX})")


def _parts(name: str, entry: str, what: str = "path") -> list[str]:
    if name.startswith("/"):
        raise LayerError(f"layer entry {entry!r}: absolute {what} is not allowed in a layer")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"layer entry {entry!r}: {what} with '..' would escape the root")
    return parts


def _remove(path: str) -> bool:
    """Remove whatever is at `path`; True when it was a directory or a symlink (which cached
    parent resolutions may have gone through)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        fstree.rmtree(path)
        return True
    os.unlink(path)
    return stat.S_ISLNK(st.st_mode)


def apply_layer(path_or_stream: Path | str | BinaryIO, root: Path | str, *, media_type: str | None = None,
                whiteouts: str = "delete", chown: bool | None = None, devices: str = "create",
                warn: Warn | None = None) -> Digest:
    """Apply one layer to `root`; returns the diff_id (sha256 of the uncompressed tar).

    whiteouts: "delete" (apply them: the root is a full filesystem) or "overlay" (turn them
    into overlayfs whiteouts: the root is one layer of an overlay lowerdir stack).
    devices: "create" (mknod; refused → LayerError), "skip" (warn) or "reject" (LayerError).
    chown: set owners from the tar (default: when running as root).
    """
    if whiteouts not in ("delete", "overlay") or devices not in ("create", "skip", "reject"):
        raise ValueError("bad whiteouts/devices mode")
    chown = os.geteuid() == 0 if chown is None else chown
    if isinstance(path_or_stream, (str, Path)):
        with open(path_or_stream, "rb") as f:
            return apply_layer(f, root, media_type=media_type, whiteouts=whiteouts, chown=chown,
                               devices=devices, warn=warn)
    Path(root).mkdir(parents=True, exist_ok=True)
    hashing = _Hashing(open_layer_stream(path_or_stream, media_type))
    r = _Root(Path(root))
    added: set[str] = set()
    dir_times: dict[str, tuple[int, int]] = {}  # path -> (mtime, mode), in first-seen order
    tar = TarReader(io.BufferedReader(hashing, CHUNK))
    for m in tar:
        if "\0" in m.name or "\0" in m.linkname:
            raise LayerError(f"layer entry {m.name!r}: NUL byte in a name")
        try:
            _apply_entry(tar, m, r, added, dir_times, whiteouts, chown, devices, warn)
        except OSError as e:
            # Name too long, a read-only target, disk full...: say which entry hit it.
            raise LayerError(f"layer entry {m.name!r}: {e.strerror or e}") from None
    # The reader stops at the end-of-archive blocks: the rest still counts for the diff_id.
    while hashing.read(CHUNK):
        pass
    plain: dict[str, bool] = {}
    for path, (mtime, mode) in reversed(dir_times.items()):  # children first: they touched parents
        # A later entry of the same layer may have removed the directory or replaced it (or a
        # parent) with a file or a SYMLINK. os.chmod follows symlinks: `d/` (0777) then `d ->
        # /etc` chmodded the host's /etc; a file there raised NotADirectoryError (exit 3). So
        # act only on a directory still reached without any symlink, through an O_NOFOLLOW fd.
        if not _reached_plainly(path, r.path, plain):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone, or no longer a directory
        try:
            os.fchmod(fd, mode)
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)

    return Digest("sha256:" + hashing.h.hexdigest())


def _apply_entry(tar: TarReader, m: Entry, r: _Root, added: set[str],
                 dir_times: dict[str, tuple[int, int]], whiteouts: str, chown: bool, devices: str,
                 warn: Warn | None) -> None:
    entry = m.name
    parts = _parts(m.name, entry)
    if not parts:
        return  # the root itself ("./"): its metadata belongs to the caller
    name = parts[-1]
    if name.startswith(".wh."):
        _whiteout(r, parts, entry, added, whiteouts)
        return
    parent = r.dir(parts[:-1], entry)
    target = parent + "/" + name
    check_length(target, entry)
    added.add(target)
    if m.isdir():
        try:
            st = os.lstat(target)
            if not stat.S_ISDIR(st.st_mode):
                _remove(target)
                r.forget()
                os.mkdir(target, 0o700)
        except FileNotFoundError:
            os.mkdir(target, 0o700)
    elif m.type == LNK:
        lparts = _parts(m.linkname, entry, "hardlink target")
        if not lparts:
            raise LayerError(f"layer entry {entry!r}: hardlink to the root directory")
        src = r.dir(lparts[:-1], entry, create=False) + "/" + lparts[-1]
        try:
            if stat.S_ISDIR(os.lstat(src).st_mode):
                raise LayerError(f"layer entry {entry!r}: hardlink to a directory")
        except FileNotFoundError:
            raise LayerError(f"layer entry {entry!r}: hardlink target {m.linkname!r} does not exist") from None
        if src == target:
            return
        if _remove(target):
            r.forget()
        os.link(src, target, follow_symlinks=False)
        return  # a hardlink shares the target's inode: its metadata is already there
    else:
        if _remove(target) or m.type == SYM:
            r.forget()
        if m.isreg():
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                for chunk in tar.data():
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        elif m.type == SYM:
            os.symlink(m.linkname, target)
        elif m.type in (CHR, BLK):
            if devices == "reject":
                raise LayerError(f"layer entry {entry!r}: device nodes are not permitted here")
            if devices == "skip":
                if warn:
                    warn(f"skipped device node {entry}")
                added.discard(target)
                return
            kind = stat.S_IFCHR if m.type == CHR else stat.S_IFBLK
            try:
                os.mknod(target, kind | 0o600, os.makedev(m.devmajor, m.devminor))
            except PermissionError:
                if not host_root():
                    # rootless: no user namespace may make a device node; skipped as containerd
                    # does there (a sandbox's /dev is its own, and the rootfs is nodev anyway)
                    added.discard(target)
                    return
                raise LayerError(f"layer entry {entry!r}: not permitted to create a device node here",
                                 hint="unpack as root, or skip device nodes") from None
        elif m.type == FIFO:
            os.mkfifo(target, 0o600)
        else:
            if warn:
                warn(f"skipped layer entry {entry}: unsupported tar type {m.type!r}")
            return
    _set_metadata(m, target, chown, warn, dir_times)


def _set_metadata(m: Entry, target: str, chown: bool, warn: Warn | None,
                  dir_times: dict[str, tuple[int, int]]) -> None:
    if chown:
        os.lchown(target, m.uid, m.gid)  # before chmod: chown clears setuid/setgid
    for k, v in m.xattrs.items():
        try:
            os.setxattr(target, k, v, follow_symlinks=False)
        except OSError as e:
            if warn:
                warn(f"could not set xattr {k} on {m.name}: {e.strerror}")
    mtime = int(m.mtime * 1_000_000_000)
    if m.isdir():
        # Mode and mtime at the end: a read-only directory must still take its children
        # (as a non-root user), and writing children would bump its mtime.
        os.chmod(target, (m.mode & 0o7777) | 0o700)
        dir_times.pop(target, None)  # a directory listed twice: the last entry wins
        dir_times[target] = (mtime, m.mode & 0o7777)
        return
    if m.type != SYM:
        os.chmod(target, m.mode & 0o7777)
    os.utime(target, ns=(mtime, mtime), follow_symlinks=False)


_host_root: bool | None = None


def host_root() -> bool:
    """Root of the host's user namespace (which may set trusted.* xattrs, so overlay reads its
    whiteout/opaque marks there); not root, or root of a user namespace mapping a range only
    (pybuild's rootless mode), uses user.overlay.* with the userxattr mount option."""
    global _host_root
    if _host_root is None:
        try:
            with open("/proc/self/uid_map") as f:
                identity = f.read().split() == ["0", "0", "4294967295"]
        except OSError:
            identity = True
        _host_root = os.geteuid() == 0 and identity
    return _host_root


def _whiteout(r: _Root, parts: list[str], entry: str, added: set[str], mode: str) -> None:
    name = parts[-1]
    parent = r.dir(parts[:-1], entry)
    r.forget()
    if name == ".wh..wh..opq":
        if mode == "overlay":
            key = "trusted.overlay.opaque" if host_root() else "user.overlay.opaque"
            os.setxattr(parent, key, b"y", follow_symlinks=False)
            return
        for child in os.listdir(parent):
            p = parent + "/" + child
            if p not in added:
                _remove(p)
        return
    if name.startswith(".wh..wh."):
        return  # other aufs metadata (.wh..wh.plnk...): not content
    real = name[len(".wh."):]
    if real in ("", ".", ".."):
        raise LayerError(f"layer entry {entry!r}: whiteout of {real!r} is not allowed")
    target = parent + "/" + real
    _remove(target)
    if mode == "overlay":
        try:
            os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        except PermissionError:
            raise LayerError(f"layer entry {entry!r}: cannot create an overlay whiteout here") from None
