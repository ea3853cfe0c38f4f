"""OCI runtime bundle export: a SandboxConfig + a rootfs dir -> config.json + rootfs/ that
runc, crun (or any OCI runtime) starts with `runc run --bundle DIR ID`.

Owns: translating SandboxConfig into the OCI runtime spec's config.json (process, root,
hostname, mounts, linux.namespaces/idMappings/resources/maskedPaths/readonlyPaths) and
writing the bundle. Must not: start anything (the CLI wires `pybuild bundle IMAGE DIR`),
or import builder. The spec words and Docker's defaults are facts learned from the
runtime-spec and runc's `spec` template; the code is ours.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from runtime.config import SandboxConfig
from runtime.copytree import copy_tree, merge_layers
from runtime.errors import SandboxError
from runtime.mounts import PROC_MASKED, PROC_READONLY
from runtime.prepare import private_files  # the same /etc files the sandbox binds
from runtime.seccomp import oci_seccomp

OCI_VERSION = "1.0.2"
_NS_TYPES = {"mount": "mount", "pid": "pid", "uts": "uts", "ipc": "ipc", "net": "network",
             "cgroup": "cgroup", "user": "user"}
_RLIMIT_TYPES = {"cpu": "RLIMIT_CPU", "fsize": "RLIMIT_FSIZE", "data": "RLIMIT_DATA", "stack": "RLIMIT_STACK",
                 "core": "RLIMIT_CORE", "rss": "RLIMIT_RSS", "nproc": "RLIMIT_NPROC", "nofile": "RLIMIT_NOFILE",
                 "memlock": "RLIMIT_MEMLOCK", "as": "RLIMIT_AS", "locks": "RLIMIT_LOCKS",
                 "sigpending": "RLIMIT_SIGPENDING", "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE",
                 "rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME"}


def oci_config(config: SandboxConfig, *, root_path: str = "rootfs", etc_dir: str | None = None) -> dict:
    """The config.json document for `config` (etc_dir: where hosts/resolv.conf/hostname live)."""
    p = config.process
    caps = list(config.capabilities)
    process: dict = {
        "terminal": p.tty,
        "user": {"uid": p.uid, "gid": p.gid, **({"additionalGids": list(p.additional_gids)} if p.additional_gids else {})},
        "args": list(p.argv),
        "env": list(p.env),
        "cwd": p.cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": config.no_new_privileges,
    }
    if p.umask != 0o022:
        process["user"]["umask"] = p.umask
    if p.tty and p.terminal_size:
        process["consoleSize"] = {"height": p.terminal_size[0], "width": p.terminal_size[1]}
    if config.rlimits:
        process["rlimits"] = [{"type": _RLIMIT_TYPES[r.resource], "soft": r.soft, "hard": r.hard} for r in config.rlimits]
    mounts: list[dict] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
         + ([] if "user" in config.namespaces else ["gid=5"])},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]
    if etc_dir:
        for name in ("hosts", "resolv.conf", "hostname"):
            mounts.append({"destination": f"/etc/{name}", "type": "bind", "source": f"{etc_dir}/{name}",
                           "options": ["bind", "rprivate"]})
    for m in config.mounts:
        opts = [o for o in m.options if o != "rbind"]
        if m.kind == "bind":
            opts = ["rbind" if "rbind" in m.options else "bind", *opts]
        if m.readonly:
            opts.append("ro")
        mounts.append({"destination": m.target, "type": m.kind, "source": m.source or m.kind, "options": opts})
    namespaces = [{"type": _NS_TYPES[n]} for n in config.namespaces if n != "net"]
    if config.network == "none":
        namespaces.append({"type": "network"})
    linux: dict = {
        "namespaces": namespaces,
        "maskedPaths": list(PROC_MASKED),
        "readonlyPaths": list(PROC_READONLY),
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
    }
    seccomp = oci_seccomp(config.seccomp, config.capabilities)
    if seccomp is not None:
        linux["seccomp"] = seccomp
    if config.uid_map:
        linux["uidMappings"] = [{"containerID": m.container_id, "hostID": m.host_id, "size": m.size} for m in config.uid_map]
    if config.gid_map:
        linux["gidMappings"] = [{"containerID": m.container_id, "hostID": m.host_id, "size": m.size} for m in config.gid_map]
    lim = config.limits
    if lim.memory_bytes is not None:
        linux["resources"]["memory"] = {"limit": lim.memory_bytes}
    if lim.cpu_quota is not None:
        linux["resources"]["cpu"] = {"quota": int(lim.cpu_quota * 100_000), "period": 100_000}
    if lim.pids is not None:
        linux["resources"]["pids"] = {"limit": lim.pids}
    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": root_path, "readonly": config.readonly_rootfs},
        "hostname": config.hostname,
        "mounts": mounts,
        "linux": linux,
    }


def write_bundle(config: SandboxConfig, rootfs_dir: str | os.PathLike | None, dest: str | os.PathLike) -> Path:
    """Write an OCI runtime bundle at `dest`: config.json, rootfs/ (a faithful copy of
    rootfs_dir; with rootfs_dir None, the config's overlay lowerdirs flattened, or its plain
    path) and etc/ (hosts, resolv.conf, hostname, bind-mounted like the sandbox does).
    `dest` must not exist or be empty. Returns dest."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise SandboxError(f"bundle directory {dest} is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    tmp_root = dest / ".rootfs.tmp"
    try:
        if rootfs_dir is not None:
            copy_tree(os.fspath(rootfs_dir), os.fspath(tmp_root))
        elif config.rootfs.is_overlay:
            merge_layers(config.rootfs.lowerdirs, os.fspath(tmp_root))
            if config.rootfs.upperdir:
                merge_layers((config.rootfs.upperdir,), os.fspath(tmp_root))
        elif config.rootfs.path:
            copy_tree(config.rootfs.path, os.fspath(tmp_root))
        else:
            raise SandboxError("bundle: no rootfs to copy")
        os.rename(tmp_root, dest / "rootfs")
    except OSError as e:
        shutil.rmtree(tmp_root, ignore_errors=True)
        raise SandboxError(f"bundle: copying the rootfs into {dest}: {e.strerror}: {e.filename}") from None
    etc = dest / "etc"
    etc.mkdir()
    for name, text in private_files(config).items():
        _atomic_write(etc / name, text.encode())
    doc = oci_config(config, root_path="rootfs", etc_dir=str(etc.resolve()))
    _atomic_write(dest / "config.json", (json.dumps(doc, indent=2) + "\n").encode())
    return dest


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
