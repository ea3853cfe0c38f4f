"""SandboxConfig: what to run and in what box, as pure data.

Owns: the frozen records (runtime.record) the engine, the CLI and the bundle writer fill in
(SandboxConfig, Rootfs, Process, Mount, IdMap, Limits, Rlimit), `validate()` (every problem
at once, before anything runs) and the JSON form (`to_json`/`from_json`, `to_dict`).
Must not: touch the filesystem beyond cheap existence checks in validate(), start
processes, or be imported by `runtime.init` (defining classes costs time at start-up;
init reads the plain dict from `to_dict()`).
"""
from __future__ import annotations

import json
import os
from typing import Any

from runtime.errors import ConfigError
from runtime.record import Record, field, fields, is_record

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's default capability set (moby oci/caps/defaults.go); everything else is dropped.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)
# linux/capability.h numbering (stable ABI).
CAPABILITY_NUMBERS: dict[str, int] = {name: i for i, name in enumerate((
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
))}

NAMESPACES = ("mount", "pid", "uts", "ipc", "net", "cgroup", "user")
DEFAULT_NAMESPACES = ("mount", "pid", "uts", "ipc", "cgroup")  # net follows `network`
NETWORKS = ("none", "host")
MOUNT_KINDS = ("bind", "tmpfs", "proc", "sysfs", "devpts", "mqueue")
# setrlimit resource names (RLIMIT_<NAME>) we accept; the numbers are in resource.h.
RLIMITS = {"cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6,
           "nofile": 7, "memlock": 8, "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12,
           "nice": 13, "rtprio": 14, "rttime": 15}


class IdMap(Record):
    """One line of /proc/PID/uid_map: container ids [container_id, +size) = host ids [host_id, +size)."""

    container_id: int
    host_id: int
    size: int = 1


class Rootfs(Record):
    """The container's root: an overlay (lowerdirs top-first, upperdir, workdir) or a plain dir.

    lowerdirs follow overlayfs order: the first is the top-most layer. With an upperdir the
    container's writes land there (the engine turns them into a layer); without one the
    overlay is read-only. `path` alone means a plain directory used in place.
    """

    path: str | None = None
    lowerdirs: tuple[str, ...] = ()
    upperdir: str | None = None
    workdir: str | None = None
    # the upper is thrown away after the run (`run --rm`): overlayfs's `volatile` (Linux 5.10)
    # skips syncing it, at every fsync inside and once at unmount (a sync of the whole upper
    # filesystem: ms on the path of every start, more when the disk is busy); ignored by
    # kernels without it. Such an upper/work pair must not be mounted again.
    volatile: bool = False

    @property
    def is_overlay(self) -> bool:
        return bool(self.lowerdirs)


class Process(Record):
    argv: tuple[str, ...]
    env: tuple[str, ...] = (f"PATH={DEFAULT_PATH}",)
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    tty: bool = False
    terminal_size: tuple[int, int] | None = None  # (rows, columns) for tty=True
    umask: int = 0o022


class Mount(Record):
    """A mount inside the container. options: mount(8)-style words, e.g. "size=64m", "mode=1777",
    "nosuid", "nodev", "noexec", "rbind". A bind source that is a file binds a file."""

    kind: str
    target: str
    source: str = ""
    readonly: bool = False
    options: tuple[str, ...] = ()


class Limits(Record):
    memory_bytes: int | None = None
    cpu_quota: float | None = None  # CPUs, e.g. 0.5 = half a core
    pids: int | None = None


class Rlimit(Record):
    """A setrlimit(2) limit; the sandbox only ever lowers limits (raising needs privilege)."""

    resource: str  # "nofile", "nproc", ...
    soft: int
    hard: int


