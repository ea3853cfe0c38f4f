"""Preparing a sandbox run: the init plan and the per-run private directory.

Owns: turning a SandboxConfig into the plain dict the init child works from (namespaces to
unshare, capability mask, rootless id map, /etc files), the private directory's place and
contents (mount point, hosts, resolv.conf, hostname, the mount-point layer), and removing
mount-point stubs afterwards. Must not: start processes (runtime.sandbox does) or import builder.
"""
from __future__ import annotations

import os
import stat

from runtime.config import CAPABILITY_NUMBERS, RLIMITS, SandboxConfig
from runtime.copytree import walk
from runtime.errors import NamespaceError
from runtime.namespaces import userns_root
from runtime.seccomp import program_for


def make_plan(config: SandboxConfig, private_dir: str, cgroup_procs: list[str]) -> dict:
    """The plain dict the init child works from (config + everything resolved here)."""
    root_user = os.geteuid() == 0
    ns = list(config.namespaces)
    if config.network == "none" and "net" not in ns and config.netns_path is None:
        ns.append("net")
    self_map = None
    if not root_user:
        missing = _userns_missing()
        if missing:
            raise NamespaceError(f"not root, and user namespaces are disabled ({missing}): "
                                 "the sandbox needs one of the two")
        if "user" not in ns:
            ns.append("user")
        if config.uid_map or config.gid_map:
            raise NamespaceError("rootless: only the single map of the caller's own ids is possible "
                                 "without newuidmap; leave uid_map/gid_map empty")
        self_map = (os.geteuid(), os.getegid())
    cap_last = _cap_last()
    mask = 0
    for c in config.capabilities:
        if CAPABILITY_NUMBERS[c] <= cap_last:
            mask |= 1 << CAPABILITY_NUMBERS[c]
    if "user" not in ns:
        # Without a user namespace, capset() cannot grant what we do not hold ourselves (a
        # builder in a container may lack some): "all capabilities" means all of ours.
        mask &= _own_permitted()
    d, ro = (config.etc_files_dir, False) if config.etc_files_dir else (private_dir, True)
    files = [("/etc/hosts", config.hosts_file or f"{d}/hosts", ro if not config.hosts_file else False),
             ("/etc/resolv.conf", f"{d}/resolv.conf", ro),
             ("/etc/hostname", f"{d}/hostname", ro)]
    cfg = config.to_dict()
    if config.rootfs.is_overlay:
        layer = mountpoint_layer(config, f"{private_dir}/mnt")
        if layer:
            cfg["rootfs"]["lowerdirs"] = [layer, *cfg["rootfs"]["lowerdirs"]]
    return {
        "config": cfg,
        "root": f"{private_dir}/root",
        "files": files,
        "unshare": ns,
        "self_map": self_map,
        "parent_pid": os.getpid(),
        # root of a user namespace that maps a range only (rootless re-exec): mount as userns does
        "userns_root": userns_root(),
        "setgroups_denied": _setgroups_denied(),
        "cgroup_procs": cgroup_procs,
        "cap_mask": mask,
        "cap_last": cap_last,
        "rlimit_numbers": RLIMITS,
        # compiled here (cached per process), installed by init just before execve
        "seccomp": program_for(config.seccomp, config.capabilities),
        "join_netns": config.netns_path,
        "interface": list(config.interface) if config.interface else None,
        "net_wait": False,  # set by runtime.sandbox when the run has an on_netns hook
    }


def _setgroups_denied() -> bool:
    """A user namespace made without newgidmap (a single-id map) denies setgroups for good."""
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "deny"
    except OSError:
        return False


def _userns_missing() -> str | None:
    """Why an unprivileged user namespace is impossible here, or None."""
    for path, bad in (("/proc/sys/kernel/unprivileged_userns_clone", "0"), ("/proc/sys/user/max_user_namespaces", "0")):
        try:
            with open(path) as f:
                if f.read().strip() == bad:
                    return f"{path.removeprefix('/proc/sys/').replace('/', '.')} = {bad}"
        except OSError:
            continue
    return None


PRIVATE_PREFIX = "pybuild-sandbox-"


def make_private_dir() -> str:
    """A fresh private directory named after this process (pybuild-sandbox-PID-RANDOM), so
    that the leftovers of a builder that was killed can be told apart and collected."""
    import tempfile
    parent = private_parent()
    _collect_stale(parent or tempfile.gettempdir())
    return tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-", dir=parent)


_collected: set[str] = set()


def _collect_stale(parent: str) -> None:
    """Once per process and place: remove private dirs whose builder is gone (kill -9 leaves
    them; their mounts died with the namespace, only these plain files remain)."""
    if parent in _collected:
        return
    _collected.add(parent)
    import shutil
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        pid_s = name[len(PRIVATE_PREFIX):].split("-", 1)[0]
        if not name.startswith(PRIVATE_PREFIX) or not pid_s.isdigit():
            continue
        try:
            os.kill(int(pid_s), 0)
            continue  # its builder still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, someone else's
        path = os.path.join(parent, name)
        if os.stat(path).st_uid == os.geteuid():
            shutil.rmtree(path, ignore_errors=True)


