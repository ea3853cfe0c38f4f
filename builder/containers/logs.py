"""A detached container's output log, in docker's json-file shape.

Owns: writing the container's stdout/stderr as one JSON object per line
(`{"log": "...\n", "stream": "stdout", "time": "2024-...Z"}`, as docker's json-file driver
does, so `--timestamps` and `--since` have a time for every line), and reading it back for
`pybuild logs` (tail, since, follow). Must not: decide when a container runs.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Iterator

from builder.containers.state import now_iso

LOG_NAME = "container.log"


class LogWriter:
    """Sinks for runtime.sandbox.run: each receives raw chunks and writes whole lines."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self.partial = {"stdout": b"", "stderr": b""}

    def sink(self, stream: str) -> Callable[[bytes], None]:
        def take(chunk: bytes) -> None:
            data = self.partial[stream] + chunk
            *whole, rest = data.split(b"\n")
            lines = [ln + b"\n" for ln in whole]
            if len(rest) > 16384:  # docker cuts long lines at 16K too
                lines.append(rest)
                rest = b""
            self.partial[stream] = rest
            if lines:
                self._write(lines, stream)
        return take

    def _write(self, lines: list[bytes], stream: str) -> None:
        t = now_iso()
        out = "".join(json.dumps({"log": ln.decode("utf-8", "replace"), "stream": stream, "time": t}) + "\n"
                      for ln in lines)
        data = out.encode()
        while data:
            data = data[os.write(self.fd, data):]

    def flush(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self._write([rest], stream)
                self.partial[stream] = b""

    def close(self) -> None:
        self.flush()
        os.close(self.fd)


def parse_since(text: str) -> float:
    """docker's --since: a Unix time, an RFC 3339 date/time, or a duration ago (10m, 1h30s)."""
    import re
    from datetime import datetime

    from builder.errors import UsageError

    t = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    m = re.fullmatch(r"((\d+(\.\d+)?)(h|m|s|ms))+", t)
    if m:
        secs = 0.0
        for num, _frac, unit in re.findall(r"(\d+(\.\d+)?)(ms|h|m|s)", t):
            secs += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
        return time.time() - secs
    try:
        return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise UsageError(f"invalid --since {text!r}: give a Unix time, an RFC 3339 time or a duration like 10m") from None


def _time_of(iso: str) -> float:
    from datetime import datetime, timezone

    base, _, frac = iso.rstrip("Z").partition(".")
    t = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def parse(data: bytes, since: float | None = None) -> list[dict]:
    out = []
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if since is not None and _time_of(e["time"]) < since:
            continue
        out.append(e)
    return out


def follow(path: Path, offset: int, alive: Callable[[], bool]) -> Iterator[dict]:
    """Entries appended after byte `offset`, until `alive()` says the writer is gone."""
    buf = b""
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            chunk = f.read(65536)
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for ln in lines:
                    try:
                        yield json.loads(ln)
                    except ValueError:
                        continue
                continue
            if not alive():
                chunk = f.read()
                if not chunk:
                    return
                buf += chunk
                continue
            time.sleep(0.05)