class SandboxConfig(Record):
    rootfs: Rootfs
    process: Process
    mounts: tuple[Mount, ...] = ()
    hostname: str = "pybuild"
    network: str = "none"  # "none": a new net namespace with only lo; "host": the host's
    namespaces: tuple[str, ...] = DEFAULT_NAMESPACES
    uid_map: tuple[IdMap, ...] = ()
    gid_map: tuple[IdMap, ...] = ()
    limits: Limits = field(default_factory=Limits)
    rlimits: tuple[Rlimit, ...] = ()
    timeout: float | None = None
    readonly_rootfs: bool = False
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    no_new_privileges: bool = True
    init: bool = False  # run a minimal reaping init as pid 1 and the process as pid 2
    extra_hosts: tuple[tuple[str, str], ...] = ()  # (name, address) lines added to /etc/hosts
    resolv_conf: str | None = None  # content; None = a copy of the host's /etc/resolv.conf
    # "default" (docker's default policy, runtime.seccomp), "unconfined", or the text of a
    # docker-format JSON profile
    seccomp: str = "default"
    # /etc/hosts, resolv.conf, hostname: None = read-only copies kept in the run's private
    # dir (RUN, as BuildKit mounts them); a directory = writable files kept there (`pybuild
    # run` gives its container's dir on disk, as docker keeps them beside the container).
    etc_files_dir: str | None = None
    # Detached containers (builder.containers): a network namespace made beforehand (a path
    # like /run/netns/NAME) joined instead of a fresh one, and a host file bound as /etc/hosts
    # instead of the private copy, so the monitor can add peers while the container runs.
    netns_path: str | None = None
    hosts_file: str | None = None
    # `pybuild run` on a bridge: (address, prefix length, gateway) given to the `eth0` that
    # run()'s on_netns hook puts into the fresh network namespace before anything runs there.
    interface: tuple[str, int, str] | None = None

    # --- checks ---------------------------------------------------------------------
    def validate(self) -> list[str]:
        """Every problem with this config, as one-line strings (empty = valid)."""
        p: list[str] = []
        r = self.rootfs
        if r.is_overlay:
            if r.path:
                p.append("rootfs: give either path or lowerdirs, not both")
            if bool(r.upperdir) != bool(r.workdir):
                p.append("rootfs: upperdir and workdir go together")
            for d in (*r.lowerdirs, r.upperdir, r.workdir):
                if d is None:
                    continue
                if not os.path.isabs(d):
                    p.append(f"rootfs: {d!r} is not an absolute path")
                elif not os.path.isdir(d):
                    p.append(f"rootfs: directory {d} does not exist")
                elif ":" in d or "," in d:
                    p.append(f"rootfs: overlay paths cannot contain ':' or ',': {d}")
        elif not r.path:
            p.append("rootfs: neither a path nor overlay lowerdirs given")
        elif not os.path.isabs(r.path) or not os.path.isdir(r.path):
            p.append(f"rootfs: {r.path!r} is not an existing absolute directory")
        pr = self.process
        if not pr.argv or not pr.argv[0]:
            p.append("process: argv is empty")
        if not pr.cwd.startswith("/"):
            p.append(f"process: cwd {pr.cwd!r} is not absolute")
        for e in pr.env:
            if "=" not in e or e.startswith("="):
                p.append(f"process: env entry {e!r} is not NAME=value")
        for name, v in (("uid", pr.uid), ("gid", pr.gid), *(("additional gid", g) for g in pr.additional_gids)):
            if not 0 <= v < 2**32 - 1:
                p.append(f"process: {name} {v} out of range")
        if pr.terminal_size is not None and (len(pr.terminal_size) != 2 or min(pr.terminal_size) < 0):
            p.append("process: terminal_size must be (rows, columns)")
        for m in self.mounts:
            where = f"mount {m.target!r}"
            if m.kind not in MOUNT_KINDS:
                p.append(f"{where}: unknown kind {m.kind!r} (one of {', '.join(MOUNT_KINDS)})")
            if not m.target.startswith("/") or m.target == "/":
                p.append(f"{where}: target must be an absolute path below /")
            if ".." in m.target.split("/"):
                p.append(f"{where}: target must not contain '..'")
            if m.kind == "bind":
                if not os.path.isabs(m.source):
                    p.append(f"{where}: bind source {m.source!r} is not an absolute path")
                elif not os.path.exists(m.source):
                    p.append(f"{where}: bind source {m.source} does not exist")
        if self.network not in NETWORKS:
            p.append(f"network: {self.network!r} is not one of {', '.join(NETWORKS)}")
        for ns in self.namespaces:
            if ns not in NAMESPACES:
                p.append(f"namespaces: unknown namespace {ns!r}")
        if self.netns_path is not None and (self.network != "none" or not os.path.isabs(self.netns_path)):
            p.append("netns_path: an absolute path, with network 'none' (the namespace replaces a fresh one)")
        if self.interface is not None:
            import _socket
            try:
                addr, plen, gw = self.interface
                _socket.inet_aton(addr), _socket.inet_aton(gw)
                if not (isinstance(plen, int) and 0 < plen < 31) or addr.count(".") != 3 or gw.count(".") != 3:
                    raise ValueError
            except (ValueError, TypeError, OSError):
                p.append(f"interface: {self.interface!r} is not (IPv4 address, prefix length, gateway)")
            if self.network != "none" or self.netns_path is not None:
                p.append("interface: needs network 'none' (a fresh namespace) and no netns_path")
        if self.hosts_file is not None and not os.path.isfile(self.hosts_file):
            p.append(f"hosts_file: {self.hosts_file} is not a file")
        if "net" in self.namespaces and self.network == "host":
            p.append("namespaces: 'net' conflicts with network 'host'")
        if "mount" not in self.namespaces:
            p.append("namespaces: 'mount' is required (the rootfs is built in a private mount table)")
        if not self.hostname or len(self.hostname) > 64 or "/" in self.hostname:
            p.append(f"hostname: {self.hostname!r} is not a valid host name")
        for label, maps in (("uid_map", self.uid_map), ("gid_map", self.gid_map)):
            if maps and "user" not in self.namespaces:
                p.append(f"{label}: id maps need the 'user' namespace")
            for m in maps:
                if m.size < 1 or m.container_id < 0 or m.host_id < 0:
                    p.append(f"{label}: bad mapping {m}")
        lim = self.limits
        if lim.memory_bytes is not None and lim.memory_bytes < 4 * 1024 * 1024:
            p.append("limits: memory_bytes below 4 MiB cannot start a process")
        if lim.cpu_quota is not None and not lim.cpu_quota > 0:
            p.append("limits: cpu_quota must be > 0 (CPUs)")
        if lim.pids is not None and lim.pids < 1:
            p.append("limits: pids must be >= 1")
        for rl in self.rlimits:
            if rl.resource not in RLIMITS:
                p.append(f"rlimits: unknown resource {rl.resource!r}")
            if rl.soft > rl.hard:
                p.append(f"rlimits: {rl.resource} soft limit above hard limit")
        if self.timeout is not None and not self.timeout > 0:
            p.append("timeout must be > 0 seconds")
        for c in self.capabilities:
            if c not in CAPABILITY_NUMBERS:
                p.append(f"capabilities: unknown capability {c!r}")
        if self.seccomp not in ("default", "unconfined"):
            from runtime.seccomp import ProfileError, parse_profile
            try:
                parse_profile(self.seccomp)
            except ProfileError as e:
                p.append(f"seccomp: {e}")
        if self.etc_files_dir is not None and not (os.path.isabs(self.etc_files_dir) and os.path.isdir(self.etc_files_dir)):
            p.append(f"etc_files_dir: {self.etc_files_dir!r} is not an existing absolute directory")
        for name, addr in self.extra_hosts:
            if not name or any(ch.isspace() for ch in name + addr):
                p.append(f"extra_hosts: bad entry {name!r} {addr!r}")
        return p

    def check(self) -> None:
        """Raise ConfigError listing every problem, if any."""
        problems = self.validate()
        if problems:
            raise ConfigError(problems)

    # --- serialization ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> "SandboxConfig":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ConfigError([f"not JSON: {e}"]) from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SandboxConfig":
        try:
            return _build(cls, data)
        except (TypeError, KeyError, ValueError) as e:
            raise ConfigError([f"malformed config: {e}"]) from None


