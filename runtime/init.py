"""The sandbox's init child: `python -I -S -c 'import runtime.init ...' CFG_FD STATUS_FD [SYNC_FD]`
(also runnable as `python -I -m runtime.init CFG_FD STATUS_FD`), or forked per sandbox by
the fork server `zygote_main` (see runtime.zygote), which is the default.

Owns: the setup sequence inside the new namespaces, as a straight list of named steps,
and the two processes it runs as:
  outer  - outside the new pid namespace: joins the cgroups, unshares, forks the container
           process, forwards signals to it, waits, reports its exit status. It stays in the
           host pid namespace so the parent can signal/kill it and so that pid 1 can die.
  child  - pid 1 of the new pid namespace: builds the root (overlay, /proc, /dev, /sys,
           binds, /etc files), pivot_roots into it, drops privileges and execs the process
           (or, with `init`, stays as a minimal reaping init and runs it as pid 2).
Talks to runtime.sandbox over STATUS_FD, one line per record:
  "S <d|f> <parent mtime ns> <path>"   a mount-point stub created in the rootfs (the parent removes it later)
  "E <kind> <msg>"   setup failed (kind: mount, namespace, exec, sandbox)
  "P <pid>"          the container's pid 1 was forked (its pid in the host's pid namespace)
  "X <code> <sig>"   the process ended (the first X wins)
Must not: import builder, runtime.config (its value classes) or anything slow: every import
here is paid on every container start (`python -X importtime` keeps this honest); the
config arrives as a marshal-ed plain dict (`marshal` is builtin; json would cost ~5 ms).
"""
from __future__ import annotations

import _signal
import marshal
import os
import sys

from runtime import mounts, namespaces
from runtime import syscalls as sc
# (imported here, before pivot_root: the process's last steps, and the signals we forward)
from runtime.become import FORWARDED, KILL_REQUEST, become_process, confine_init
from runtime.errors import ExecError, MountError, NamespaceError, SandboxError



class Status:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, *words: object) -> None:
        line = " ".join(str(w).replace("\n", " ") for w in words) + "\n"
        os.write(self.fd, line.encode("utf-8", "surrogateescape"))

    def fail(self, e: SandboxError) -> None:
        kind = {MountError: "mount", NamespaceError: "namespace", ExecError: "exec"}.get(type(e), "sandbox")
        self.send("E", kind, e)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    cfg_fd, status_fd = int(args[0]), int(args[1])
    sync_fd = int(args[2]) if len(args) > 2 else -1
    for fd in (cfg_fd, status_fd, sync_fd):
        if fd >= 0:
            os.set_inheritable(fd, False)  # close on exec: the container must not see them
    plan = marshal.loads(_read_all(cfg_fd))
    os.close(cfg_fd)
    run_outer(plan, Status(status_fd), sync_fd)


def run_outer(plan: dict, status: Status, sync_fd: int) -> None:
    """outer() with every failure reported on the status pipe; never returns."""
    try:
        outer(plan, status, sync_fd)
    except SandboxError as e:
        status.fail(e)
    except BaseException as e:
        status.send("E", "sandbox", f"internal error in sandbox init: {type(e).__name__}: {e}")
    os._exit(1)


