"""Mount helpers for the init child: overlay rootfs, /proc, /dev, /sys, binds, pivot_root.

Owns: turning one mount request into syscalls with an error message that names the op,
source, target and flags; resolving a container path inside the rootfs without following
symlinks out of it; creating mount-point stubs (and remembering them, so the parent can
remove them from the upper dir afterwards, as BuildKit does). Must not: decide the order
of steps (init.py does), import builder, or import anything slow (this runs on every start).
"""
from __future__ import annotations

import errno
import os
import stat

from runtime import syscalls as sc
from runtime.errors import MountError

_FLAG_NAMES = ((sc.MS_RDONLY, "ro"), (sc.MS_NOSUID, "nosuid"), (sc.MS_NODEV, "nodev"),
               (sc.MS_NOEXEC, "noexec"), (sc.MS_REMOUNT, "remount"), (sc.MS_BIND, "bind"),
               (sc.MS_MOVE, "move"), (sc.MS_REC, "rec"), (sc.MS_PRIVATE, "private"),
               (sc.MS_SLAVE, "slave"), (sc.MS_STRICTATIME, "strictatime"))
# mount(8) words a Mount.options tuple may carry that are flags rather than fs data.
_OPTION_FLAGS = {"ro": sc.MS_RDONLY, "nosuid": sc.MS_NOSUID, "nodev": sc.MS_NODEV,
                 "noexec": sc.MS_NOEXEC, "rbind": sc.MS_REC, "strictatime": sc.MS_STRICTATIME}


def flag_names(flags: int) -> str:
    names = [n for bit, n in _FLAG_NAMES if flags & bit]
    rest = flags & ~sum(bit for bit, _ in _FLAG_NAMES)
    if rest:
        names.append(hex(rest))
    return ",".join(names) or "0"


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    try:
        sc.mount(source, target, fstype, flags, data)
    except OSError as e:
        what = f"mount {fstype or ''} {source or 'none'} on {target}".replace("  ", " ")
        # whole unless it is page-sized (a deep overlay): then its start and its length
        shown = data if not data or len(data) <= 1024 else f"{data[:400]}… ({len(data)} bytes)"
        extra = f", data {shown!r}" if data else ""
        raise MountError(f"{what} (flags {flag_names(flags)}{extra}): {e.strerror}") from None


def split_options(options: list[str] | tuple[str, ...]) -> tuple[int, str]:
    """mount(8)-style words -> (flags, data string for the filesystem)."""
    flags, data = 0, []
    for o in options:
        if o in _OPTION_FLAGS:
            flags |= _OPTION_FLAGS[o]
        elif o in ("rw", "bind", "rprivate", "private"):
            continue
        else:
            data.append(o)
    return flags, ",".join(data)


