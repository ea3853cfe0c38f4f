"""Namespaces: unshare flags from names, uid/gid maps, joining the cgroups.

Owns: the mapping from SandboxConfig namespace names to CLONE_* flags and writing
/proc/PID/{uid_map,gid_map,setgroups}. Must not: decide when to unshare (init.py's steps
do) or import anything slow: the init child imports it on every start.
"""
from __future__ import annotations

import os

from runtime import syscalls as sc
from runtime.errors import NamespaceError

FLAGS = {"mount": sc.CLONE_NEWNS, "pid": sc.CLONE_NEWPID, "uts": sc.CLONE_NEWUTS,
         "ipc": sc.CLONE_NEWIPC, "net": sc.CLONE_NEWNET, "cgroup": sc.CLONE_NEWCGROUP,
         "user": sc.CLONE_NEWUSER}


def flags_for(names: list[str] | tuple[str, ...]) -> int:
    f = 0
    for n in names:
        f |= FLAGS[n]
    return f


def unshare(names: list[str] | tuple[str, ...]) -> None:
    if not names:
        return
    try:
        sc.unshare(flags_for(names))
    except OSError as e:
        raise NamespaceError(f"unshare({'|'.join(names)}): {e.strerror}") from None


def write_id_maps(pid: int | str, uid_map: list, gid_map: list, deny_setgroups: bool) -> None:
    """Write the maps of process `pid` ("self" for the caller). Each map is a list of
    (container_id, host_id, size). An unprivileged writer may map only its own id, and must
    deny setgroups first (the kernel insists, so a rootless container cannot drop groups)."""
    base = f"/proc/{pid}"
    try:
        if deny_setgroups:
            with open(f"{base}/setgroups", "w") as f:
                f.write("deny")
        for name, maps in (("uid_map", uid_map), ("gid_map", gid_map)):
            text = "".join(f"{c} {h} {n}\n" for c, h, n in maps)
            with open(f"{base}/{name}", "w") as f:
                f.write(text)
    except OSError as e:
        raise NamespaceError(f"writing {base} id maps {uid_map} / {gid_map}: {e.strerror}") from None


_userns_root: bool | None = None


def userns_root() -> bool:
    """Root of a user namespace that does not map every id (pybuild's rootless re-exec, or a
    container's hostUsers: false): uid 0 with the full capability set, but only over what the
    namespace owns: no mknod, no sysfs of the host's net namespace, no trusted.* xattrs, no
    host cgroup writes. Read from /proc/self/uid_map once (the identity map means the host)."""
    global _userns_root
    if _userns_root is None:
        try:
            with open("/proc/self/uid_map") as f:
                rows = [line.split() for line in f if line.strip()]
        except OSError:
            rows = [["0", "0", "4294967295"]]
        _userns_root = os.geteuid() == 0 and rows != [["0", "0", "4294967295"]]
    return _userns_root


def join_cgroups(procs_files: list[str]) -> None:
    """Move the calling process into each cgroup (its children follow)."""
    for path in procs_files:
        try:
            with open(path, "w") as f:
                f.write("0")
        except OSError as e:
            raise NamespaceError(f"joining cgroup {path}: {e.strerror}") from None


def join_netns(path: str) -> None:
    """Enter the network namespace bound at `path` (e.g. /run/netns/NAME)."""
    import os
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            sc.setns(fd, sc.CLONE_NEWNET)
        finally:
            os.close(fd)
    except OSError as e:
        raise NamespaceError(f"joining network namespace {path}: {e.strerror}") from None
