"""Small stdio helpers for the sandbox parent: sinks, /dev/null, pty sizes, raw mode.

Owns: turning a caller's input and output targets into the container's fds 0-2 and what the
parent keeps of them (wire: pipes relayed or fds handed in, a pty's socket, /dev/null), the pty
master's hand-over, and the terminal ioctls around a pty. Must not: run the relay loop
(runtime.sandbox does) or import builder.
"""
from __future__ import annotations

import os
from typing import Callable, Union

Sink = Union[int, Callable[[bytes], None], None]


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def writer(sink: Sink) -> Callable[[bytes], None]:
    """A chunk consumer for `sink`: the callable itself, a writer to an fd, or a discarder."""
    if callable(sink):
        return sink
    if isinstance(sink, int):
        return lambda data, fd=sink: write_all(fd, data)
    return lambda data: None


def devnull(close_later: list[int]) -> int:
    fd = os.open(os.devnull, os.O_RDWR)
    close_later.append(fd)
    return fd


class Wiring:
    """The container's fds 0-2 (`stdio`, for the init) and the parent's ends: output pipes to
    relay (`relays`: read end -> writer), bytes to feed (`feed` into `feed_fd`), a caller's
    input fd relayed by `pump` or read for the pty (`stdin_src`), the pty's socket (`console`)."""

    def __init__(self) -> None:
        self.stdio: list[int] = []
        self.relays: dict[int, Callable[[bytes], None]] = {}
        self.feed: bytes | None = None
        self.feed_fd = self.console = self.stdin_src = -1
        self.pump: Pump | None = None
        self.tty_size: tuple[int, int] | None = None


def wire(stdin, stdout: Sink, stderr: Sink, *, tty: bool, relay: bool,
         size: tuple[int, int] | None, close_later: list[int]) -> Wiring:
    """stdin: an int fd, bytes or None; stdout/stderr: Sinks (see runtime.sandbox.run). The
    fds the child gets are added to `close_later` (closed by the caller once it is started);
    `size`: the pty's (rows, columns), else the caller's terminal's when stdin is one."""
    w = Wiring()
    if tty:
        # The pty is made inside the container, on its own devpts, so the process sees
        # /dev/pts/0 (ttyname works, as under docker); init sends the master back on this
        # socket, which is the process's fd 0 until then (runtime.become.become_process).
        import socket
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        w.console, child_end = ours.detach(), theirs.detach()
        os.set_inheritable(w.console, False)
        w.stdio = [child_end, devnull(close_later), devnull(close_later)]
        close_later.append(child_end)
        if size is None and isinstance(stdin, int):
            size = terminal_size(stdin)
        w.tty_size = tuple(size) if size else None
        if isinstance(stdin, int):
            w.stdin_src = stdin
        else:
            w.feed = stdin or None
        return w
    if isinstance(stdin, int) and relay:
        r, wr = os.pipe()
        w.stdio.append(r)
        close_later.append(r)
        w.pump = Pump(stdin, wr)
    elif isinstance(stdin, int):
        w.stdio.append(stdin)
    elif isinstance(stdin, bytes):
        r, wr = os.pipe()
        w.stdio.append(r)
        close_later.append(r)
        w.feed, w.feed_fd = stdin, wr
        os.set_blocking(wr, False)
    else:
        w.stdio.append(devnull(close_later))
    for sink in (stdout, stderr):
        if isinstance(sink, int) and not relay:
            w.stdio.append(sink)
        elif sink is None:
            w.stdio.append(devnull(close_later))
        else:
            r, wr = os.pipe()
            w.stdio.append(wr)
            close_later.append(wr)
            w.relays[r] = writer(sink)
    return w


def receive_fd(sock_fd: int) -> int:
    """One fd sent over the unix socket `sock_fd` (the pty master), or -1 if none came."""
    import socket
    sock = socket.socket(fileno=os.dup(sock_fd))
    try:
        _msg, fds, _flags, _addr = socket.recv_fds(sock, 1, 1, socket.MSG_CMSG_CLOEXEC)
    except OSError:
        fds = []
    finally:
        sock.close()
    return fds[0] if fds else -1


def terminal_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on fd, or None when fd is not a terminal."""
    if not os.isatty(fd):
        return None
    cols, rows = os.get_terminal_size(fd)
    return rows, cols


def set_winsize(fd: int, size: tuple[int, int]) -> None:
    import fcntl
    import struct
    import termios
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))


def make_raw(fd: int) -> Callable[[], None] | None:
    """Put the terminal on fd in raw mode (keys go to the container's pty untouched);
    return the function that restores it, or None when fd is not a terminal."""
    if not os.isatty(fd):
        return None
    import termios
    import tty
    old = termios.tcgetattr(fd)
    tty.setraw(fd)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, old)



class Pump:
    """Copies a caller's input fd into the pipe the process reads as its stdin, so the process
    never holds the caller's own file (which it could re-open through /proc/self/fd/0).

    One chunk is in flight at a time (back-pressure: nothing more is read until the pipe took
    it); the pipe's write end is non-blocking. At end of input, when the process closed its
    end, or once it exited, the write end is closed (runtime.sandbox does, after taking it out
    of its selector). A source epoll cannot watch (a regular file, /dev/null) is read directly."""

    CHUNK = 65536

    def __init__(self, src: int, dst: int) -> None:
        import select
        self.src, self.dst = src, dst
        self.buf = b""
        self.eof = False
        os.set_blocking(dst, False)
        ep = select.epoll()
        try:
            ep.register(src, select.EPOLLIN)
            self.pollable = True
        except OSError:
            self.pollable = False
        finally:
            ep.close()

    @property
    def wants_input(self) -> bool:
        return self.dst >= 0 and not self.buf and not self.eof

    @property
    def finished(self) -> bool:
        """True when the write end should be closed now."""
        return self.dst >= 0 and self.eof and not self.buf

    def read(self) -> None:
        try:
            data = os.read(self.src, self.CHUNK)
        except OSError:
            data = b""
        self.buf = data
        self.eof = not data

    def write(self) -> None:
        try:
            n = os.write(self.dst, self.buf)
        except BlockingIOError:
            return
        except OSError:  # EPIPE: the process closed its stdin; stop reading ours
            self.stop()
            return
        self.buf = self.buf[n:]

    def stop(self) -> None:
        self.buf, self.eof = b"", True
