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
    canceled: bool = False  # stopped because another step failed or the build was interrupted


class Warning(Record):  # noqa: A001 - the event name docs/design.md gives
    message: str


class BuildFinished(Record):
    seconds: float
    image: str | None = None  # the image (config) digest, when there is one
    error: str | None = None
    tags: tuple[str, ...] = ()  # the names the image was tagged with, in full (docker.io/library/x:1)


def export_lines(event: BuildFinished) -> list[str]:
    """The sub-steps BuildKit prints under `exporting to image` (plain and tty)."""
    out = ["exporting layers", f"writing image {event.image}"]
    out += [f"naming to {t}" for t in event.tags]
    return out


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
    """BuildKit's plain output: `#N [stage i/n] INSTR`, output lines `#N 0.123 text`, `#N DONE 0.4s`.

    As BuildKit, when another step's lines come while a step runs, the running one is closed
    with `#N ...` and its header is printed again when its lines (or its end) come back."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.started: dict[int, float] = {}
        self.partial: dict[int, str] = {}
        self.names: dict[int, str] = {}
        self.last: int | None = None  # the step whose lines were written last, while it runs
        self.top = 0  # the highest step number: `exporting to image` takes the next one

    PARTIAL_MAX = 8192  # a partial line longer than this is printed as a line of its own

    def _w(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _switch(self, sid: int | None) -> None:
        """Lines of step `sid` follow: close the interleaved running step, re-head `sid`."""
        if self.last == sid:
            return
        if self.last is not None:
            self._w(f"#{self.last} ...\n\n")
            self.last = None
        if sid is not None and sid in self.names:
            self._w(f"#{sid} {self.names[sid]}\n")
            self.last = sid

    def emit(self, event: Event) -> None:
        with self.lock:
            if isinstance(event, (StepStarted, StepCached, StepFinished)):
                self.top = max(self.top, event.id)
            if isinstance(event, StepStarted):
                self._switch(None)
                self.started[event.id] = time.monotonic()
                self.names[event.id] = event.name
                self._w(f"#{event.id} {event.name}\n")
                self.last = event.id
            elif isinstance(event, StepCached):
                self._switch(None)
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
                    self._switch(event.id)
                    self._w("".join(f"#{event.id} {t:.3f} {ln}\n" for ln in lines))
                if rest:
                    self.partial[event.id] = rest
            elif isinstance(event, StepProgress):
                self._switch(event.id)
                self._w(f"#{event.id} {event.message}\n")
            elif isinstance(event, StepFinished):
                self._switch(event.id)
                rest = self.partial.pop(event.id, "")
                if rest:
                    self._w(f"#{event.id} {rest}\n")
                if event.canceled:
                    self._w(f"#{event.id} CANCELED\n\n")
                elif event.error:
                    self._w(f"#{event.id} ERROR: {event.error}\n\n")
                else:
                    self._w(f"#{event.id} DONE {event.seconds:.1f}s\n\n")
                self.names.pop(event.id, None)
                self.last = None
            elif isinstance(event, Warning):
                self._switch(None)
                self._w(f"WARNING: {event.message}\n")
            elif isinstance(event, BuildFinished) and event.image and not event.error:
                self._switch(None)
                n = self.top + 1
                body = "".join(f"#{n} {ln} done\n" for ln in export_lines(event))
                self._w(f"#{n} exporting to image\n{body}#{n} DONE 0.0s\n\n")


class RichReporter:
    """A live view like BuildKit's tty mode: `[+] Building 1.2s (3/5)`, one line per step with
    CACHED/ERROR/CANCELED before its name and its time at the right edge, the log tail of running
    and failed steps beneath, and on success `FINISHED` with the `exporting to image` lines.

    The live display starts one refresh interval after the first step: a build that is over by
    then (a cached rebuild, replayed at once) prints its final frame only, a reporter dropped
    unused (`discard`) prints nothing, and no empty `(0/0)` frame is ever shown."""

    TAIL = 6
    REFRESH = 8  # frames per second

    def __init__(self, stream: IO[str], *, force_terminal: bool | None = None) -> None:
        from rich.console import Console  # lazy: 50 ms of imports, only for a terminal
        from rich.live import Live

        self.console = Console(file=stream, highlight=False, force_terminal=force_terminal)
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.steps: dict[int, dict] = {}
        self.finished: BuildFinished | None = None
        self.closed = False
        self.live = Live(console=self.console, refresh_per_second=self.REFRESH, transient=False,
                         get_renderable=self._render)
        self._timer: threading.Timer | None = None  # armed by the first step: starts the display

    def _start(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.live.start(refresh=True)

    def _close(self) -> bool:
        """Stop the timer; True when the live display had started."""
        with self.lock:
            self.closed = True
            timer = self._timer
        if timer is not None:
            timer.cancel()
        return self.live.is_started

    def discard(self) -> None:
        """Drop this reporter without output (e.g. the no-op fast path missed): an already shown
        frame is erased."""
        if self._close():
            self.live.transient = True
            self.live.stop()

    def _render(self):
        from rich.text import Text

        now = time.monotonic()
        steps = dict(self.steps)
        fin = self.finished
        rows: list[tuple[str, str, str | None, list[str]]] = []  # (text, time, style, log lines)
        for sid in sorted(steps):
            s = steps[sid]
            dur = (s["end"] or now) - s["start"]
            if s["cached"]:
                prefix, style = "CACHED ", "blue"
            elif s["canceled"]:
                prefix, style = "CANCELED ", "yellow"
            elif s["error"]:
                prefix, style = "ERROR ", "red"
            else:
                prefix, style = "", ("blue" if s["done"] else None)
            lines = s["lines"][-self.TAIL:] if (not s["done"] or s["error"]) else []
            rows.append((f" => {prefix}{s['name']}", f"{dur:.1f}s", style, lines))
        done = sum(1 for s in steps.values() if s["done"])
        total = len(steps)
        ok = fin is not None and fin.error is None and fin.image is not None
        if ok:
            rows.append((" => exporting to image", "0.0s", "blue", []))
            rows += [(f" => => {ln}", "0.0s", "blue", []) for ln in export_lines(fin)]
            done, total = done + 1, total + 1
        secs = (fin.seconds if fin is not None else now - self.t0)
        out = Text(f"[+] Building {secs:.1f}s ({done}/{total}){' FINISHED' if ok else ''}\n")
        width = max(40, self.console.width)  # one terminal line per row, as BuildKit: no wrapping
        for head, timer, style, lines in rows:
            room = width - len(timer) - 1
            if len(head) > room:
                head = head[:room - 1] + "…"
            out.append(head.ljust(room) + f" {timer}\n", style=style)
            for ln in lines:
                out.append(f" => => # {ln}"[:width] + "\n", style="dim")
        out.rstrip()
        return out

    def emit(self, event: Event) -> None:
        with self.lock:
            now = time.monotonic()
            if isinstance(event, (StepStarted, StepCached)):
                if self._timer is None and not self.closed:
                    self._timer = threading.Timer(1 / self.REFRESH, self._start)
                    self._timer.daemon = True
                    self._timer.start()
                self.steps[event.id] = {"name": event.name, "start": now, "end": None, "done": False,
                                        "cached": isinstance(event, StepCached), "error": None,
                                        "canceled": False, "lines": []}
                if isinstance(event, StepCached):
                    self.steps[event.id].update(done=True, end=now)
            elif isinstance(event, StepLog) and event.id in self.steps:
                lines = self.steps[event.id]["lines"]
                lines.extend(ln for ln in event.data.splitlines() if ln.strip())
                del lines[:-self.TAIL * 4]
            elif isinstance(event, StepFinished) and event.id in self.steps:
                self.steps[event.id].update(done=True, end=now, error=event.error, canceled=event.canceled)
            elif isinstance(event, Warning):
                self.console.print(f"[yellow]WARNING:[/] {event.message}")
            elif isinstance(event, BuildFinished):
                self.finished = event
        if isinstance(event, BuildFinished):
            if self._close():
                self.live.stop()  # renders the final frame in place of the last one
            else:
                self.console.print(self._render())  # over before the first refresh: one frame


def make_reporter(mode: str, stream: IO[str]) -> Reporter:
    """`--progress` value → reporter. auto = rich on a terminal, plain otherwise."""
    if mode == "quiet":
        return NullReporter()
    if mode in ("json", "rawjson"):  # rawjson: the name buildx users know (the format is pybuild's)
        return JsonReporter(stream)
    if mode == "auto":
        mode = "tty" if stream.isatty() else "plain"
    if mode == "tty":
        return RichReporter(stream)
    return PlainReporter(stream)
