"""cgroups: memory, cpu and pids limits for one sandbox, through v2 where the controller is
enabled and v1 otherwise (hybrid machines have v1 controllers next to an empty unified tree).

Owns: creating the per-sandbox cgroup directories below the caller's own cgroup, writing
the limits, telling whether the OOM killer struck, and removing the directories. Must not:
move processes itself (the init child joins by writing "0" to the cgroup.procs files this
returns, before it forks anything) or import builder.
"""
from __future__ import annotations

import errno
import os
import time

from runtime.errors import SandboxError
from runtime.record import Record, field

CPU_PERIOD_US = 100_000


class Cgroup(Record, frozen=False):
    """The directories of one sandbox; `procs_files` are what the child writes itself into."""

    dirs: list[str] = field(default_factory=list)
    procs_files: list[str] = field(default_factory=list)
    oom_files: list[tuple[str, str]] = field(default_factory=list)  # (file, key holding the count)

    def oom_killed(self) -> bool:
        for path, key in self.oom_files:
            try:
                with open(path) as f:
                    for line in f:
                        k, _, v = line.partition(" ")
                        if k == key and int(v) > 0:
                            return True
            except OSError:
                continue
        return False

    def remove(self) -> None:
        """rmdir every directory; processes that were just killed may take a moment to leave."""
        for d in self.dirs:
            for attempt in range(100):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or attempt == 99:
                        raise SandboxError(f"cannot remove cgroup {d}: {e.strerror}") from None
                    time.sleep(0.01)
        self.dirs.clear()


