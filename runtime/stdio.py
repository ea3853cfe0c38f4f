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
