"""Front-end speed: parse a 1,000-line Dockerfile in a warm process (target <= 50 ms),
a cached parse (no Lark), and `import builder.dockerfile` in a fresh process.

Run: python bench/frontend_parse.py   (prints min/median/max in milliseconds)
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builder.dockerfile import parse_dockerfile, parse_dockerfile_cached  # noqa: E402


def make_dockerfile(lines: int = 1000) -> str:
    out = ["# syntax=docker/dockerfile:1", "ARG BASE=debian:12", "FROM ${BASE} AS build"]
    i = 0
    while len(out) < lines - 4:
        i += 1
        out += [f"ENV V{i}=value{i} W{i}=\"quoted $V{i}\"",
                f"RUN --mount=type=cache,target=/var/cache/{i} apt-get install -y pkg{i} \\",
                f"    && echo done {i}",
                f"COPY --chown=1000:1000 --chmod=644 src/{i}/ /app/{i}/",
                f"LABEL org.example.n{i}=\"{i}\"",
                f'CMD ["/app/bin", "--n", "{i}"]']
    out = out[: lines - 4] + ["FROM scratch", "COPY --from=build /app /app", "WORKDIR /app", 'ENTRYPOINT ["/app/bin"]']
    return "\n".join(out) + "\n"


def stats(name: str, samples: list[float]) -> None:
    ms = [s * 1000 for s in samples]
    print(f"{name:<44} min {min(ms):7.2f} ms  median {statistics.median(ms):7.2f} ms  max {max(ms):7.2f} ms")


def main() -> None:
    text = make_dockerfile()
    assert text.count("\n") == 1000
    parse_dockerfile(text)  # warm: grammar loaded, caches filled
    runs = []
    for _ in range(15):
        t = time.perf_counter()
        df = parse_dockerfile(text)
        runs.append(time.perf_counter() - t)
    stats(f"parse 1,000 lines ({len(df.instructions)} instructions)", runs)
    with tempfile.TemporaryDirectory() as d:
        parse_dockerfile_cached(text, "Dockerfile", Path(d))
        runs = []
        for _ in range(15):
            t = time.perf_counter()
            parse_dockerfile_cached(text, "Dockerfile", Path(d))
            runs.append(time.perf_counter() - t)
        stats("cached parse (unpickle, no Lark)", runs)
    runs = []
    for _ in range(10):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", "import builder.dockerfile"], check=True,
                       cwd=Path(__file__).resolve().parent.parent)
        runs.append(time.perf_counter() - t)
    stats("fresh python -I + import builder.dockerfile", runs)
    runs = []
    for _ in range(10):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)
        runs.append(time.perf_counter() - t)
    stats("fresh python -I (baseline)", runs)


if __name__ == "__main__":
    main()
