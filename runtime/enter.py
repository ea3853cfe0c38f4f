"""Joining a running sandbox: what `pybuild exec` does (nsenter's job, for our containers).

Owns: running one more process inside the namespaces of a live container, given its pid 1
as the host sees it: the container's cgroups first, then its user namespace (only if it has
its own), ipc, uts, net, pid, cgroup and mount namespaces, its root (fchdir + chroot to
/proc/PID/root opened before the switch), then, as a child (a pid namespace applies to
children only), the same capability bounding set, no_new_privs, ids and umask the container's
process got (runtime.become.become_process, with a plan made by runtime.prepare, so whatever
init applies to the container applies here too) and the exec. With a tty the process makes
its pty on the container's devpts and hands the master back, as a container start does.
Must not: be called from a threaded process (setns of a mount or user namespace refuses
threaded callers: the CLI calls it before starting any thread) or import builder.
"""
from __future__ import annotations

import marshal
import os
import select
import signal

from runtime import syscalls as sc
from runtime.config import Process, Rootfs, SandboxConfig
from runtime.errors import NamespaceError, SandboxError
from runtime.record import replace

# setns order as nsenter does it: the user namespace first (it owns the others), mount last
# but one (after it, /proc/PID paths are resolved in the container's view).
_ORDER = (("user", sc.CLONE_NEWUSER), ("cgroup", sc.CLONE_NEWCGROUP), ("ipc", sc.CLONE_NEWIPC),
          ("uts", sc.CLONE_NEWUTS), ("net", sc.CLONE_NEWNET), ("pid", sc.CLONE_NEWPID), ("mnt", sc.CLONE_NEWNS))


def _cgroup_procs(pid: int) -> list[str]:
    """The cgroup.procs files of the cgroups `pid` is in (v2 and each v1 hierarchy)."""
    from runtime.cgroups import mount_points

    v2, mounts_v1 = mount_points()
    with open("/proc/self/cgroup") as f:
        ours = set(f.read().splitlines())
    out = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            if line.rstrip("\n") in ours:
                continue  # already there (rootless: the container shares its monitor's cgroups)
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            base = v2 if not ctrls else next((mounts_v1[c] for c in ctrls.split(",") if c in mounts_v1), None)
            if base and not path.startswith("/.."):
                p = base + path.rstrip("/") + "/cgroup.procs"
                if os.path.exists(p):
                    out.append(p)
    return out