def _plain(v: Any) -> Any:
    if is_record(v):
        return {n: _plain(getattr(v, n)) for n in fields(v)}
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v


_NESTED: dict[tuple[type, str], type] = {
    (SandboxConfig, "rootfs"): Rootfs, (SandboxConfig, "process"): Process,
    (SandboxConfig, "limits"): Limits,
}
_NESTED_LISTS: dict[tuple[type, str], type] = {
    (SandboxConfig, "mounts"): Mount, (SandboxConfig, "uid_map"): IdMap,
    (SandboxConfig, "gid_map"): IdMap, (SandboxConfig, "rlimits"): Rlimit,
}


def _build(cls: type, data: dict[str, Any]) -> Any:
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} must be an object, got {type(data).__name__}")
    known = set(fields(cls))
    unknown = set(data) - known
    if unknown:
        raise KeyError(f"unknown field(s) for {cls.__name__}: {', '.join(sorted(unknown))}")
    kw: dict[str, Any] = {}
    for k, v in data.items():
        if (cls, k) in _NESTED:
            v = _build(_NESTED[(cls, k)], v)
        elif (cls, k) in _NESTED_LISTS:
            v = tuple(_build(_NESTED_LISTS[(cls, k)], x) for x in v)
        elif isinstance(v, list):
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        kw[k] = v
    return cls(**kw)
