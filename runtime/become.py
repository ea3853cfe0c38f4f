"""The container process's last steps: confine, then exec (step 16-20 of runtime.init).

Owns: resource limits, the capability sets and the bounding set, groups/gid/uid, no_new_privs,
the umask and working directory, the console on the container's devpts, default signal
dispositions, the seccomp filter, and the PATH lookup + execve in the container's root; and
the confinement of a `--init` pid 1 to no more than the process it runs. Used by runtime.init
(pid 1 or 2 of a sandbox) and runtime.enter (`exec` into a running one). Must not: import
anything beyond what runtime.init may (it is loaded before pivot_root, and nothing may be
imported after it: the host's library is out of reach then).
"""
from __future__ import annotations

import _signal
import errno
import os
import sys

from runtime import syscalls as sc
from runtime.errors import ExecError, NamespaceError

# The signals runtime.init forwards to the process, and the one runtime.sandbox sends to ask
# for a SIGKILL of the container: all given back their default disposition before exec.
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT,
             _signal.SIGUSR1, _signal.SIGUSR2)
KILL_REQUEST = _signal.SIGRTMIN + 1
TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414

INIT_NAME = "pybuild-init"
PR_SET_DUMPABLE = 4
PR_SET_MM, PR_SET_MM_ARG_END = 35, 9


def confine_init(plan: dict) -> None:
    """Make the minimal init (pid 1, still this Python process) no more than the container's
    own process, as docker-init is: its command line names no host path, it runs with the
    process's ids and capabilities and with no_new_privs, and it is not dumpable, so the
    container can neither ptrace it nor open its /proc/1/{exe,fd,mem,environ,maps} (which
    would reach the host's interpreter and the status pipe to the builder)."""
    proc = plan["config"]["process"]
    _set_cmdline([INIT_NAME, "--", *proc["argv"]])  # first: trimming it needs CAP_SYS_RESOURCE
    try:
        fd = os.open("/proc/self/comm", os.O_WRONLY)
        try:
            os.write(fd, INIT_NAME.encode())
        finally:
            os.close(fd)
    except OSError:
        pass
    keep = plan["cap_mask"]
    try:
        for cap in range(plan["cap_last"] + 1):
            if not keep >> cap & 1:
                sc.prctl(sc.PR_CAPBSET_DROP, cap)
        try:
            sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
        except OSError:
            pass
        sc.capset(keep, keep, keep)
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
        if not plan["self_map"]:
            os.setgroups(proc["additional_gids"])
        os.setresgid(proc["gid"], proc["gid"], proc["gid"])
        os.setresuid(proc["uid"], proc["uid"], proc["uid"])
        sc.prctl(PR_SET_DUMPABLE, 0)  # after the id switch, which resets it
        sc.prctl(sc.PR_SET_PDEATHSIG, _signal.SIGKILL)  # a credential change clears it
    except OSError as e:
        # never run on as a privileged pid 1: the namespace (and the process) dies with us
        os.write(2, f"pybuild-init: cannot drop privileges: {e.strerror}\n".encode())
        os._exit(126)


def _set_cmdline(words: list[str]) -> None:
    """Rewrite /proc/self/cmdline in place (the argv area the kernel shows: the interpreter's
    own argv, which Python copied at start-up). Cut to the area's size; where allowed
    (CAP_SYS_RESOURCE, i.e. not rootless), the area is shortened to the new text, otherwise
    it is padded with NULs."""
    try:
        fd = os.open("/proc/self/stat", os.O_RDONLY)
        try:
            fields = os.read(fd, 4096).rpartition(b")")[2].split()
        finally:
            os.close(fd)
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48, 49)
        text = b"\0".join(w.encode("utf-8", "surrogateescape") for w in words) + b"\0"
        size = end - start
        if len(text) > size:
            text = text[:size - 1] + b"\0"
        fd = os.open("/proc/self/mem", os.O_RDWR)
        try:
            os.pwrite(fd, text.ljust(size, b"\0"), start)
        finally:
            os.close(fd)
        try:
            sc.prctl(PR_SET_MM, PR_SET_MM_ARG_END, start + len(text))
        except OSError:
            pass
    except (OSError, ValueError, IndexError):
        pass  # cosmetic; the privilege drop is what matters


