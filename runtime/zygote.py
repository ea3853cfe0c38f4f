"""The builder's handle on the sandbox fork server (runtime.init.zygote_main).

Owns: starting the fork server once per process (re-exec'd `python -I -S`, like every
sandbox child), from a thread that lives as long as the process, because the kernel's
parent-death signal fires when the *thread* that spawned a child ends; sending it one
request per sandbox; restarting it if it died. prefork() starts it by forking this process
instead, which a short-lived process may do first thing, while it has one thread (`pybuild
run`, a container's monitor): no second interpreter start-up (~10 ms of CPU, and the server's
cgroup join then overlaps the caller's imports). Must not: fork in this process otherwise, or
import builder. Set PYBUILD_SANDBOX_ZYGOTE=0 to start every sandbox by a fresh re-exec instead.
Imports are few and C-level (_socket, _thread): prefork() runs before the caller's own imports.
"""
from __future__ import annotations

import _socket
import _thread
import os
import sys

_BOOT = ("import sys;sys.path.insert(0,{parent!r});import runtime.init as i;i.zygote_main()")
MAX_PLAN = 60_000  # bytes; larger plans use a fresh re-exec (a seqpacket must fit the socket buffer)


def enabled() -> bool:
    return os.environ.get("PYBUILD_SANDBOX_ZYGOTE", "1") != "0"


class Zygote:
    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._sock: _socket.socket | None = None
        self._proc = None  # subprocess.Popen, or _Forked (prefork)
        self._owner = os.getpid()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def spawn(self, plan_bytes: bytes, fds: list[int]) -> tuple[int, int]:
        """Fork an init outer with `fds` as [stdin, stdout, stderr, status(, sync)]; return
        (pid, pidfd). The caller owns the pidfd."""
        with self._lock:
            self._forget_inherited()
            for attempt in (0, 1):
                if self._sock is None:
                    self._start()
                assert self._sock is not None
                try:
                    self._sock.sendmsg([plan_bytes], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                                       b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))])
                    return self._recv()
                except (BrokenPipeError, ConnectionResetError, EOFError):
                    self._stop()  # the server died (killed?): start a new one, once
                    if attempt:
                        raise
        raise AssertionError("unreachable")

    def _recv(self) -> tuple[int, int]:
        assert self._sock is not None
        msg, anc, _flags, _addr = self._sock.recvmsg(16, _socket.CMSG_SPACE(4), _socket.MSG_CMSG_CLOEXEC)
        fds = [int.from_bytes(data[:4], sys.byteorder) for level, kind, data in anc
               if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4]
        if not msg or not fds:
            raise EOFError("sandbox fork server ended")
        return int.from_bytes(msg[:4], sys.byteorder), fds[0]

    def _forget_inherited(self) -> None:
        """In a fork of the process that started the server: forget that one (and get our own
        later) without closing the socket's fd, which the fork may have closed already and
        reused (a monitor closes every inherited fd, then opens its lock: closing that number
        again would drop the lock)."""
        if self._owner != os.getpid():
            if self._sock is not None:
                self._sock.detach()
            self._sock, self._proc, self._owner = None, None, os.getpid()

    def _fork(self) -> bool:
        """Start the server as a fork of this process (see prefork); False if this process
        has other threads, where fork() is unsafe."""
        try:
            if len(os.listdir("/proc/self/task")) != 1:
                return False
        except OSError:
            return False
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the server: what `python -I -S` started with Popen below would be
            try:
                os.setsid()  # (start_new_session)
                os.chdir("/")
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.dup2(theirs.fileno(), 3)
                os.closerange(4, 1 << 20)  # close_range(2): nothing of the caller's stays open
                _drop_environ()
                from runtime import init
                init.zygote_main(["3", str(parent)])
            finally:
                os._exit(1)
        theirs.close()
        self._sock, self._proc, self._owner = ours, _Forked(pid), parent
        return True

    def _start(self) -> None:
        import subprocess
        import threading

        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        argv = [sys.executable, "-I", "-S", "-c", _BOOT.format(parent=parent), str(theirs.fileno()), str(os.getpid())]
        box: dict = {}
        ready = threading.Event()

        def keeper() -> None:
            try:
                # cwd "/" and no stdio: the server must not pin a directory or hold a pipe
                # that somebody waits on for EOF; init outers report through their own pipes.
                box["proc"] = subprocess.Popen(argv, pass_fds=[theirs.fileno()], env={}, start_new_session=True,
                                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL, close_fds=True, cwd="/")
            except OSError as e:
                box["error"] = e
            ready.set()
            threading.Event().wait()  # never return: this thread's death would kill the server
        threading.Thread(target=keeper, name="pybuild-sandbox-zygote", daemon=True).start()
        ready.wait()
        theirs.close()
        if "error" in box:
            ours.close()
            raise box["error"]
        self._sock, self._proc, self._owner = ours, box["proc"], os.getpid()

    def _stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._proc = None


def _drop_environ() -> None:
    """What `env={}` gives the re-exec'd server: no environment, not even in /proc/PID/environ
    (the kernel shows the block the process started with; a container's `--init` pid 1 is a
    fork of ours, and a container with CAP_SYS_PTRACE could read it there). NULs over it."""
    os.environ.clear()
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end (fields 50, 51)
        fd = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
        try:
            os.pwrite(fd, bytes(end - start), start)
        finally:
            os.close(fd)
    except (OSError, ValueError, IndexError):
        pass


class _Forked:
    """The prefork()ed server, as much of a Popen as this module and its tests use."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def wait(self) -> int:
        if self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                self.returncode = 0
        return self.returncode


_zygote = Zygote()


def spawn(plan_bytes: bytes, fds: list[int]) -> tuple[int, int]:
    return _zygote.spawn(plan_bytes, fds)


def prewarm() -> None:
    """Start the fork server now; its Python start-up then overlaps the caller's work."""
    if enabled():
        with _zygote._lock:
            _zygote._forget_inherited()
            if _zygote._sock is None:
                _zygote._start()



def prefork() -> bool:
    """Start the fork server now by forking this process (no Python start-up of its own).
    For the very start of a short-lived, single-threaded process whose memory is still small
    (every sandbox start is a fork of the server): `pybuild run` as root, a container's
    monitor. False (nothing started) if disabled, already running, or this process has
    threads; spawn() then starts it the usual way."""
    if not enabled():
        return False
    with _zygote._lock:
        _zygote._forget_inherited()
        if _zygote._sock is not None:
            return False
        return _zygote._fork()