# --- paths inside the rootfs -------------------------------------------------------------
def resolve_in_root(root: str, path: str, create: "Stubs | None" = None, leaf_is_dir: bool = True) -> str:
    """The host path of container path `path` under `root`, following symlinks as the
    container would see them: absolute links restart at root, '..' stops at root. Untrusted
    image content therefore never steers a mount or a stub outside the rootfs. With
    `create`, missing components are made (directories, and the leaf as a file when
    leaf_is_dir is false) and recorded there."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if done:
                done.pop()
            continue
        host = root + "/" + "/".join(done + [p])
        try:
            target = os.readlink(host)
        except OSError:  # not a symlink, or missing
            if create is not None and not os.path.lexists(host):
                create.make(host, "/" + "/".join(done + [p]), leaf_is_dir or bool(parts))
            done.append(p)
            continue
        links += 1
        if links > 40:
            raise MountError(f"too many levels of symbolic links resolving {path} in the rootfs")
        if target.startswith("/"):
            done = []
        parts[:0] = [q for q in target.split("/") if q not in ("", ".")]
    return root + "/" + "/".join(done) if done else root


class Stubs:
    """Mount points this run had to create in the rootfs, as container paths (parents first)."""

    def __init__(self, root: str, report=None) -> None:
        self.root = root
        self.report = report  # called with each new stub at once, so a later failure still cleans it
        # (container path, "d"|"f", parent's mtime in ns before we created it: restored
        # after removal so the parent does not show up as changed in the layer diff)
        self.created: list[tuple[str, str, int]] = []

    def ensure(self, cpath: str, is_dir: bool) -> str:
        """Resolve `cpath` in the rootfs, creating missing parents and the leaf; return the host path."""
        return resolve_in_root(self.root, cpath, self, is_dir)

    def make(self, host: str, cpath: str, is_dir: bool) -> None:
        try:
            parent_mtime = os.stat(os.path.dirname(host)).st_mtime_ns
            if is_dir:
                os.mkdir(host, 0o755)
            else:
                os.close(os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
        except OSError as e:
            raise MountError(f"cannot create mount point {cpath} in the rootfs: {e.strerror}") from None
        self.created.append((cpath, "d" if is_dir else "f", parent_mtime))
        if self.report is not None:
            self.report(*self.created[-1])


# --- the pieces of a container root ------------------------------------------------------
def mount_rootfs(rootfs: dict, target: str, userns: bool) -> None:
    """Overlay (lowerdirs top-first + upper + work) or a bind of a plain dir onto `target`.
    Always nodev: a device node in an image or made by mknod in the rootfs cannot be opened
    (the standard nodes are on /dev, see mount_dev), whatever the cgroup device rules."""
    lowers = rootfs["lowerdirs"]
    if not lowers:
        mount(rootfs["path"], target, None, sc.MS_BIND | sc.MS_REC)
        mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_NODEV)
        return
    if not rootfs["upperdir"] and len(lowers) == 1:
        # overlayfs wants two lowers when there is no upper; one read-only layer is a bind.
        mount(lowers[0], target, None, sc.MS_BIND | sc.MS_REC)
        mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | sc.MS_NODEV)
        return
    lower = ":".join(lowers)
    data = f"lowerdir={lower}"
    if rootfs["upperdir"]:
        data += f",upperdir={rootfs['upperdir']},workdir={rootfs['workdir']}"
    if userns:
        data += ",userxattr"  # unprivileged overlay stores whiteouts/opaque in user.* xattrs
    if rootfs.get("volatile") and rootfs["upperdir"] and len(data) + 9 < _PAGE:
        try:
            mount("overlay", target, "overlay", sc.MS_NODEV, data + ",volatile")
            return
        except MountError:
            pass  # a kernel before 5.10: the same mount, synced
    if len(data) < _PAGE:
        mount("overlay", target, "overlay", sc.MS_NODEV, data)
        return
    # mount(2) takes the options as one page: ~45 layers of absolute snapshot paths. The new
    # mount API takes the layers one by one ("lowerdir+", kernel 6.8+), any number of them.
    try:
        _mount_overlay_by_layers(rootfs, target, userns)
        return
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL, errno.EPERM):
            raise MountError(f"overlay of {len(lowers)} layers on {target}: {e.strerror}") from None
    # Older kernels: paths relative to their common parent, which may fit.
    common = os.path.commonpath([*lowers, *(d for d in (rootfs["upperdir"], rootfs["workdir"]) if d)])
    data = data.replace(common + "/", "")
    if len(data) >= _PAGE:
        raise MountError(f"an image of {len(lowers)} layers is too deep for this kernel's overlay mount "
                         f"(its options are one page; kernels from 6.8 take any number of layers)")
    cwd = os.getcwd()
    os.chdir(common)
    try:
        mount("overlay", target, "overlay", sc.MS_NODEV, data)
    finally:
        os.chdir(cwd)


_PAGE = 4096


def _mount_overlay_by_layers(rootfs: dict, target: str, userns: bool) -> None:
    fs = sc.fsopen("overlay")
    try:
        for d in rootfs["lowerdirs"]:  # top first, as in lowerdir=
            sc.fsconfig(fs, sc.FSCONFIG_SET_STRING, "lowerdir+", d)
        if rootfs["upperdir"]:
            sc.fsconfig(fs, sc.FSCONFIG_SET_STRING, "upperdir", rootfs["upperdir"])
            sc.fsconfig(fs, sc.FSCONFIG_SET_STRING, "workdir", rootfs["workdir"])
        if userns:
            sc.fsconfig(fs, sc.FSCONFIG_SET_FLAG, "userxattr")
        sc.fsconfig(fs, sc.FSCONFIG_CMD_CREATE)
        mnt = sc.fsmount(fs, sc.MOUNT_ATTR_NODEV)
    finally:
        os.close(fs)
    try:
        sc.move_mount_fd(mnt, target)
    finally:
        os.close(mnt)


# Docker's masked and read-only paths (moby oci/defaults.go; those that do not exist are
# skipped), the /sys ones masked by mount_sys.
PROC_MASKED = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
               "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi")
SYS_MASKED = ("/sys/firmware", "/sys/devices/virtual/powercap")
PROC_READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def mount_proc(root: str, stubs: Stubs, userns: bool = False) -> None:
    proc = stubs.ensure("/proc", True)
    flags = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    if not userns:
        mount("proc", proc, "proc", flags)
        return
    try:
        sc.mount("proc", proc, "proc", flags, None)
    except OSError as e:
        if e.errno != errno.EPERM:
            raise MountError(f"mount proc proc on {proc} (flags {flag_names(flags)}): {e.strerror}") from None
        # Nested in a container whose /proc is partly masked (docker's masks, or ours): the
        # kernel gives a user namespace no fresh proc then. Show the one we see, masks and all
        # (BuildKit's "no process sandbox"): its pids are those of the enclosing container.
        mount("/proc", proc, None, sc.MS_BIND | sc.MS_REC)


def protect_proc(root: str) -> None:
    """Read-only and masked /proc paths, as Docker does; needs /dev/null (mount_dev) first."""
    for p in PROC_READONLY:
        host = root + p
        if os.path.exists(host):
            mount(host, host, None, sc.MS_BIND | sc.MS_REC)
            mount(None, host, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    for p in PROC_MASKED:
        host = root + p
        if os.path.isdir(host):
            mount("tmpfs", host, "tmpfs", sc.MS_RDONLY, "size=0")
        elif os.path.exists(host):
            mount(root + "/dev/null", host, None, sc.MS_BIND)


_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))


def mount_dev(root: str, stubs: Stubs, userns: bool) -> None:
    """/dev is a nodev tmpfs: a node made there by mknod cannot be opened. The standard
    nodes are the host's, bind-mounted (a bind keeps its own mount's flags)."""
    dev = stubs.ensure("/dev", True)
    mount("tmpfs", dev, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_STRICTATIME, "mode=755,size=65536k")
    old = os.umask(0)
    try:
        for name, major, minor in _DEVICES:
            path = f"{dev}/{name}"
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o666))
            mount(f"/dev/{name}", path, None, sc.MS_BIND)
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                             ("ptmx", "pts/ptmx"), ("core", "/proc/kcore")):
            os.symlink(target, f"{dev}/{name}")
        os.mkdir(f"{dev}/pts", 0o755)
        os.mkdir(f"{dev}/shm", 0o1777)
        os.mkdir(f"{dev}/mqueue", 0o755)
    finally:
        os.umask(old)
    # POSIX message queues of our ipc namespace (a fresh mqueue fs shows only those).
    mount("mqueue", f"{dev}/mqueue", "mqueue", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    gid = "" if userns else ",gid=5"  # gid 5 (tty) may be unmapped in a user namespace
    mount("devpts", f"{dev}/pts", "devpts", sc.MS_NOSUID | sc.MS_NOEXEC,
          f"newinstance,ptmxmode=0666,mode=0620{gid}")
    mount("shm", f"{dev}/shm", "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=1777,size=65536k")


def mount_sys(stubs: Stubs, own_netns: bool) -> None:
    sys_ = stubs.ensure("/sys", True)
    flags = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    try:
        sc.mount("sysfs", sys_, "sysfs", flags, None)
    except OSError:
        # A fresh sysfs needs a net namespace we own; otherwise show the host's, read-only.
        mount("/sys", sys_, None, sc.MS_BIND | sc.MS_REC)
        mount(None, sys_, None, sc.MS_REMOUNT | sc.MS_BIND | flags)
    # Docker's masks: firmware tables (ACPI, EFI variables, DMI serials) and power capping
    # (RAPL energy counters leak what other tenants compute) read as empty directories.
    for p in SYS_MASKED:
        host = sys_ + p[4:]
        if os.path.isdir(host):
            mount("tmpfs", host, "tmpfs", sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "size=0")


def mount_one(m: dict, stubs: Stubs) -> None:
    """One Mount from the config (kind, source, target, readonly, options)."""
    kind, src = m["kind"], m["source"]
    flags, data = split_options(m["options"])
    if kind == "bind":
        # mount(2) follows a symlink in its source on the host: bind the object itself,
        # opened without following a final symlink, through its /proc/self/fd path (the
        # magic link names that exact inode, so nothing can be swapped in between).
        fd = _open_bind_source(src)
        try:
            target = stubs.ensure(m["target"], stat.S_ISDIR(os.fstat(fd).st_mode))
            mount(f"/proc/self/fd/{fd}", target, None, sc.MS_BIND | (flags & sc.MS_REC))
            kept = _flags_of_mount(fd)
        finally:
            os.close(fd)
        ro = sc.MS_RDONLY if m["readonly"] else 0
        extra = flags & (sc.MS_NOSUID | sc.MS_NOEXEC)
        # nodev always: a cache dir or volume is host disk, where mknod would make openable
        # nodes. A bind remount sets every flag: keep the source mount's (in a user namespace
        # they are locked, and leaving one out fails with EPERM).
        mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_NODEV | ro | extra | kept)
        return
    target = stubs.ensure(m["target"], True)
    if m["readonly"]:
        flags |= sc.MS_RDONLY
    fstype = {"tmpfs": "tmpfs", "proc": "proc", "sysfs": "sysfs", "devpts": "devpts", "mqueue": "mqueue"}[kind]
    if kind == "tmpfs":
        flags |= sc.MS_NOSUID | sc.MS_NODEV
    mount(src or kind, target, fstype, flags, data or None)


# statvfs f_flag bits -> the mount(2) flags a bind remount must repeat
_ST_FLAGS = ((1, sc.MS_RDONLY), (2, sc.MS_NOSUID), (4, sc.MS_NODEV), (8, sc.MS_NOEXEC),
             (1024, 1024), (2048, 2048))  # ST_NOATIME/MS_NOATIME, ST_NODIRATIME/MS_NODIRATIME
_ST_RELATIME, _MS_STRICTATIME = 4096, 1 << 24


def _flags_of_mount(fd: int) -> int:
    """The flags of the mount `fd` is on, as mount(2) flags (atime mode included)."""
    try:
        f = os.fstatvfs(fd).f_flag
    except OSError:
        return 0
    out = 0
    for st_bit, ms_bit in _ST_FLAGS:
        if f & st_bit:
            out |= ms_bit
    if not f & (_ST_RELATIME | 1024):
        out |= _MS_STRICTATIME  # neither relatime nor noatime: strictatime (relatime is the default)
    return out


def _open_bind_source(src: str) -> int:
    """An O_PATH fd for a bind source that is not itself a symlink (MountError otherwise)."""
    try:
        fd = os.open(src, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise MountError(f"bind source {src}: {e.strerror}") from None
    if stat.S_ISLNK(os.fstat(fd).st_mode):
        os.close(fd)
        raise MountError(f"bind source {src} is a symbolic link (refused: mount(2) would follow it on the host)")
    return fd


def bind_file(source: str, target: str, readonly: bool = False) -> None:
    fd = _open_bind_source(source)
    try:
        mount(f"/proc/self/fd/{fd}", target, None, sc.MS_BIND)
    finally:
        os.close(fd)
    if readonly:
        mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)


def remount_readonly(target: str) -> None:
    mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | sc.MS_NODEV)  # a remount sets all flags


def pivot(root: str) -> None:
    """Make `root` the root and detach the old one (runc's pivot_root(".", ".") trick: no
    put_old directory is needed, so nothing is created in the rootfs)."""
    os.chdir(root)
    try:
        sc.pivot_root(".", ".")
    except OSError as e:
        raise MountError(f"pivot_root to {root}: {e.strerror}") from None
    # The old root is now stacked on top of "."; make it a slave so the detach does not
    # propagate anywhere, then lazily unmount it together with every host mount beneath.
    mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
    try:
        sc.umount2(".", sc.MNT_DETACH)
    except OSError as e:
        raise MountError(f"umount2 old root (MNT_DETACH): {e.strerror}") from None
    os.chdir("/")


def loopback_up() -> None:
    """Bring `lo` up in a fresh network namespace (it starts down; Docker brings it up)."""
    import _socket  # C modules, small; only paid when a net namespace is made
    import fcntl
    IFF_UP, IFF_LOOPBACK, IFF_RUNNING, SIOCSIFFLAGS = 0x1, 0x8, 0x40, 0x8914
    ifreq = b"lo".ljust(16, b"\0") + (IFF_UP | IFF_LOOPBACK | IFF_RUNNING).to_bytes(2, "little") + bytes(22)
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, ifreq)
    except OSError as e:
        raise MountError(f"bringing up lo (SIOCSIFFLAGS): {e.strerror}") from None
    finally:
        s.close()
