"""Rootless: a non-root user's pybuild runs as root of a user namespace of its own.

Owns: entering that namespace at the start of a command that touches the store (podman's and
buildah's "rootless re-exec" shape, done with fork since no thread exists yet then): the child
unshares a user + mount namespace and waits; the parent maps the user's own uid/gid to 0 and
the subordinate ranges of /etc/subuid and /etc/subgid after it with newuidmap/newgidmap
(Debian's `uidmap`), then waits for the child, forwarding signals, and exits with its status.
Without a subordinate range (or without newuidmap) only the user's own ids are mapped: one
warning line, and files of other owners become the user's (container root's), as podman's
`ignore_chown_errors`. The state directory is resolved before entering (inside, euid is 0).
Everything that touches the store runs inside, the no-op build check too: context digests
include owners, which read differently in and out of the namespace (1001 outside is 0 inside).
Must not: run anything but the mapping tools, or be entered twice.
"""
from __future__ import annotations

import os
import pwd
import signal
import sys

from builder.errors import PybuildError

# Commands that never touch the store or a sandbox: they run as the user, unchanged. `exec`
# joins a running container's namespaces, which belong to the user namespace of the command
# that started it: only its owner outside (the user) may setns into that, not a sibling.
OUTSIDE = {"parse", "lint", "version", "completion", "login", "logout", "exec"}
ENV_MARK = "_PYBUILD_ROOTLESS"  # set inside: "full" (subordinate ranges) or "single" (one id)
SI_KERNEL = 0x80  # siginfo si_code of a signal the kernel sent (a tty's ^C reaches the child too)


class RootlessError(PybuildError):
    """Entering the user namespace failed (one line for the user)."""


def host_root() -> bool:
    """Root of the host (not the root of pybuild's rootless user namespace)."""
    if os.geteuid() != 0:
        return False
    from runtime.namespaces import userns_root

    return not userns_root()


def needed(command: str | None) -> bool:
    return os.geteuid() != 0 and command not in OUTSIDE and ENV_MARK not in os.environ


