"""Small stdio helpers for the sandbox parent: sinks, /dev/null, pty sizes, raw mode.

Owns: turning a caller's output target into a writer, and the terminal ioctls around a pty.
Must not: decide what is relayed where (runtime.sandbox does) or import builder.
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
