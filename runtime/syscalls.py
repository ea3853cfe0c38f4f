"""The one libc binding point of the runtime: unshare, mount, umount2, pivot_root, setns,
sethostname, capset, prctl, and the new mount API (fsopen, fsconfig, fsmount, move_mount).

Owns: the foreign-function declarations and the Linux constants they take. Must not: make
policy (which flags, which order; init.py and mounts.py decide) or import anything heavy.
This module is imported by `runtime.init` on every sandbox start, so it binds libc through
the builtin `_ctypes` extension instead of the `ctypes` package: `import ctypes` costs
~2.5 ms here (it builds its whole type zoo), `_ctypes` ~0.3 ms. Python 3.11 has no
`os.unshare`/`os.setns`, and no Python has `mount` or `pivot_root`.

Every wrapper raises OSError(errno, strerror) on failure; callers add the context (op,
source, target, flags) the error message needs.
"""
from __future__ import annotations

import _ctypes
import os

# --- clone/unshare flags (linux/sched.h) ---
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# --- mount flags (linux/mount.h) ---
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

# --- prctl options (linux/prctl.h) ---
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
KEYCTL_JOIN_SESSION_KEYRING = 1

# Syscalls glibc 2.36 has no wrapper for (pivot_root, capset), by architecture.
_SYSNO = {
    "x86_64": {"pivot_root": 155, "capset": 126, "keyctl": 250, "renameat2": 316},
    "aarch64": {"pivot_root": 41, "capset": 91, "keyctl": 219, "renameat2": 276},
}
_MACHINE = os.uname().machine
# The new mount API has one number on every architecture (the generic table, since 5.2).
SYS_MOVE_MOUNT, SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 429, 430, 431, 432
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 0, 1, 6
FSMOUNT_CLOEXEC = 1
MOVE_MOUNT_F_EMPTY_PATH = 4
AT_FDCWD = -100
RENAME_EXCHANGE = 2


class _int(_ctypes._SimpleCData):
    _type_ = "i"


class _long(_ctypes._SimpleCData):
    _type_ = "l"


class _ulong(_ctypes._SimpleCData):
    _type_ = "L"


class _charp(_ctypes._SimpleCData):
    _type_ = "z"  # bytes or None -> const char *


class _Func(_ctypes.CFuncPtr):
    # USE_ERRNO: ctypes saves errno right after the call, so get_errno() is reliable.
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _int


class _Libc:
    _handle = _ctypes.dlopen(None, os.RTLD_NOW)  # the running process (libc is linked in)


def _bind(name: str, *argtypes: type, restype: type = _int) -> _Func:
    f = _Func((name, _Libc))
    f.argtypes = argtypes
    f.restype = restype
    return f


_unshare = _bind("unshare", _int)
_setns = _bind("setns", _int, _int)
_mount = _bind("mount", _charp, _charp, _charp, _ulong, _charp)
_umount2 = _bind("umount2", _charp, _int)
_sethostname = _bind("sethostname", _charp, _ulong)
_prctl = _bind("prctl", _int, _ulong, _ulong, _ulong, _ulong)
_prctl_p = _bind("prctl", _int, _ulong, _charp, _ulong, _ulong)
_syscall = _bind("syscall", _long, _charp, _charp, restype=_long)
_sys_keyctl = _bind("syscall", _long, _long, _charp, restype=_long)
_sys_fsopen = _bind("syscall", _long, _charp, _ulong, restype=_long)
_sys_fsconfig = _bind("syscall", _long, _int, _ulong, _charp, _charp, _int, restype=_long)
_sys_fsmount = _bind("syscall", _long, _int, _ulong, _ulong, restype=_long)
_sys_move_mount = _bind("syscall", _long, _int, _charp, _int, _charp, _ulong, restype=_long)
_sys_renameat2 = _bind("syscall", _long, _int, _charp, _int, _charp, _ulong, restype=_long)


def _check(ret: int, *context: str) -> int:
    if ret < 0:
        err = _ctypes.get_errno()
        raise OSError(err, os.strerror(err), *context[:1])
    return ret


def _b(s: str | bytes | None) -> bytes | None:
    return s.encode() if isinstance(s, str) else s


def unshare(flags: int) -> None:
    _check(_unshare(flags))


def setns(fd: int, nstype: int = 0) -> None:
    _check(_setns(fd, nstype))


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_mount(_b(source), _b(target), _b(fstype), flags, _b(data)))


def umount2(target: str, flags: int = 0) -> None:
    _check(_umount2(_b(target), flags))


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_syscall(_SYSNO[_MACHINE]["pivot_root"], _b(new_root), _b(put_old)))


def rename_exchange(a: str, b: str) -> None:
    """Swap two existing paths atomically (renameat2 RENAME_EXCHANGE, Linux 3.15; glibc < 2.28
    has no wrapper). KeyError on an architecture not in the table."""
    _check(_sys_renameat2(_SYSNO[_MACHINE]["renameat2"], AT_FDCWD, _b(a), AT_FDCWD, _b(b), RENAME_EXCHANGE), b)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_sethostname(raw, len(raw)))


def prctl(option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
    return _check(_prctl(option, a2, a3, a4, a5))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (64-bit masks) with the v3 ABI."""
    header = (0x20080522).to_bytes(4, "little") + (0).to_bytes(4, "little")  # version 3, pid 0 = self
    data = b"".join(  # two __user_cap_data_struct {effective, permitted, inheritable}: low, high 32 bits
        (m >> shift & 0xFFFFFFFF).to_bytes(4, "little")
        for shift in (0, 32) for m in (effective, permitted, inheritable))
    _check(_syscall(_SYSNO[_MACHINE]["capset"], header, data))


def fsopen(fstype: str) -> int:
    """A filesystem context (close-on-exec fd) for fsconfig()."""
    return _check(_sys_fsopen(SYS_FSOPEN, _b(fstype), FSOPEN_CLOEXEC))


def fsconfig(fd: int, cmd: int, key: str | None = None, value: str | None = None) -> None:
    _check(_sys_fsconfig(SYS_FSCONFIG, fd, cmd, _b(key), _b(value), 0))


MOUNT_ATTR_NODEV = 0x4


def fsmount(fd: int, attrs: int = 0) -> int:
    """The configured filesystem as a detached mount (close-on-exec fd); attrs: MOUNT_ATTR_*."""
    return _check(_sys_fsmount(SYS_FSMOUNT, fd, FSMOUNT_CLOEXEC, attrs))


def move_mount_fd(mount_fd: int, target: str) -> None:
    """Attach the detached mount `mount_fd` at `target`."""
    _check(_sys_move_mount(SYS_MOVE_MOUNT, mount_fd, b"", AT_FDCWD, _b(target), MOVE_MOUNT_F_EMPTY_PATH))


def join_session_keyring() -> None:
    """Join a new anonymous session keyring (keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)), so
    the keys of the session that started us are no longer ours to search or read."""
    _check(_sys_keyctl(_SYSNO[_MACHINE]["keyctl"], KEYCTL_JOIN_SESSION_KEYRING, None))


def seccomp_filter(program: bytes) -> None:
    """Install a classic-BPF seccomp filter (struct sock_filter[] bytes) on this thread; the
    caller has set no_new_privs or holds CAP_SYS_ADMIN. Irreversible; inherited by children."""
    buf = _charp(program)  # keeps `program` alive; its value is the address of the bytes
    addr = _ulong.from_address(_ctypes.addressof(buf)).value
    fprog = (len(program) // 8).to_bytes(2, "little") + bytes(6) + addr.to_bytes(8, "little")
    _check(_prctl_p(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog, 0, 0))