def subordinate_range(path: str, name: str, uid: int) -> tuple[int, int] | None:
    """The first (start, count) of `name` or `uid` in /etc/subuid-style `path`, or None."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or line.startswith("#"):
            continue
        if parts[0] in (name, str(uid)) and parts[1].isdigit() and parts[2].isdigit() and int(parts[2]) > 0:
            return int(parts[1]), int(parts[2])
    return None


def plan_maps() -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]], str | None]:
    """(uid map, gid map, warning or None): own id as 0, then the subordinate range from 1."""
    uid, gid = os.getuid(), os.getgid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    su = subordinate_range("/etc/subuid", name, uid)
    sg = subordinate_range("/etc/subgid", name, uid)
    tools = _which("newuidmap") and _which("newgidmap")
    nnp = _no_new_privs()
    if su and sg and tools and not nnp:
        return [(0, uid, 1), (1, su[0], su[1])], [(0, gid, 1), (1, sg[0], sg[1])], None
    why = ("newuidmap/newgidmap are not installed (Debian: apt-get install uidmap)" if not tools else
           "no_new_privs is set (a container with no-new-privileges), so the setuid newuidmap cannot "
           "work" if nnp and su and sg else
           f"no subordinate id range for {name} in /etc/subuid and /etc/subgid "
           f"(add one: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name})")
    return [(0, uid, 1)], [(0, gid, 1)], (f"warning: rootless with a single id: {why}; "
                                          "files of other owners will belong to root in images")


def enter() -> None:
    """Become root of a fresh user + mount namespace, or exit with the child's status from
    the parent. Returns only in the child (or raises RootlessError before forking)."""
    from runtime import syscalls as sc  # the one ctypes binding point
    from builder.settings import default_root

    os.environ.setdefault("PYBUILD_ROOT", str(default_root()))  # ~/.local/share/pybuild, as the user
    missing = _userns_missing()
    if missing:
        raise RootlessError(f"not root, and user namespaces are disabled here ({missing}): "
                            "pybuild needs one of the two for this command")
    uid_map, gid_map, warning = plan_maps()
    if warning:
        sys.stderr.write(warning + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    # Block the signals we forward before forking, so none is lost between fork and wait.
    forwarded = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                 signal.SIGUSR2, signal.SIGWINCH, signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, forwarded)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(go_w)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        try:
            sc.unshare(sc.CLONE_NEWUSER | sc.CLONE_NEWNS)
        except OSError as e:
            os.write(ready_w, f"E{e.strerror}".encode())
            os._exit(1)
        os.write(ready_w, b"R")
        os.close(ready_w)
        reply = os.read(go_r, 4096).decode()
        os.close(go_r)
        if reply not in ("G", "S"):
            os._exit(1)  # the parent said why
        full = reply == "G"
        if not full:
            _write_self_map(uid_map[0][1], gid_map[0][1])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        # if the parent is killed (kill -9), stop as on SIGTERM (builds clean up); set after the
        # credential change, which clears it
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)
        if full:
            os.setgroups([])
        # our mounts (overlays, the sandbox's) must never propagate to the host's table
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE, None)
        os.environ[ENV_MARK] = "full" if full else "single"
        if not full:
            _squash_foreign_owners()
        return
    os.close(ready_w)
    os.close(go_r)
    msg = os.read(ready_r, 4096).decode()
    os.close(ready_r)
    if msg != "R":
        os.waitpid(pid, 0)
        raise RootlessError(f"cannot create a user namespace: {msg[1:] or 'the child died'}")
    reply = b"G" if uid_map[1:] else b"S"
    if uid_map[1:]:
        for tool, maps in (("newuidmap", uid_map), ("newgidmap", gid_map)):
            argv = [tool, str(pid), *(str(n) for m in maps for n in m)]
            import subprocess  # only here: the single-id path and the child never need it

            r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode != 0:
                # e.g. setuid refused (no_new_privs) or a range the admin did not grant: carry on
                # with one id, as without a range, saying why
                err = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
                sys.stderr.write(f"warning: rootless with a single id: {tool} failed ({err}); "
                                 "files of other owners will belong to root in images\n")
                reply = b"S"
                break
    os.write(go_w, reply)
    os.close(go_w)
    os._exit(_wait_forwarding(pid, forwarded))


def _squash_foreign_owners() -> None:
    """Single-id mode: an owner outside the map (an image's `_apt`, COPY --chown=1000) cannot be
    set; the file stays the user's, i.e. root's in the image (podman's ignore_chown_errors).
    Every chown of this process goes through os, so the tolerance is installed there once."""
    import errno

    for name in ("chown", "lchown", "fchown"):
        real = getattr(os, name)

        def tolerant(*args, _real=real, **kwargs) -> None:
            try:
                _real(*args, **kwargs)
            except OSError as e:
                if e.errno != errno.EINVAL:  # EINVAL: the id has no mapping here
                    raise
        setattr(os, name, tolerant)


def _write_self_map(uid: int, gid: int) -> None:
    """Map our own ids only (allowed to an unprivileged process once setgroups is denied);
    the uid map may already hold what newuidmap wrote before newgidmap failed."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map") as f:
        written = bool(f.read().strip())
    if not written:
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"0 {uid} 1\n")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1\n")


def _wait_forwarding(pid: int, forwarded: set) -> int:
    """Wait for the child; pass it every forwarded signal but a tty's (the child got that one
    itself, being in the same foreground process group). Returns the exit code to use."""
    while True:
        info = signal.sigwaitinfo(forwarded)
        if info.si_signo == signal.SIGCHLD:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                if os.WIFSIGNALED(status):
                    return 128 + os.WTERMSIG(status)
                return os.waitstatus_to_exitcode(status)
            continue
        if info.si_code == SI_KERNEL and info.si_signo in (signal.SIGINT, signal.SIGQUIT, signal.SIGWINCH):
            continue
        try:
            os.kill(pid, info.si_signo)
        except ProcessLookupError:
            pass


def _no_new_privs() -> bool:
    try:
        with open("/proc/self/status") as f:
            return any(ln.startswith("NoNewPrivs:") and ln.split()[1] == "1" for ln in f)
    except OSError:
        return False


def _which(name: str) -> str | None:
    """shutil.which without importing shutil (and re, through fnmatch): start-up budget."""
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(":") + ["/usr/bin", "/usr/sbin"]:
        p = os.path.join(d or ".", name)
        if os.access(p, os.X_OK) and os.path.isfile(p):
            return p
    return None


def _userns_missing() -> str | None:
    for path, bad in (("/proc/sys/kernel/unprivileged_userns_clone", "0"),
                      ("/proc/sys/user/max_user_namespaces", "0")):
        try:
            with open(path) as f:
                if f.read().strip() == bad:
                    return f"{path.removeprefix('/proc/sys/').replace('/', '.')} = {bad}"
        except OSError:
            continue
    return None