def private_parent() -> str | None:
    """Where the per-run private directory goes: a tmpfs when there is one (/dev/shm), since
    its mkdir/rmdir/unlink cost microseconds where a journaling disk costs ~0.5 ms each."""
    for d in (os.environ.get("XDG_RUNTIME_DIR") if os.geteuid() else None, "/dev/shm"):
        if d and os.path.isdir(d) and os.access(d, os.W_OK | os.X_OK):
            return d
    return None


_permitted: list[int] = []


def _own_permitted() -> int:
    """This process's permitted capabilities (read once: they do not change)."""
    if not _permitted:
        _permitted.append(_read_permitted())
    return _permitted[0]


def _read_permitted() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapPrm:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return (1 << 64) - 1


def _cap_last() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def private_files(config: SandboxConfig) -> dict[str, str]:
    """The contents of the container's /etc/hosts, /etc/resolv.conf and /etc/hostname."""
    hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             f"{config.interface[0] if config.interface else '127.0.1.1'}\t{config.hostname}"]
    hosts += [f"{addr}\t{name}" for name, addr in config.extra_hosts]
    resolv = config.resolv_conf
    if resolv is None:
        try:
            with open("/etc/resolv.conf") as f:
                resolv = f.read()
        except OSError:
            resolv = ""
    return {"hosts": "\n".join(hosts) + "\n", "resolv.conf": resolv, "hostname": config.hostname + "\n"}


def write_private_dir(config: SandboxConfig, d: str) -> None:
    # 0711: the root of a user namespace (another host uid) must reach root/ and the files;
    # listing stays private, and the files hold nothing secret.
    os.chmod(d, 0o711)
    os.mkdir(f"{d}/root", 0o755)
    where = config.etc_files_dir or d  # writable ones go to disk, never to the tmpfs
    for name, text in private_files(config).items():
        fd = os.open(f"{where}/{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with open(fd, "w") as f:
            f.write(text)
        os.chmod(f"{where}/{name}", 0o644)


def remove_stubs(base: str, stubs: list[tuple[str, int, str]]) -> None:
    """Remove the mount points init had to create, deepest first, if they are still bare,
    and give their parent directory its mtime back (BuildKit does the same), so a layer
    diff does not see a change the user never made."""
    for kind, parent_mtime, cpath in reversed(stubs):
        host = base + cpath
        try:
            if kind == "f":
                st = os.lstat(host)
                if st.st_size == 0 and (st.st_mode & 0o170000) == 0o100000:
                    os.unlink(host)
                else:
                    continue
            else:
                os.rmdir(host)
        except OSError:
            continue  # not empty or already gone: then it is the process's own change
        parent = os.path.dirname(host)
        try:
            st = os.lstat(parent)
            os.utime(parent, ns=(st.st_atime_ns, parent_mtime), follow_symlinks=False)
        except OSError:
            pass


STANDARD_TARGETS = (("/proc", True), ("/dev", True), ("/sys", True), ("/etc/hosts", False),
                    ("/etc/resolv.conf", False), ("/etc/hostname", False))


def mountpoint_layer(config: SandboxConfig, dest: str) -> str | None:
    """A tiny extra overlay lower (top-most) holding the mount points the image lacks, so
    that mounting on them writes nothing into the upper dir: no stub to clean up and no
    copied-up parent directory in the layer diff. Directories it adds carry the metadata
    of the same directory in the image, since overlayfs shows the top-most one. Targets
    under a symlink in the image are left to init's stubs (resolved inside the root).
    Returns the layer's path, or None when nothing is missing."""
    layers = [d for d in (config.rootfs.upperdir, *config.rootfs.lowerdirs) if d]
    targets = list(STANDARD_TARGETS)
    for m in config.mounts:
        targets.append((m.target, m.kind != "bind" or os.path.isdir(m.source)))
    made = False
    for target, is_dir in targets:
        parts = [p for p in target.split("/") if p]
        if any(os.path.lexists(layer + target) for layer in layers):
            continue
        if any(os.path.islink(layer + "/" + "/".join(parts[:i])) for layer in layers for i in range(1, len(parts))):
            continue
        if not made:
            os.mkdir(dest, 0o755)
            _copy_dir_meta(layers, "", dest)
            made = True
        for i in range(1, len(parts)):
            sub = "/" + "/".join(parts[:i])
            if not os.path.isdir(dest + sub):
                os.mkdir(dest + sub, 0o755)
                _copy_dir_meta(layers, sub, dest + sub)
        if is_dir:
            os.makedirs(dest + target, 0o755, exist_ok=True)
        elif not os.path.lexists(dest + target):
            os.close(os.open(dest + target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    if made:
        # directories made above had their mtime reset by later mkdirs: put them back
        for dirpath, dirnames, _ in walk(dest, topdown=False):  # (no recursion: see copytree.walk)
            rel = os.path.relpath(dirpath, dest)
            _copy_dir_meta(layers, "" if rel == "." else "/" + rel, dirpath, times_only=True)
    return dest if made else None


def _copy_dir_meta(layers: list[str], sub: str, dst: str, times_only: bool = False) -> None:
    for layer in layers:
        try:
            st = os.lstat(layer + sub)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            return
        if not times_only:
            os.chmod(dst, stat.S_IMODE(st.st_mode))
            try:
                os.chown(dst, st.st_uid, st.st_gid)
            except PermissionError:
                pass  # rootless: the layer is ours either way
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        return