def enter(pid: int, config: SandboxConfig, process: Process, *, stdin: int | None, stdout: int = 1,
          stderr: int = 2) -> int:
    """Run `process` in the container whose pid 1 is `pid` (its sandbox `config`); return its
    exit status (128+N when killed by signal N). stdin None = /dev/null. With process.tty the
    output comes through a pty on the container's devpts (relayed to `stdout`)."""
    fds: list[tuple[int, int]] = []
    try:
        for name, flag in _ORDER:
            ours, theirs = os.stat(f"/proc/self/ns/{name}"), os.stat(f"/proc/{pid}/ns/{name}")
            if (ours.st_dev, ours.st_ino) != (theirs.st_dev, theirs.st_ino):
                fds.append((os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), flag))
        root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        procs = _cgroup_procs(pid)
    except OSError as e:
        for fd, _ in fds:
            os.close(fd)
        raise SandboxError(f"cannot enter the container (pid {pid}): {e.strerror}") from None
    console_ours = console_theirs = -1
    if process.tty:
        import socket  # (here: its import is ~2.5 ms of `exec`'s start-up, and only -t needs it)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        console_ours, console_theirs = a.detach(), b.detach()
    status_r, status_w = os.pipe()
    plan_r, plan_w = os.pipe()
    # The child starts before the plan is made: its first step, the cgroup join, costs a RCU
    # grace period (0.3 ms idle, 5-20 ms on a loaded machine), which so overlaps the plan's
    # making (and its imports) here. The plan follows on a pipe.
    child = os.fork()
    if child == 0:
        try:
            os.close(status_r)
            os.close(plan_w)
            if console_ours >= 0:
                os.close(console_ours)
            _child(plan_r, fds, root, procs, stdin, stdout, stderr, console_theirs, status_w)
        except BaseException as e:  # noqa: BLE001
            try:
                os.write(status_w, f"{e}".encode())
            except OSError:
                pass
        os._exit(126)
    os.close(plan_r)
    os.close(status_w)
    for fd, _ in fds:
        os.close(fd)
    os.close(root)
    if console_theirs >= 0:
        os.close(console_theirs)
    try:
        from runtime.prepare import make_plan

        # make_plan's view of the container's sandbox: capability mask, rlimits, no_new_privs,
        # whatever else init applies before the exec. (rootfs "/" only to skip the overlay parts.)
        plan = make_plan(replace(config, rootfs=Rootfs(path="/"), process=process), "/nonexistent", [])
        data = marshal.dumps(plan)
        try:
            while data:
                data = data[os.write(plan_w, data):]
        except BrokenPipeError:
            pass  # the child failed before it read the plan: its error is on the status pipe
    except BaseException:
        os.close(plan_w)
        _kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(status_r)
        if console_ours >= 0:
            os.close(console_ours)
        raise
    os.close(plan_w)
    old = {s: signal.signal(s, lambda n, _f: _kill(child, n)) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        if console_ours >= 0:
            _relay_tty(console_ours, stdin, stdout)
        _, st = os.waitpid(child, 0)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    err = b""
    while chunk := os.read(status_r, 4096):
        err += chunk
    os.close(status_r)
    if err:
        from runtime.errors import ExecError
        raise ExecError(err.decode(errors="replace"))
    return 128 + os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.waitstatus_to_exitcode(st)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _child(plan_r: int, fds, root: int, procs: list[str], stdin, stdout, stderr, console: int, status_w: int) -> None:
    from runtime import become, namespaces
    namespaces.join_cgroups(procs)
    for fd, flag in fds:
        try:
            sc.setns(fd, flag)
        except OSError as e:
            raise NamespaceError(f"setns into the container: {e.strerror}") from None
    os.fchdir(root)
    os.chroot(".")
    os.set_inheritable(status_w, False)
    chunks = []
    while chunk := os.read(plan_r, 1 << 16):
        chunks.append(chunk)
    os.close(plan_r)
    if not chunks:
        raise SandboxError("no plan to run (the caller failed)")
    plan = marshal.loads(b"".join(chunks))
    if console >= 0:
        os.dup2(console, 0)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 1)
        os.dup2(null, 2)
    else:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin if stdin is not None else null, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
    grandchild = os.fork()  # only children enter the pid namespace
    if grandchild == 0:
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        try:
            become.become_process(plan)
        except SandboxError as e:
            os.write(status_w, str(e).encode())
        os._exit(127)
    os.close(status_w)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda n, _f: _kill(grandchild, n))
    _, st = os.waitpid(grandchild, 0)
    if os.WIFSIGNALED(st):
        os._exit(128 + os.WTERMSIG(st))
    os._exit(os.waitstatus_to_exitcode(st))


def _relay_tty(console: int, stdin: int | None, stdout: int) -> None:
    import socket

    from runtime import stdio as stdio_
    sock = socket.socket(fileno=console)
    try:
        _msg, got, _f, _a = socket.recv_fds(sock, 1, 1, socket.MSG_CMSG_CLOEXEC)
    except OSError:
        got = []
    sock.close()
    if not got:
        return
    master = got[0]
    restore = stdio_.make_raw(stdin) if stdin is not None else None
    size = stdio_.terminal_size(stdin) if stdin is not None else None
    if size:
        stdio_.set_winsize(master, size)
    try:
        watch = [master] + ([stdin] if stdin is not None else [])
        while True:
            r, _, _ = select.select(watch, [], [])
            if master in r:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    return
                stdio_.write_all(stdout, data)
            if stdin is not None and stdin in r:
                data = os.read(stdin, 65536)
                if not data:
                    watch.remove(stdin)
                else:
                    stdio_.write_all(master, data)
    finally:
        if restore:
            restore()
        os.close(master)

