"""builder.engine.steplog: BuildKit's per-stream clipping, with a fake clock."""
from __future__ import annotations

from pathlib import Path

from builder.engine.steplog import StepLog, human


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _log(tmp_path: Path, **kw):
    got: list[tuple[str, str]] = []
    clock = Clock()
    log = StepLog(lambda text, stream: got.append((stream, text)), tmp_path / "logs", "s1", clock=clock, **kw)
    return log, got, clock


def test_human_units() -> None:
    assert [human(n) for n in (100, 200 << 10, 2 << 20, 3 << 19, 1 << 30)] == \
        ["100B", "200KiB", "2MiB", "1.5MiB", "1GiB"]


def test_size_limit_per_stream_and_rest_in_a_file(tmp_path: Path) -> None:
    log, got, _ = _log(tmp_path, max_size=10, max_speed=-1)
    log.feed(b"0123456", "stdout")
    log.feed(b"789abcdef", "stdout")
    log.feed(b"more", "stdout")
    log.feed(b"err", "stderr")  # stderr has its own budget
    log.close()
    out = "".join(t for s, t in got if s == "stdout")
    assert out.startswith("0123456789\n[output clipped, log limit 10B reached]\n[the rest of the output: ")
    assert out.count("clipped") == 1
    assert ("stderr", "err") in got
    assert (tmp_path / "logs" / "s1.log").read_bytes() == b"abcdefmore"


def test_speed_limit_resumes_in_a_later_second(tmp_path: Path) -> None:
    log, got, clock = _log(tmp_path, max_size=1000, max_speed=4)
    log.feed(b"abcdef")
    clock.t += 1.5  # two started seconds: 8 bytes in all
    log.feed(b"gh")
    log.feed(b"ijk")
    text = "".join(t for _, t in got)
    assert text.startswith("abcd\n[output clipped, log limit 4B/s reached]\n")
    # BuildKit counts clipped bytes too: 8 produced by now, so "gh" fits and output resumes;
    # "ijk" is over again and gets a new message, as in BuildKit
    assert "s1.log]\ngh\n[output clipped, log limit 4B/s reached]\n" in text
    assert text.count("clipped") == 2
    log.close()
    assert (tmp_path / "logs" / "s1.log").read_bytes() == b"efijk"


def test_multibyte_characters_split_across_chunks(tmp_path: Path) -> None:
    log, got, _ = _log(tmp_path, max_size=-1, max_speed=-1)
    data = "héllo wörld".encode()
    for i in range(len(data)):
        log.feed(data[i:i + 1])
    log.close()
    assert "".join(t for _, t in got) == "héllo wörld"
    assert not (tmp_path / "logs").exists()
