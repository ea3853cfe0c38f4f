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


def test_plain_canceled_and_reheaded_like_buildkit() -> None:
    # BuildKit: a running step interleaved by another is closed with `#N ...`, its header is
    # printed again when it ends, and a step stopped by fail-fast ends with `#N CANCELED`
    s = io.StringIO()
    r = PlainReporter(s)
    r.emit(StepStarted(5, "[a 2/2] RUN sleep 30"))
    r.emit(StepStarted(6, "[b 2/2] RUN false"))
    r.emit(StepFinished(6, 1.0, error="exit 1"))
    r.emit(StepFinished(5, 1.1, canceled=True))
    assert s.getvalue().split("\n") == [
        "#5 [a 2/2] RUN sleep 30", "#5 ...", "",
        "#6 [b 2/2] RUN false", "#6 ERROR: exit 1", "",
        "#5 [a 2/2] RUN sleep 30", "#5 CANCELED", "", ""]


def test_plain_final_lines_like_buildkit() -> None:
    s = io.StringIO()
    r = PlainReporter(s)
    r.emit(StepCached(1, "[1/2] FROM docker.io/library/busybox:latest"))
    r.emit(StepStarted(2, "[2/2] RUN true"))
    r.emit(StepFinished(2, 0.2))
    r.emit(BuildFinished(0.5, image="sha256:" + "a" * 64, tags=("docker.io/library/app:1",)))
    tail = s.getvalue().split("\n\n")[-2].split("\n")
    assert tail == ["#3 exporting to image", "#3 exporting layers done",
                    f"#3 writing image sha256:{'a' * 64} done",
                    "#3 naming to docker.io/library/app:1 done", "#3 DONE 0.0s"]


def test_plain_failed_build_prints_no_export() -> None:
    s = io.StringIO()
    r = PlainReporter(s)
    r.emit(StepStarted(1, "[1/1] RUN false"))
    r.emit(StepFinished(1, 0.1, error="exit 1"))
    r.emit(BuildFinished(0.5, error="x"))
    assert "exporting" not in s.getvalue()


def _frames(out: str) -> list[str]:
    return [f for f in out.split("[+] Building")[1:]]


def test_rich_fast_build_prints_only_the_final_frame() -> None:
    # over before the first refresh (a cached rebuild): one frame, FINISHED, the export lines
    from builder.report import RichReporter

    s = io.StringIO()
    r = RichReporter(s, force_terminal=True)
    r.emit(StepCached(1, "[1/2] FROM docker.io/library/busybox:latest"))
    r.emit(StepCached(2, "[2/2] RUN true"))
    r.emit(BuildFinished(0.05, image="sha256:" + "b" * 64, tags=("docker.io/library/app:1",)))
    out = s.getvalue()
    frames = _frames(out)
    assert len(frames) == 1, out
    assert frames[0].startswith(" 0.1s (3/3) FINISHED") or frames[0].startswith(" 0.0s (3/3) FINISHED"), out
    for want in ("CACHED [1/2] FROM docker.io/library/busybox:latest", "=> exporting to image",
                 "=> => exporting layers", "=> => writing image sha256:bbbb", "=> => naming to docker.io/library/app:1"):
        assert want in out, want


def test_rich_slow_build_refreshes_then_ends_with_the_final_frame() -> None:
    import time

    from builder.report import RichReporter

    s = io.StringIO()
    r = RichReporter(s, force_terminal=True)
    r.emit(StepStarted(1, "[1/2] RUN sleep 30"))
    r.emit(StepStarted(2, "[2/2] RUN false"))
    r.emit(StepLog(2, "boom\n"))
    time.sleep(0.5)
    r.emit(StepFinished(2, 0.5, error="exit 1"))
    r.emit(StepFinished(1, 0.5, canceled=True))
    r.emit(BuildFinished(0.6, error="exit 1"))
    frames = _frames(s.getvalue())
    assert len(frames) >= 2
    last = frames[-1]
    assert "FINISHED" not in last and "exporting" not in last  # a failed build: no export
    assert "CANCELED [1/2] RUN sleep 30" in last and "ERROR [2/2] RUN false" in last
    assert "=> => # boom" in last  # the failed step keeps its log tail


def test_rich_discarded_before_first_refresh_prints_nothing() -> None:
    from builder.report import RichReporter

    s = io.StringIO()
    r = RichReporter(s, force_terminal=True)
    r.discard()
    assert s.getvalue() == ""