def zygote_main(argv: list[str] | None = None) -> None:
    """The fork server: started once per builder process (by runtime.zygote), it forks one
    `outer` per request, so a sandbox start costs a fork (~0.5 ms) instead of a Python
    start-up (~8 ms + imports). Requests arrive on a SOCK_SEQPACKET socket: one message =
    a marshal-ed plan, with fds [stdin, stdout, stderr, status(, sync)] attached; the reply
    is the outer's pid, with a pidfd for it attached (so the builder can wait for and
    signal a process that is not its child, without pid-reuse races).
    Single-threaded by construction, so fork() here is safe, unlike in the builder."""
    import _socket
    args = sys.argv[1:] if argv is None else argv
    sock_fd, parent_pid = int(args[0]), int(args[1])
    os.set_inheritable(sock_fd, False)
    sc.prctl(sc.PR_SET_PDEATHSIG, _signal.SIGKILL)  # the builder's keeper thread is our parent
    if os.getppid() != parent_pid:
        os._exit(1)
    sock = _socket.socket(fileno=sock_fd)
    # Join the sandbox home cgroups once (runtime.cgroups.sandbox_home): every outer forked
    # below starts in them, with docker's device rules, and no cgroup namespace made later
    # has the builder's own cgroup as its root. Once here, as a migration costs ~2 ms.
    from runtime import cgroups
    try:
        namespaces.join_cgroups(cgroups.sandbox_home())
    except (SandboxError, OSError):
        pass  # rootless or a foreign cgroup layout: the nodev mounts still keep devices out
    # Wake up now and then to reap finished outers (no SIGCHLD handler: one could reap a
    # child between fork() and pidfd_open() below, and the pid could then be reused).
    sock.settimeout(2.0)
    space = _socket.CMSG_SPACE(4 * 8)
    me = os.getpid()
    while True:
        try:
            msg, anc, _flags, _addr = sock.recvmsg(1 << 16, space, _socket.MSG_CMSG_CLOEXEC)
        except (InterruptedError, TimeoutError):
            _reap()
            continue
        if not msg:
            os._exit(0)  # the builder closed its end: it is gone or done
        fds: list[int] = []
        for level, kind, data in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds += [int.from_bytes(data[i:i + 4], sys.byteorder) for i in range(0, len(data) - 3, 4)]
        pid = os.fork()
        if pid == 0:
            sock.close()
            _zygote_child(msg, fds, me)  # never returns
        pidfd = os.pidfd_open(pid)  # before any reaping below: the pid cannot be reused yet
        for fd in fds:
            os.close(fd)
        sock.sendmsg([pid.to_bytes(4, sys.byteorder)],
                     [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, pidfd.to_bytes(4, sys.byteorder))])
        os.close(pidfd)
        _reap()


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _zygote_child(msg: bytes, fds: list[int], server: int) -> None:
    status = None
    try:
        for target, fd in zip((0, 1, 2), fds[:3]):
            os.dup2(fd, target)  # dup2 makes 0-2 inheritable, as stdio must be
        status_fd = os.dup(fds[3])
        sync_fd = os.dup(fds[4]) if len(fds) > 4 else -1
        for fd in fds:
            if fd > 2 and fd not in (status_fd, sync_fd):
                os.close(fd)
        os.setsid()  # like start_new_session: terminal signals reach the builder only
        status = Status(status_fd)
        plan = marshal.loads(msg)
        plan["parent_pid"] = server  # outer checks that the fork server is still its parent
    except BaseException as e:
        if status is not None:
            status.send("E", "sandbox", f"internal error in sandbox init: {type(e).__name__}: {e}")
        os._exit(1)
    run_outer(plan, status, sync_fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


# --- outer: outside the pid namespace -----------------------------------------------------
def outer(plan: dict, status: Status, sync_fd: int) -> None:
    # 1. Die with the builder: kill -9 of the builder must take the container with it, and the
    #    mount namespace (all our mounts) dies with its last process.
    sc.prctl(sc.PR_SET_PDEATHSIG, _signal.SIGKILL)
    if os.getppid() != plan["parent_pid"]:
        os._exit(1)  # the builder died before the line above took effect
    # Load now every module needed later: after the switch to a user namespace's root, or
    # after pivot_root, the host's Python library may be out of reach.
    if plan["config"]["process"]["tty"]:
        import _socket  # noqa: F401
        import fcntl  # noqa: F401
    if plan["config"]["rlimits"]:
        import resource  # noqa: F401
    if "net" in plan["unshare"]:
        import _socket  # noqa: F401
        import fcntl  # noqa: F401,F811
    if plan["interface"]:
        from runtime import netlink
    # 2. Join the cgroups before unsharing: the cgroup namespace root becomes the container's
    #    cgroup, and every process forked later is inside the limits from its first instruction.
    namespaces.join_cgroups(plan["cgroup_procs"])
    if plan.get("join_netns"):
        namespaces.join_netns(plan["join_netns"])  # a namespace made beforehand (detached containers)
    # 3. Unshare everything at once; the kernel makes the user namespace first and the others
    #    owned by it. The pid namespace applies to our children only, hence the fork below.
    namespaces.unshare(plan["unshare"])
    if plan["self_map"]:
        # Rootless: an unprivileged process may map exactly its own ids, nothing else.
        uid, gid = plan["self_map"]
        namespaces.write_id_maps("self", [(0, uid, 1)], [(0, gid, 1)], deny_setgroups=True)
    elif sync_fd >= 0 and "user" in plan["unshare"]:
        # A multi-range map needs CAP_SETUID in the parent namespace: the builder writes it.
        status.send("U", os.getpid())
        if os.read(sync_fd, 1) != b"G":
            raise NamespaceError("the sandbox parent did not write the id maps")
    if plan["net_wait"]:
        # The builder connects our fresh network namespace (a veth peer, pasta) before
        # anything runs in it (a process never starts without its network), and while our
        # credentials are still the caller's: the id switch below makes us non-dumpable, and
        # a rootless pasta could then no longer open our namespaces.
        status.send("N", os.getpid())
        if os.read(sync_fd, 1) != b"G":
            raise NamespaceError("the sandbox parent could not connect the network namespace")
    if "user" in plan["unshare"]:
        # Our host ids stay what they were (root's 0 may be unmapped here, making us
        # "nobody"); become the namespace's root, which the maps now say who is outside.
        try:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        except OSError as e:
            raise NamespaceError(f"becoming root of the user namespace (is 0 mapped?): {e.strerror}") from None
        sc.prctl(sc.PR_SET_PDEATHSIG, _signal.SIGKILL)  # any credential change clears it
        if os.getppid() != plan["parent_pid"]:
            os._exit(1)
    if "net" in plan["unshare"]:
        mounts.loopback_up()
    if plan["interface"]:
        addr, plen, gw = plan["interface"]
        try:
            netlink.configure("eth0", addr, plen, gw)
        except OSError as e:
            raise NamespaceError(f"network: {e.strerror}") from None
    # 4. Make every mount private before the first mount: nothing we do may propagate to the
    #    host's mount table (the host's / may be a shared mount).
    mounts.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    if "pid" not in plan["unshare"]:
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)  # no pid 1 of our own: we reap the orphans
    # 5. Fork the container's pid 1. Forwarding handlers go in first so that no signal sent
    #    to us around the fork takes its default action; they act once the pid is known.
    _install_forwarding()
    pid = os.fork()
    if pid == 0:
        try:
            child(plan, status)
        except SandboxError as e:
            status.fail(e)
        except BaseException as e:  # never let the child return into the outer's code
            status.send("E", "sandbox", f"internal error in sandbox init: {type(e).__name__}: {e}")
        os._exit(127)
    status.send("P", pid)  # the container's pid 1 as the host sees it (for setns by `exec`)
    code, sig = _forward_and_wait(pid)
    status.send("X", code, sig)
    os._exit(0)