def _mounts() -> tuple[str | None, dict[str, str]]:
    """(cgroup2 mount point or None, {v1 controller: mount point})."""
    v2, v1 = None, {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fstype, _, opts = post.split(" ", 2)
            mnt = pre.split(" ")[4]
            if fstype == "cgroup2" and v2 is None:
                v2 = mnt
            elif fstype == "cgroup":
                for o in opts.strip().split(","):
                    v1.setdefault(o, mnt)
    return v2, v1


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and "" -> the v2 path."""
    out: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                out[c] = path
    return out


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise SandboxError(f"cgroup: writing {value!r} to {path}: {e.strerror}") from None


def create(name: str, memory_bytes: int | None, cpu_quota: float | None, pids: int | None) -> Cgroup | None:
    """Make the cgroups for the limits that are set (None when no limit is set at all)."""
    wanted = {"memory": memory_bytes, "cpu": cpu_quota, "pids": pids}
    wanted = {k: v for k, v in wanted.items() if v is not None}
    if not wanted:
        return None
    v2_mount, v1_mounts = _mounts()
    own = _own_paths()
    cg = Cgroup()
    try:
        v2_dir, v2_ctrls = None, set()
        if v2_mount is not None and not all(c in v1_mounts for c in wanted):
            own_dir = v2_mount + own.get("", "/").rstrip("/")
            try:
                with open(own_dir + "/cgroup.controllers") as f:
                    v2_ctrls = set(f.read().split()) & set(wanted)
            except OSError:
                v2_ctrls = set()
            parent = _v2_parent(v2_mount, own_dir, v2_ctrls) if v2_ctrls else None
            if parent is None:
                v2_ctrls = set()
            else:
                _collect_stale(parent)
                v2_dir = f"{parent}/{name}"
                try:
                    os.mkdir(v2_dir)
                except OSError as e:
                    raise SandboxError(f"cgroup: cannot create {v2_dir}: {e.strerror}") from None
                cg.dirs.append(v2_dir)
                cg.procs_files.append(v2_dir + "/cgroup.procs")
        for ctrl, value in wanted.items():
            if ctrl in v2_ctrls and v2_dir:
                _limit_v2(v2_dir, ctrl, value, cg)
                continue
            if ctrl not in v1_mounts:
                raise SandboxError(f"cgroup: no {ctrl} controller (neither cgroup v2 nor v1) to limit {ctrl}")
            parent = f"{v1_mounts[ctrl]}{own.get(ctrl, '/').rstrip('/')}"
            _collect_stale(parent)
            d = f"{parent}/{name}"
            try:
                os.mkdir(d)
            except OSError as e:
                raise SandboxError(f"cgroup: cannot create {d}: {e.strerror}") from None
            cg.dirs.append(d)
            cg.procs_files.append(d + "/cgroup.procs")
            _limit_v1(d, ctrl, value, cg)
    except BaseException:
        cg.remove()
        raise
    return cg


_collected: set[str] = set()


def _collect_stale(parent: str) -> None:
    """Once per process and parent: remove empty cgroups named pybuild-PID-* whose builder
    is gone (a kill -9 leaves them behind; rmdir fails harmlessly on a busy one)."""
    if parent in _collected:
        return
    _collected.add(parent)
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        pid = name.split("-")[1] if name.startswith("pybuild-") and name.count("-") >= 2 else ""
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            os.rmdir(os.path.join(parent, name))
        except OSError:
            pass


def _enable(d: str, ctrls: set[str]) -> bool:
    try:
        with open(d + "/cgroup.subtree_control", "w") as f:
            f.write(" ".join("+" + c for c in sorted(ctrls)))
        return True
    except OSError:
        return False


def _v2_parent(mount: str, own_dir: str, ctrls: set[str]) -> str | None:
    """A cgroup v2 directory whose new children get `ctrls`, or None. v2 forbids processes
    in a cgroup that delegates controllers (except at the root), hence the three ways:"""
    # 1. our own cgroup, when it may delegate (no processes in it, or the real root)
    if _enable(own_dir, ctrls):
        return own_dir
    # 2. a sibling: our parent delegates these controllers to us (they are in our
    #    cgroup.controllers), hence to any new child of it as well
    if own_dir != mount:
        return os.path.dirname(own_dir)
    # 3. we are the root of a cgroup namespace (a container): move its processes into a
    #    leaf, as docker-in-docker entrypoints do, then delegate from the root
    leaf = own_dir + "/pybuild-init"
    try:
        os.makedirs(leaf, exist_ok=True)
        with open(own_dir + "/cgroup.procs") as f:
            pids = f.read().split()
        for pid in pids:
            try:
                with open(leaf + "/cgroup.procs", "w") as f:
                    f.write(pid)
            except OSError:
                pass  # exited meanwhile, or a kernel thread
    except OSError:
        return None
    return own_dir if _enable(own_dir, ctrls) else None


def _limit_v2(d: str, ctrl: str, value: float | int, cg: Cgroup) -> None:
    if ctrl == "memory":
        _write(f"{d}/memory.max", str(int(value)))
        if os.path.exists(f"{d}/memory.swap.max"):
            _write(f"{d}/memory.swap.max", "0")  # the limit means RAM, not RAM plus swap
        cg.oom_files.append((f"{d}/memory.events", "oom_kill"))
    elif ctrl == "cpu":
        _write(f"{d}/cpu.max", f"{int(value * CPU_PERIOD_US)} {CPU_PERIOD_US}")
    elif ctrl == "pids":
        _write(f"{d}/pids.max", str(int(value)))


def _limit_v1(d: str, ctrl: str, value: float | int, cg: Cgroup) -> None:
    if ctrl == "memory":
        _write(f"{d}/memory.limit_in_bytes", str(int(value)))
        if os.path.exists(f"{d}/memory.memsw.limit_in_bytes"):
            _write(f"{d}/memory.memsw.limit_in_bytes", str(int(value)))
        cg.oom_files.append((f"{d}/memory.oom_control", "oom_kill"))
    elif ctrl == "cpu":
        _write(f"{d}/cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(f"{d}/cpu.cfs_quota_us", str(int(value * CPU_PERIOD_US)))
    elif ctrl == "pids":
        _write(f"{d}/pids.max", str(int(value)))
