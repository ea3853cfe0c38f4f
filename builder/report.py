"""Progress reporting: the Reporter protocol, its frozen events, and the four reporters.

Owns: `BuildStarted StepStarted StepCached StepLog StepProgress StepFinished Warning BuildFinished`
(frozen values the engine emits), `Reporter` (one method: `emit(event)`), and `PlainReporter`
(`#3 [build 2/5] RUN make` lines like BuildKit's plain mode), `JsonReporter` (one event per line),
`RecordingReporter` (keeps events, for tests) and `RichReporter` (a live tty view with per-step
timers, CACHED and the tail of RUN output). `make_reporter(mode, stream)` picks one for
`--progress=auto|tty|plain|json|quiet`.

Must not: build anything or raise build errors. rich is imported lazily, only by RichReporter
(start-up budget). Reporters are called from worker threads: each one serializes with a lock.
"""
from __future__ import annotations

import json
import threading
import time
from typing import IO, Protocol

from runtime.record import Record, asdict, field


class BuildStarted(Record):
    steps: int
    context: str = ""


class StepStarted(Record):
    id: int  # the "#N" number, unique per build
    name: str  # "[build 2/5] RUN make"


class StepCached(Record):
    id: int
    name: str


class StepLog(Record):
    id: int
    data: str
    stream: str = "stdout"


class StepProgress(Record):
    id: int
    message: str
    current: int = 0
    total: int = 0


class StepFinished(Record):
    id: int
    seconds: float
    error: str | None = None


class Warning(Record):  # noqa: A001 - the event name docs/design.md gives
    message: str


class BuildFinished(Record):
    seconds: float
    image: str | None = None  # the image (config) digest, when there is one
    error: str | None = None


Event = BuildStarted | StepStarted | StepCached | StepLog | StepProgress | StepFinished | Warning | BuildFinished


class Reporter(Protocol):
    def emit(self, event: Event) -> None: ...


class NullReporter:
    def emit(self, event: Event) -> None:
        pass


class RecordingReporter(Record, frozen=False):
    """Keeps every event; tests read `.events` or `.kinds()`."""

    events: list = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


class JsonReporter:
    """One JSON object per line: {"event": "StepStarted", ...fields}."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def emit(self, event: Event) -> None:
        rec = {"event": type(event).__name__, "time": round(time.time(), 3), **asdict(event)}
        with self.lock:
            self.stream.write(json.dumps(rec, sort_keys=True) + "\n")
            self.stream.flush()


class PlainReporter:
    """BuildKit's plain output: `#N [stage i/n] INSTR`, output lines `#N 0.123 text`, `#N DONE 0.4s`."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.started: dict[int, float] = {}
        self.partial: dict[int, str] = {}

    PARTIAL_MAX = 8192  # a partial line longer than this is printed as a line of its own

    def _w(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def emit(self, event: Event) -> None:
        with self.lock:
            if isinstance(event, StepStarted):
                self.started[event.id] = time.monotonic()
                self._w(f"#{event.id} {event.name}\n")
            elif isinstance(event, StepCached):
                self._w(f"#{event.id} {event.name}\n#{event.id} CACHED\n\n")
            elif isinstance(event, StepLog):
                t = time.monotonic() - self.started.get(event.id, time.monotonic())
                buf = self.partial.pop(event.id, "") + event.data
                *lines, rest = buf.split("\n")
                if len(rest) >= self.PARTIAL_MAX:
                    # output without newlines: flush it in bounded pieces, so memory stays flat
                    # and time linear (each chunk is not appended to an ever-growing string)
                    lines.append(rest)
                    rest = ""
                if lines:
                    self._w("".join(f"#{event.id} {t:.3f} {ln}\n" for ln in lines))
                if rest:
                    self.partial[event.id] = rest
            elif isinstance(event, StepProgress):
                self._w(f"#{event.id} {event.message}\n")
            elif isinstance(event, StepFinished):
                rest = self.partial.pop(event.id, "")
                if rest:
                    self._w(f"#{event.id} {rest}\n")
                if event.error:
                    self._w(f"#{event.id} ERROR: {event.error}\n\n")
                else:
                    self._w(f"#{event.id} DONE {event.seconds:.1f}s\n\n")
            elif isinstance(event, Warning):
                self._w(f"WARNING: {event.message}\n")
            elif isinstance(event, BuildFinished) and event.image and not event.error:
                self._w(f"#  writing image {event.image} done ({event.seconds:.1f}s)\n")


class RichReporter:
    """A live view like BuildKit's tty mode: one line per step with a timer, the log tail beneath."""

    TAIL = 6

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console  # lazy: 50 ms of imports, only for a terminal
        from rich.live import Live

        self.console = Console(file=stream, highlight=False)
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.steps: dict[int, dict] = {}
        self.live = Live(console=self.console, refresh_per_second=8, transient=False,
                         get_renderable=self._render)
        self.live.start()

    def _render(self):
        from rich.text import Text

        out = Text(f"[+] Building {time.monotonic() - self.t0:.1f}s "
                   f"({sum(1 for s in self.steps.values() if s['done'])}/{len(self.steps)})\n", style="bold")
        width = max(40, self.console.width)  # one terminal line per row, as BuildKit: no wrapping
        for sid in sorted(self.steps):
            s = self.steps[sid]
            dur = (s["end"] or time.monotonic()) - s["start"]
            status = "CACHED" if s["cached"] else ("ERROR" if s["error"] else f"{dur:.1f}s")
            style = "blue" if s["cached"] else ("red" if s["error"] else ("green" if s["done"] else "yellow"))
            room = width - len(status) - 1
            head = f" => {s['name']}"
            if len(head) > room:
                head = head[:room - 1] + "…"
            out.append(head.ljust(room) + f" {status}\n", style=style)
            if not s["done"] or s["error"]:
                for ln in s["lines"][-self.TAIL:]:
                    out.append(f" => => {ln}"[:width] + "\n", style="dim")
        return out

    def emit(self, event: Event) -> None:
        with self.lock:
            now = time.monotonic()
            if isinstance(event, (StepStarted, StepCached)):
                self.steps[event.id] = {"name": event.name, "start": now, "end": None, "done": False,
                                        "cached": isinstance(event, StepCached), "error": None, "lines": []}
                if isinstance(event, StepCached):
                    self.steps[event.id].update(done=True, end=now)
            elif isinstance(event, StepLog) and event.id in self.steps:
                lines = self.steps[event.id]["lines"]
                lines.extend(ln for ln in event.data.splitlines() if ln.strip())
                del lines[:-self.TAIL * 4]
            elif isinstance(event, StepFinished) and event.id in self.steps:
                self.steps[event.id].update(done=True, end=now, error=event.error)
            elif isinstance(event, Warning):
                self.console.print(f"[yellow]WARNING:[/] {event.message}")
            elif isinstance(event, BuildFinished):
                self.live.update(self._render(), refresh=True)
                self.live.stop()


def make_reporter(mode: str, stream: IO[str]) -> Reporter:
    """`--progress` value → reporter. auto = rich on a terminal, plain otherwise."""
    if mode == "quiet":
        return NullReporter()
    if mode == "json":
        return JsonReporter(stream)
    if mode == "auto":
        mode = "tty" if stream.isatty() else "plain"
    if mode == "tty":
        return RichReporter(stream)
    return PlainReporter(stream)