_target = 0  # the pid signals are forwarded to; 0 = not known yet (never kill(0): that is our group)


def _forward(signum: int, _frame: object) -> None:
    if _target > 0:
        try:
            os.kill(_target, signum)
        except ProcessLookupError:
            pass


def _kill_container(_signum: int, _frame: object) -> None:
    if _target > 0:
        try:
            os.kill(_target, _signal.SIGKILL)
        except ProcessLookupError:
            pass
    else:
        os._exit(128 + _signal.SIGKILL)  # nothing started yet: just go


def _install_forwarding() -> None:
    for s in FORWARDED:
        _signal.signal(s, _forward)
    _signal.signal(KILL_REQUEST, _kill_container)


def _forward_and_wait(pid: int) -> tuple[int, int]:
    """Forward the usual signals to `pid`, reap everything, return pid's (exit code, signal)."""
    global _target
    _install_forwarding()
    _target = pid
    while True:
        try:
            got, st = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255, 0
        if got == pid:
            if os.WIFSIGNALED(st):
                return 128 + os.WTERMSIG(st), os.WTERMSIG(st)
            return os.waitstatus_to_exitcode(st), 0


# --- child: pid 1 inside, builds the root and becomes the process -------------------------
def child(plan: dict, status: Status) -> None:
    cfg = plan["config"]
    proc = cfg["process"]
    root = plan["root"]
    userns = "user" in plan["unshare"] or plan["userns_root"]
    # 6. The outer is our parent but outside our pid namespace: if it dies, so do we (and
    #    with pid 1, the whole namespace).
    sc.prctl(sc.PR_SET_PDEATHSIG, _signal.SIGKILL)
    # 6b. A fresh anonymous session keyring (as runc does): the keys of the session that
    #     started the builder are not ours to read; keyctl itself is then denied by seccomp.
    _join_session_keyring()
    # 7. The root: overlay (or a bind of a plain dir) on the private mount point. Every
    #    later mount goes on top of it, and pivot_root needs it to be a mount.
    mounts.mount_rootfs(cfg["rootfs"], root, userns)
    stubs = mounts.Stubs(root, lambda cpath, kind, mtime: status.send("S", kind, mtime, cpath))
    # 8. /proc after the fork: a proc mount shows the pid namespace of the process mounting it.
    mounts.mount_proc(root, stubs, userns)
    # 9. /dev (tmpfs + device nodes, its own devpts, shm, mqueue); then Docker's masks over
    #    /proc, which bind /dev/null and so come after /dev; then /sys read-only.
    mounts.mount_dev(root, stubs, userns)
    mounts.protect_proc(root)
    mounts.mount_sys(stubs, "net" in plan["unshare"] or bool(plan.get("join_netns")))
    # 10. User mounts after the standard ones, so a config can override /dev/shm or mount
    #     over /proc/x, and before the /etc files, which must stay on top.
    for m in cfg["mounts"]:
        mounts.mount_one(m, stubs)
    # 11. /etc/hosts, resolv.conf, hostname: bind-mounted from outside the rootfs, so nothing
    #     is ever written into the image's layers; read-only from the private dir on the
    #     tmpfs (RUN, as BuildKit), or writable from a directory on disk (`pybuild run`).
    for target, source, readonly in plan["files"]:
        mounts.bind_file(source, stubs.ensure(target, False), readonly)
    # 12. A missing working directory is created now, as root and before a read-only
    #     remount (runc and Docker do the same). It is a real change, not a stub.
    stubs.report = None
    stubs.ensure(proc["cwd"], True)
    if cfg["readonly_rootfs"]:
        mounts.remount_readonly(root)  # last: every mount point above had to be created first
    # 13. pivot_root, not chroot: the old root is detached and unreachable, and no host
    #     mount is left visible in the container's mount table.
    mounts.pivot(root)
    # 14. Host name inside our uts namespace.
    if "uts" in plan["unshare"]:
        sc.sethostname(cfg["hostname"])
    # 15. Optionally stay as a minimal init (pid 1) and continue as its child (pid 2).
    if cfg["init"]:
        _run_under_minimal_init(plan, status)
    # 16-20. Limits, capabilities, ids, cwd, console, seccomp, exec (runtime.become).
    become_process(plan)


def _run_under_minimal_init(plan: dict, status: Status) -> None:
    """Stay pid 1: fork the process as pid 2, forward signals, reap zombies, report its status."""
    _install_forwarding()
    # The process waits for pid 1 to be confined: it must never see (in /proc/1) an init
    # still holding the privileges it had to fork it with.
    confined_r, confined_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(confined_w)
        ok = os.read(confined_r, 1) == b"1"
        os.close(confined_r)
        if not ok:
            os._exit(126)  # pid 1 could not drop its privileges (it said so on stderr)
        return  # the caller goes on to become the process
    os.close(confined_r)
    confine_init(plan)
    os.write(confined_w, b"1")
    os.close(confined_w)
    code, sig = _forward_and_wait(pid)
    status.send("X", code, sig)
    os._exit(code)


def _join_session_keyring() -> None:
    try:
        sc.join_session_keyring()
    except OSError as e:
        if e.errno != 38:  # ENOSYS: a kernel without keys has no keyring to leak
            raise NamespaceError(f"joining a new session keyring: {e.strerror}") from None


if __name__ == "__main__":
    main()