def become_process(plan: dict) -> None:
    cfg = plan["config"]
    proc = cfg["process"]
    # 16. Resource limits first: lowering needs no privilege, and we still hold it here.
    if cfg["rlimits"]:
        import resource  # loaded early (see outer)
        for rl in cfg["rlimits"]:
            num = plan["rlimit_numbers"][rl["resource"]]
            _soft, hard = resource.getrlimit(num)
            if hard != resource.RLIM_INFINITY and rl["hard"] > hard:
                # only ever lower: raising would need privilege the container should not get
                raise ExecError(f"rlimit {rl['resource']}: hard limit {rl['hard']} is above the current {hard}")
            try:
                resource.setrlimit(num, (rl["soft"], rl["hard"]))
            except (OSError, ValueError) as e:
                raise ExecError(f"rlimit {rl['resource']} = ({rl['soft']}, {rl['hard']}): {e}") from None
    # 17. Capabilities: bounding set first (it limits what any later exec can gain); the
    # process's own sets after the id switch (step 18), as runc orders it, so that a set
    # without CAP_SETUID/CAP_SETGID (`--cap-drop ALL`) still gets its ids.
    keep = plan["cap_mask"]
    for cap in range(plan["cap_last"] + 1):
        if not keep >> cap & 1:
            try:
                sc.prctl(sc.PR_CAPBSET_DROP, cap)
            except OSError as e:
                raise NamespaceError(f"dropping capability {cap} from the bounding set: {e.strerror}") from None
    try:
        sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass  # kernels without ambient capabilities have none to clear
    seccomp = plan.get("seccomp")
    if seccomp and not cfg["no_new_privileges"]:
        # Without no_new_privs, installing a filter needs CAP_SYS_ADMIN in effect: before the
        # id switch below clears the effective set.
        install_seccomp(seccomp)
        seccomp = None
    # 18. Groups before gid before uid: once the uid is not 0 we may no longer change the others.
    #     KEEPCAPS holds the permitted set across the uid change, for the capset below.
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    try:
        if not plan["self_map"] and not plan.get("setgroups_denied"):
            os.setgroups(proc["additional_gids"])
        os.setresgid(proc["gid"], proc["gid"], proc["gid"])
        os.setresuid(proc["uid"], proc["uid"], proc["uid"])
    except OSError as e:
        if e.errno == errno.EINVAL and (plan["self_map"] or plan.get("userns_root")):
            raise ExecError(f"switching to uid {proc['uid']} gid {proc['gid']}: not mapped in this rootless user "
                            "namespace (only the user's own id is; add a subordinate range to /etc/subuid "
                            "and /etc/subgid for more)") from None
        raise ExecError(f"switching to uid {proc['uid']} gid {proc['gid']}: {e.strerror}") from None
    sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    # root gets the container's set; another user none effective or permitted (what a plain
    # uid change leaves), the set as inheritable, as before the reordering
    sc.capset(keep, keep, keep) if proc["uid"] == 0 else sc.capset(0, 0, keep)
    if cfg["no_new_privileges"]:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    sc.prctl(sc.PR_SET_PDEATHSIG, _signal.SIGKILL)  # a credential change clears it
    # 19. umask, working directory, controlling terminal, default signal dispositions, exec.
    os.umask(proc["umask"])
    try:
        os.chdir(proc["cwd"])
    except OSError as e:
        raise ExecError(f"cannot enter working directory {proc['cwd']}: {e.strerror}") from None
    if proc["tty"]:
        _make_console(plan.get("tty_size"))
    # SIGPIPE and SIGXFSZ too: the Python interpreter we run in ignores both at start-up, and an
    # ignored disposition survives execve. With SIGPIPE ignored, `yes | head -1` never ends (yes
    # gets EPIPE instead of dying and busybox's yes retries forever), unlike under docker build.
    for s in (*FORWARDED, KILL_REQUEST, _signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(s, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())  # a blocked mask survives execve as well
    # 20. The seccomp filter (compiled by the builder: runtime.seccomp) last, so that nothing
    #     above needs a system call the container may not make; then exec.
    if seccomp:
        install_seccomp(seccomp)
    exec_in_path(proc["argv"], proc["env"])


def install_seccomp(program: bytes) -> None:
    try:
        sc.seccomp_filter(program)
    except OSError as e:
        raise NamespaceError(f"installing the seccomp filter: {e.strerror}") from None


def _make_console(size: tuple[int, int] | None) -> None:
    """A pty on the container's own devpts (so ttyname(0) is /dev/pts/0, as under docker),
    made as the container's user (who then owns the slave, as after a login); its master goes
    to the builder over the socket the builder gave us as fd 0; the slave becomes fd 0-2 and
    our controlling terminal in a new session."""
    import _socket
    import fcntl  # both loaded early (see outer)
    try:
        master, slave = os.openpty()
    except OSError as e:
        raise ExecError(f"cannot allocate a pseudo-terminal in the container: {e.strerror}") from None
    if size:
        rows, cols = size
        fcntl.ioctl(slave, TIOCSWINSZ, b"".join(v.to_bytes(2, sys.byteorder) for v in (rows, cols, 0, 0)))
    sock = _socket.socket(fileno=0)
    try:
        sock.sendmsg([b"m"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, master.to_bytes(4, sys.byteorder))])
    finally:
        sock.close()  # closes fd 0
    os.close(master)
    os.setsid()  # a new session, so the pty can become our controlling terminal
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def exec_in_path(argv: list[str], env_list: list[str]) -> None:
    """execve with the PATH lookup done in the *container's* root and PATH (execvp rules:
    skip entries where the name is missing, remember permission errors). Our own loop, not
    os.execvpe: that one lazily imports `warnings`, and after pivot_root the host's Python
    library is gone."""
    env = dict(e.split("=", 1) for e in env_list)
    name = argv[0]
    if "/" in name:
        candidates = [name]
    else:
        path = env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        candidates = [f"{d or '.'}/{name}" for d in path.split(":")]
    last: OSError | None = None
    for c in candidates:
        try:
            os.execve(c, argv, env)
        except (FileNotFoundError, NotADirectoryError) as e:
            last = last if isinstance(last, PermissionError) else e
        except PermissionError as e:
            last = e
        except OSError as e:
            raise ExecError(f"exec {c}: {e.strerror}") from None
    if isinstance(last, PermissionError):
        raise ExecError(f"exec {name}: permission denied")
    where = "" if "/" in name else " in $PATH"
    raise ExecError(f"exec {name}: executable file not found{where}")
