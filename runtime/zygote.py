"""The builder's handle on the sandbox fork server (runtime.init.zygote_main).

Owns: starting the fork server once per process (re-exec'd `python -I -S`, like every
sandbox child), from a thread that lives as long as the process, because the kernel's
parent-death signal fires when the *thread* that spawned a child ends; sending it one
request per sandbox; restarting it if it died. Must not: fork in this process, or import
builder. Set PYBUILD_SANDBOX_ZYGOTE=0 to start every sandbox by a fresh re-exec instead.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

_BOOT = ("import sys;sys.path.insert(0,{parent!r});import runtime.init as i;i.zygote_main()")
MAX_PLAN = 60_000  # bytes; larger plans use a fresh re-exec (a seqpacket must fit the socket buffer)


def enabled() -> bool:
    return os.environ.get("PYBUILD_SANDBOX_ZYGOTE", "1") != "0"


class Zygote:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self._owner = os.getpid()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def spawn(self, plan_bytes: bytes, fds: list[int]) -> tuple[int, int]:
        """Fork an init outer with `fds` as [stdin, stdout, stderr, status(, sync)]; return
        (pid, pidfd). The caller owns the pidfd."""
        with self._lock:
            if self._owner != os.getpid():
                # we are a fork of the process that started the server: get our own
                self._sock, self._proc = None, None
            for attempt in (0, 1):
                if self._sock is None:
                    self._start()
                assert self._sock is not None
                try:
                    self._sock.sendmsg([plan_bytes], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                       b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))])
                    return self._recv()
                except (BrokenPipeError, ConnectionResetError, EOFError):
                    self._stop()  # the server died (killed?): start a new one, once
                    if attempt:
                        raise
        raise AssertionError("unreachable")

    def _recv(self) -> tuple[int, int]:
        assert self._sock is not None
        msg, fds, _flags, _addr = socket.recv_fds(self._sock, 16, 1, socket.MSG_CMSG_CLOEXEC)
        if not msg or not fds:
            raise EOFError("sandbox fork server ended")
        return int.from_bytes(msg[:4], sys.byteorder), fds[0]

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
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


_zygote = Zygote()


def spawn(plan_bytes: bytes, fds: list[int]) -> tuple[int, int]:
    return _zygote.spawn(plan_bytes, fds)


def prewarm() -> None:
    """Start the fork server now; its Python start-up then overlaps the caller's work."""
    if enabled():
        with _zygote._lock:
            if _zygote._sock is None:
                _zygote._start()

