"""cgroups: memory, cpu and pids limits for one sandbox, through v2 where the controller is
enabled and v1 otherwise (hybrid machines have v1 controllers next to an empty unified tree).

Owns: creating the per-sandbox cgroup directories below the caller's own cgroup, writing
the limits, telling whether the OOM killer struck, and removing the directories. Must not:
move a sandbox's processes itself (the init child joins by writing "0" to the cgroup.procs
files this returns, before it forks anything; the one move here is of the processes of a v2
cgroup that must delegate, into its leaf pybuild-init, see _v2_parent) or import builder.
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
        """True if the OOM killer struck anywhere below the limit (v1 counts a kill in the
        victim's own cgroup: the leaf, or one the container made below it)."""
        for path, key in self.oom_files:
            base = os.path.basename(path)
            for d in _subtree_bottom_up(os.path.dirname(path)):
                try:
                    with open(f"{d}/{base}") as f:
                        for line in f:
                            k, _, v = line.partition(" ")
                            if k == key and int(v) > 0:
                                return True
                except OSError:
                    continue
        return False

    def remove(self) -> None:
        """rmdir every directory with the cgroups below it (the container's leaf, and any the
        container made inside that); processes that were just killed may take a moment to leave."""
        for top in self.dirs:
            for d in _subtree_bottom_up(top):
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


def _subtree_bottom_up(top: str) -> list[str]:
    """`top` and the cgroup directories below it, deepest first (a cgroup fs lists only
    cgroups as directories)."""
    out: list[str] = []
    try:
        for e in os.scandir(top):
            if e.is_dir(follow_symlinks=False):
                out += _subtree_bottom_up(e.path)
    except (FileNotFoundError, NotADirectoryError):
        return out
    out.append(top)
    return out


# The container's process joins a leaf `c` below the cgroup that holds the limits. With a
# cgroup namespace made after the join, that leaf is the root of every cgroup hierarchy the
# container can see or mount; the limit files of its own root are writable to root inside
# (no capability check guards pids.max or memory.limit_in_bytes), but a limit written there
# only narrows: the parent's limits hold for the whole subtree, and the parent is out of
# the namespace's reach.
LEAF = "c"


def _make_dir(cg: "Cgroup", parent: str, name: str) -> str:
    """The container's cgroup `name` under `parent` (stale siblings of dead builders collected
    first), recorded in `cg` for removal."""
    _collect_stale(parent)
    d = f"{parent}/{name}"
    try:
        os.mkdir(d)
    except OSError as e:
        raise SandboxError(f"cgroup: cannot create {d}: {e.strerror}") from None
    cg.dirs.append(d)
    return d


def mount_points() -> tuple[str | None, dict[str, str]]:
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
    """Make the container's cgroups: for each limit that is set, a cgroup holding it with the
    container's leaf below, and in every other hierarchy with knobs (see _own_hierarchies) a
    cgroup of the container's own. None when no limit is set: the container then stays in the
    sandbox home of its fork server (sandbox_home), as joining any cgroup costs a RCU grace
    period (0.3 ms idle, 5-20 ms on a loaded machine) on the start of every sandbox. RUN steps
    always have a pids limit (the engine's default), so each gets cgroups of its own;
    `pybuild run` without limits has its fork server, and so its home, to itself."""
    wanted = {"memory": memory_bytes, "cpu": cpu_quota, "pids": pids}
    wanted = {k: v for k, v in wanted.items() if v is not None}
    if not wanted:
        return None
    if _not_host_root():
        why = limit_unavailable(sorted(wanted))
        if why:
            raise SandboxError(f"cgroup: {why}")
    v2_mount, v1_mounts = mount_points()
    own = _own_paths()
    cg = Cgroup()
    try:
        v2_dir, v2_ctrls = None, set()
        if v2_mount is not None and not all(c in v1_mounts for c in wanted):
            own_dir = v2_mount + own.get("", "/").rstrip("/")
            try:
                with open(own_dir + "/cgroup.controllers") as f:
                    avail = set(f.read().split())
            except OSError:
                avail = set()
            v2_ctrls = avail & set(wanted)
            parent = _v2_parent(v2_mount, own_dir, v2_ctrls) if v2_ctrls else None
            if parent == own_dir:
                # best effort, every controller pybuild uses, not just this call's: a later
                # call (from the leaf _v2_parent moved us into) finds them all for its siblings
                _enable(own_dir, avail & {"memory", "cpu", "pids"})
            if parent is None:
                v2_ctrls = set()
            else:
                v2_dir = _make_dir(cg, parent, name)
                cg.procs_files.append(_make_leaf(v2_dir))
        for ctrl, value in wanted.items():
            if ctrl in v2_ctrls and v2_dir:
                _limit_v2(v2_dir, ctrl, value, cg)
                continue
            if ctrl not in v1_mounts:
                raise SandboxError(f"cgroup: no {ctrl} controller (neither cgroup v2 nor v1) to limit {ctrl}")
            d = _make_dir(cg, f"{v1_mounts[ctrl]}{own.get(ctrl, '/').rstrip('/')}", name)
            _limit_v1(d, ctrl, value, cg)
            cg.procs_files.append(_make_leaf(d))
        done = {v1_mounts[c] for c in wanted if c in v1_mounts and c not in v2_ctrls}
        if v2_dir:
            done.add(v2_mount)
        for parent in _own_hierarchies(v2_mount, v1_mounts, own, done):
            d = _make_dir(cg, parent, name)
            _inherit_cpuset(d)
            cg.procs_files.append(d + "/cgroup.procs")
    except BaseException:
        cg.remove()
        raise
    return cg if cg.dirs else None


def _own_hierarchies(v2_mount: str | None, v1_mounts: dict[str, str], own: dict[str, str],
                     done: set[str]) -> list[str]:
    """The parents (this process's cgroup) in each hierarchy where the container gets a cgroup
    of its own although no limit is set: every v1 hierarchy with a controller that has knobs,
    and the unified tree (cgroup.freeze, cgroup.max.*), unless not writable here (rootless).
    Left to the shared sandbox home (sandbox_home): devices (its rules need CAP_SYS_ADMIN of
    the host to change) and named hierarchies without controllers (name=systemd: no knobs).
    Without this the cgroup namespace's root in those hierarchies would be a cgroup other
    processes live in: a RUN could mount it and freeze, throttle or limit them."""
    by_mount: dict[str, set[str]] = {}
    for opt, mnt in v1_mounts.items():
        by_mount.setdefault(mnt, set()).add(opt)
    out = []
    for mnt, opts in by_mount.items():
        if mnt in done or not (opts & _controllers()) - {"devices"}:
            continue
        ctrl = next(iter(opts & _controllers()))
        if ctrl in own:
            out.append(mnt + own[ctrl].rstrip("/"))
    if v2_mount is not None and v2_mount not in done and "" in own:
        out.append(v2_mount + own[""].rstrip("/"))
    return [p for p in out if os.access(p, os.W_OK)]


_ctrl_names: set[str] | None = None


def _controllers() -> set[str]:
    """The kernel's cgroup controllers (/proc/cgroups), read once."""
    global _ctrl_names
    if _ctrl_names is None:
        try:
            with open("/proc/cgroups") as f:
                _ctrl_names = {ln.split()[0] for ln in f if ln.strip() and not ln.startswith("#")}
        except OSError:
            _ctrl_names = set()
    return _ctrl_names


def _make_leaf(d: str) -> str:
    leaf = f"{d}/{LEAF}"
    try:
        os.mkdir(leaf)
    except OSError as e:
        raise SandboxError(f"cgroup: cannot create {leaf}: {e.strerror}") from None
    _inherit_cpuset(leaf)
    return leaf + "/cgroup.procs"


def _inherit_cpuset(d: str) -> None:
    """A new v1 cpuset cgroup starts with no CPUs and no memory nodes (nothing can join it)
    unless its parent clones them: copy the parent's."""
    if not os.path.exists(d + "/cpuset.cpus"):
        return
    parent = os.path.dirname(d)
    for f in ("cpuset.cpus", "cpuset.mems"):
        with open(f"{parent}/{f}") as src:
            value = src.read().strip()
        if value:
            _write(f"{d}/{f}", value)


# --- the sandbox home: one cgroup per hierarchy for all sandboxes of this process ---------
# Docker's device rules (runc's default allow list) after "deny a": the standard nodes only.
# Unlike docker, no "c *:* m" / "b *:* m": mknod of any other node is refused (EPERM), as
# issue 14 asks; opening one would be refused either way.
ALLOWED_DEVICES = ("c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",  # null zero full random urandom
                   "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm",  # tty console ptmx pts/*
                   "c 10:200 rwm")  # net/tun
HOME_SUFFIX = "home"


def sandbox_home() -> list[str]:
    """The cgroup.procs files of this process's sandbox home: `pybuild-PID-home` below this
    process's own cgroup in every hierarchy (v1 controllers, named ones, the unified tree),
    the devices one holding docker's device rules. A sandbox joins it before its cgroup
    namespace is made, so no hierarchy shows it the builder's (or the host's) cgroup, and
    the device rules hold for it (widening them needs CAP_SYS_ADMIN of the host, which no
    sandbox has). The fork server joins it once (runtime.init.zygote_main), so a sandbox
    start pays nothing; a cgroup migration costs a RCU grace period (~2 ms here).
    [] where the cgroup trees are not ours to write (rootless); a stale home of a process
    that is gone is removed on the way."""
    v2, v1 = mount_points()
    own = _own_paths()
    parents: dict[str, str] = {}
    for ctrl, mnt in v1.items():
        if ctrl in own and mnt not in parents:
            parents[mnt] = mnt + own[ctrl].rstrip("/")
    if v2 is not None and "" in own:
        parents[v2] = v2 + own[""].rstrip("/")
    name = f"pybuild-{os.getpid()}-{HOME_SUFFIX}"
    procs: list[str] = []
    for parent in parents.values():
        if not os.access(parent, os.W_OK):
            continue
        _collect_stale(parent)
        d = f"{parent}/{name}"
        try:
            os.mkdir(d)
        except FileExistsError:
            pass
        except OSError:
            continue  # not ours (a delegated subtree that stops above): leave that tree alone
        _inherit_cpuset(d)
        if os.path.exists(d + "/devices.deny"):
            _write(d + "/devices.deny", "a")
            for rule in ALLOWED_DEVICES:
                _write(d + "/devices.allow", rule)
        procs.append(d + "/cgroup.procs")
    return procs


_home: list[str] | None = None


def sandbox_home_once() -> list[str]:
    """sandbox_home(), made once per process."""
    global _home
    if _home is None:
        _home = sandbox_home()
    return _home


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
        for d in _subtree_bottom_up(os.path.join(parent, name)):
            try:
                os.rmdir(d)
            except OSError:
                break


def _not_host_root() -> bool:
    from runtime.namespaces import userns_root
    return os.geteuid() != 0 or userns_root()


def limit_unavailable(ctrls: tuple[str, ...] | list[str]) -> str | None:
    """Why a limit on one of `ctrls` ("memory", "cpu", "pids") cannot be set by this process,
    or None when it can: a non-root user (pybuild's rootless re-exec included) may only write
    a cgroup that was delegated to it. The message names what is missing, for one line."""
    try:
        v2_mount, v1_mounts = mount_points()
        own = _own_paths()
    except OSError as e:
        return f"cannot read this process's cgroups: {e.strerror}"
    for ctrl in ctrls:
        v2_dir = v2_mount + own.get("", "/").rstrip("/") if v2_mount is not None else None
        if v2_dir is not None and ctrl not in v1_mounts:
            try:
                with open(v2_dir + "/cgroup.controllers") as f:
                    have = ctrl in f.read().split()
            except OSError:
                have = False
            # ours to delegate from, or a sibling below our parent (see _v2_parent)
            if have and (os.access(v2_dir + "/cgroup.subtree_control", os.W_OK)
                         or os.access(os.path.dirname(v2_dir), os.W_OK)):
                continue
            if not have and os.access(v2_dir, os.W_OK):
                return (f"a {ctrl} limit needs the {ctrl} controller, and it is not enabled for {v2_dir} "
                        f"(add +{ctrl} to cgroup.subtree_control of the cgroup above it)")
            where = v2_dir
        elif ctrl in v1_mounts:
            where = f"{v1_mounts[ctrl]}{own.get(ctrl, '/').rstrip('/')}"
            if os.access(where, os.W_OK):
                continue
        else:
            return f"no {ctrl} cgroup controller on this host"
        return (f"a {ctrl} limit needs a writable cgroup, and {where} is not writable by this user "
                "(rootless: run under a delegated cgroup v2 subtree, e.g. systemd-run --user --scope "
                "-p Delegate=yes, or give the user a writable cgroup)")
    return None


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
    #    cgroup.controllers), hence to any new child of it as well, if we may make one there
    if own_dir != mount and os.access(os.path.dirname(own_dir), os.W_OK):
        return os.path.dirname(own_dir)
    # 3. our cgroup is ours but its parent is not: the root of a cgroup namespace (a
    #    container), or a subtree delegated to this user (systemd's Delegate=yes, rootless).
    #    Its processes move into a leaf, as docker-in-docker entrypoints do and as systemd
    #    asks of a delegatee ("no processes in inner nodes"), then it delegates.
    if not os.access(own_dir, os.W_OK):
        return None
    leaf = own_dir + "/pybuild-init"
    for _ in range(10):  # a process forked meanwhile lands in own_dir: move it too
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
        if _enable(own_dir, ctrls):
            return own_dir
    return None


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
