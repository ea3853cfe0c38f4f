"""Reporters: plain lines like BuildKit's, one JSON event per line, recording."""
from __future__ import annotations

import io
import json

from builder.report import (BuildFinished, JsonReporter, PlainReporter, RecordingReporter, StepCached,
                            StepFinished, StepLog, StepStarted, make_reporter)


def test_plain_format() -> None:
    s = io.StringIO()
    r = PlainReporter(s)
    r.emit(StepCached(1, "[1/3] COPY a /a"))
    r.emit(StepStarted(2, "[2/3] RUN echo hi"))
    r.emit(StepLog(2, "hel"))
    r.emit(StepLog(2, "lo\nworld\npart"))
    r.emit(StepFinished(2, 0.25))
    out = s.getvalue().splitlines()
    assert out[0] == "#1 [1/3] COPY a /a" and out[1] == "#1 CACHED"
    assert "#2 [2/3] RUN echo hi" in out
    logs = [ln for ln in out if ln.startswith("#2 0.")]
    assert [ln.split(" ", 2)[2] for ln in logs] == ["hello", "world"]
    assert "#2 part" in out
    assert any(ln.startswith("#2 DONE 0.") for ln in out)


def test_plain_error_line() -> None:
    s = io.StringIO()
    PlainReporter(s).emit(StepFinished(4, 1.0, error="exit code 1"))
    assert "#4 ERROR: exit code 1" in s.getvalue()


def test_json_one_event_per_line() -> None:
    s = io.StringIO()
    r = JsonReporter(s)
    r.emit(StepStarted(1, "x"))
    r.emit(BuildFinished(1.0, image="sha256:abc"))
    recs = [json.loads(ln) for ln in s.getvalue().splitlines()]
    assert [x["event"] for x in recs] == ["StepStarted", "BuildFinished"]
    assert recs[1]["image"] == "sha256:abc"


def test_recording_and_factory() -> None:
    r = RecordingReporter()
    r.emit(StepCached(1, "a"))
    assert r.of(StepCached) == [StepCached(1, "a")]
    assert isinstance(make_reporter("plain", io.StringIO()), PlainReporter)
    assert isinstance(make_reporter("auto", io.StringIO()), PlainReporter)  # not a tty
    assert isinstance(make_reporter("json", io.StringIO()), JsonReporter)


def test_rich_reporter_renders_steps_and_tail() -> None:
    from builder.report import RichReporter

    s = io.StringIO()
    r = RichReporter(s)
    r.emit(StepCached(1, "[1/3] FROM busybox"))
    r.emit(StepStarted(2, "[2/3] RUN make"))
    r.emit(StepLog(2, "compiling a\ncompiling b\n"))
    r.emit(StepFinished(2, 1.5, error="exit 2"))
    r.emit(BuildFinished(2.0, error="x"))
    out = s.getvalue()
    assert "FROM busybox" in out and "CACHED" in out and "RUN make" in out and "ERROR" in out
    assert "compiling b" in out  # a failed step keeps its log tail on screen


def test_rich_reporter_keeps_each_step_on_one_line() -> None:
    # a long instruction is cut to the terminal's width, the timer stays at the right edge
    from rich.console import Console

    from builder.report import RichReporter

    s = io.StringIO()
    r = RichReporter(s)
    r.console = Console(file=s, width=60, highlight=False, color_system=None)
    r.emit(StepStarted(1, "[1/1] RUN " + "x" * 200))
    r.emit(StepFinished(1, 0.4))
    text = r._render().plain.splitlines()
    step = next(ln for ln in text if "RUN" in ln)
    assert len(step) == 60 and step.endswith("x… 0.0s"), step
