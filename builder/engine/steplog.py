"""A RUN step's output on its way to the reporter: BuildKit's per-step log limits.

Owns: clipping each output stream of a step as BuildKit does (util/progress/logs: at most
MAX_SIZE bytes per stream, and at most MAX_SPEED bytes per started second; past that the
reporter gets one `[output clipped, log limit 2MiB reached]` line), writing what was clipped
to a file under `$ROOT/logs/` so nothing is lost, and decoding bytes to text without breaking
multi-byte characters. Memory and time stay linear in the output, whatever its shape (a RUN
printing without newlines). Must not: print, or keep the output itself (callers keep a tail).

Limits: PYBUILD_STEP_LOG_MAX_SIZE and PYBUILD_STEP_LOG_MAX_SPEED (bytes, bytes/second; -1 =
no limit), falling back to BuildKit's BUILDKIT_STEP_LOG_MAX_SIZE / _SPEED, then to
BuildKit's defaults: 2 MiB and 200 KiB/s.
"""
from __future__ import annotations

import codecs
import math
import os
import time
from pathlib import Path
from typing import Callable

DEFAULT_MAX_SIZE = 2 << 20
DEFAULT_MAX_SPEED = 200 << 10


def _limit(name: str, default: int) -> int:
    for var in (f"PYBUILD_STEP_LOG_{name}", f"BUILDKIT_STEP_LOG_{name}"):
        raw = os.environ.get(var)
        if raw is not None:
            try:
                return int(raw)
            except ValueError:
                continue  # BuildKit ignores an unparsable value too
    return default


def human(n: int) -> str:
    """Bytes as BuildKit's messages write them: 2MiB, 200KiB, 1.5MiB, 100B."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return f"{n}B"


class _Stream:
    def __init__(self) -> None:
        self.size = 0
        self.clipping = False
        self.clip_for_speed = False
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")


class StepLog:
    """`feed(data, stream)` per chunk of a step's output; `close()` at the end.

    `emit(text, stream)` receives what the reporter shows; `log_dir` is where the clipped rest
    goes (a file made on the first clip: `<log_dir>/<name>.log`)."""

    def __init__(self, emit: Callable[[str, str], None], log_dir: Path, name: str, *,
                 max_size: int | None = None, max_speed: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.emit = emit
        self.log_dir = log_dir
        self.name = name
        self.max_size = _limit("MAX_SIZE", DEFAULT_MAX_SIZE) if max_size is None else max_size
        self.max_speed = _limit("MAX_SPEED", DEFAULT_MAX_SPEED) if max_speed is None else max_speed
        self.clock = clock
        self.started = clock()
        self.streams: dict[str, _Stream] = {}
        self.file = None
        self.path: Path | None = None

    def _allowed(self, s: _Stream, n: int) -> int:
        """How many of the next n bytes of stream s may be shown (BuildKit's checkLimit)."""
        old = s.size
        s.size += n
        cap = -1
        if self.max_speed != -1:
            cap = max(1, math.ceil(self.clock() - self.started)) * self.max_speed
            s.clip_for_speed = True
        if self.max_size != -1 and (cap == -1 or cap > self.max_size):
            cap = self.max_size
            s.clip_for_speed = False
        if cap == -1 or s.size <= cap:
            return n
        return max(0, cap - old)

    def feed(self, data: bytes, stream: str = "stdout") -> None:
        s = self.streams.get(stream)
        if s is None:
            s = self.streams[stream] = _Stream()
        keep = self._allowed(s, len(data))
        shown, rest = data[:keep], data[keep:]
        text = s.decoder.decode(shown)
        if not rest:
            s.clipping = False  # (under the speed limit, output resumes in a later second)
            if text:
                self.emit(text, stream)
            return
        if not s.clipping:
            s.clipping = True
            limit = f"{human(self.max_speed)}/s" if s.clip_for_speed else human(self.max_size)
            where = self._open()
            text += f"\n[output clipped, log limit {limit} reached]\n"
            if where:
                text += f"[the rest of the output: {where}]\n"
            s.decoder.reset()
        if text:
            self.emit(text, stream)
        if self.file is not None:
            try:
                self.file.write(rest)
            except OSError:
                self.close()

    def _open(self) -> str | None:
        if self.file is None and self.path is None:
            try:
                self.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.path = self.log_dir / f"{self.name}.log"
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                self.file = os.fdopen(fd, "wb", buffering=1 << 16)
            except OSError:
                self.file = None
                return None
        return str(self.path) if self.file is not None else None

    def close(self) -> None:
        for stream, s in self.streams.items():
            tail = s.decoder.decode(b"", final=True)
            if tail and not s.clipping:
                self.emit(tail, stream)
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
            self.file = None
