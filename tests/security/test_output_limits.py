"""A RUN's output cannot cost the builder unbounded time or memory (issue 14, item 12).

The old code kept a partial line as one growing string: 64 MB printed without a newline took
~30 s (quadratic) and RSS grew with the output. Now partial lines are flushed in bounded pieces
and each stream's log is clipped as BuildKit clips it (2 MiB, 200 KiB/s, the same message),
the clipped rest going to a file under $PYBUILD_ROOT/logs/. Through the real entry point; the
CLI's peak RSS is measured with getrusage(RUSAGE_CHILDREN) in a wrapper process.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.buildlib import make_busybox_image, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]

MIB = 1 << 20


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("outlimits")
    make_busybox_image(d / "root", d)
    return d / "root"


_WRAPPER = """
import resource, subprocess, sys, time
t = time.monotonic()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=open(sys.argv[0] + '.err', 'wb'))
print(p.returncode, time.monotonic() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _build(root: Path, tmp: Path, run: str, *, env: dict | None = None, tag: str = "t") -> tuple[int, float, int, bytes]:
    """Build `FROM busybox; RUN <run>` with --progress=plain: (exit, seconds, peak RSS KiB, stderr)."""
    ctx = write_ctx(tmp / f"ctx-{tag}", {"Dockerfile": f"FROM busybox\nRUN {run}\n"})
    wrapper = tmp / f"wrap-{tag}"
    e = {**os.environ, "PYBUILD_ROOT": str(root), "PYTHONPATH": str(REPO), **(env or {})}
    out = subprocess.run([sys.executable, "-c", _WRAPPER.replace("sys.argv[0]", repr(str(wrapper))),
                          sys.executable, "-m", "builder.cli", "build", "--no-cache", "--progress=plain",
                          "-t", tag, str(ctx)], env=e, cwd=REPO, capture_output=True, timeout=600)
    code, secs, rss = out.stdout.split()
    return int(code), float(secs), int(rss), Path(f"{wrapper}.err").read_bytes()


def _shown(stderr: bytes, step_text: bytes = b"x") -> int:
    """Bytes of the RUN's output the plain progress showed (its `#N 0.123 ` prefixes removed)."""
    n = 0
    for ln in stderr.split(b"\n"):
        m = re.match(rb"#\d+ (?:\d+\.\d+ )?(.*)$", ln)
        if m and m.group(1) and not m.group(1).strip(step_text):  # (not the step's title)
            n += len(m.group(1))
    return n


def test_output_without_newlines_is_linear_and_bounded(root: Path, tmp_path: Path) -> None:
    # no speed limit here: the size limit alone must keep it bounded, and the whole 64 MB
    # still has to pass through the relay and the reporter's line splitting
    env = {"PYBUILD_STEP_LOG_MAX_SPEED": "-1"}
    small = _build(root, tmp_path, "head -c 8388608 /dev/zero | tr '\\0' x", env=env, tag="small")
    big = _build(root, tmp_path, "head -c 67108864 /dev/zero | tr '\\0' x", env=env, tag="big")
    assert small[0] == 0 and big[0] == 0, big[3][-2000:]
    assert big[1] < 20, f"64 MB of output took {big[1]:.1f}s"
    # 8x the output costs at most a few MB more peak memory (the old code held it all, twice)
    assert big[2] - small[2] < 24 * 1024, (small[2], big[2])
    err = big[3].decode(errors="replace")
    assert "[output clipped, log limit 2MiB reached]" in err
    assert _shown(big[3]) == 2 * MIB
    m = re.search(r"\[the rest of the output: (\S+)\]", err)
    assert m, err[-2000:]
    rest = Path(m.group(1))
    assert rest.parent == root / "logs" and rest.stat().st_size == 64 * MIB - 2 * MIB
    assert (rest.stat().st_mode & 0o777) == 0o600 and (rest.parent.stat().st_mode & 0o777) == 0o700
    with open(rest, "rb") as f:
        assert set(f.read(MIB)) == {ord("x")}
    assert len(big[3]) < 3 * MIB


def test_speed_limit_clips_like_buildkit(root: Path, tmp_path: Path) -> None:
    code, _secs, _rss, err = _build(root, tmp_path, "head -c 4194304 /dev/zero | tr '\\0' y; echo; echo END >&2",
                                    tag="speed")
    assert code == 0
    text = err.decode()
    assert "[output clipped, log limit 200KiB/s reached]" in text
    assert _shown(err, b"y") <= 2 * 200 * 1024  # at most two started seconds' worth
    assert re.search(r"#\d+ \d+\.\d+ END$", text, re.M), text[-1000:]  # stderr has its own budget


def test_environment_raises_the_limits(root: Path, tmp_path: Path) -> None:
    code, _secs, _rss, err = _build(root, tmp_path, "head -c 3145728 /dev/zero | tr '\\0' z", tag="nolimit",
                                    env={"BUILDKIT_STEP_LOG_MAX_SIZE": "-1", "PYBUILD_STEP_LOG_MAX_SPEED": "-1"})
    assert code == 0
    assert b"output clipped" not in err
    assert _shown(err, b"z") == 3 * MIB


def test_small_output_and_utf8_pass_unchanged(root: Path, tmp_path: Path) -> None:
    code, _secs, _rss, err = _build(root, tmp_path, "printf 'h\\303\\251llo\\nw\\303\\266rld'", tag="utf8")
    assert code == 0
    lines = [re.sub(r"^#\d+ \d+\.\d+ ", "", ln) for ln in err.decode().splitlines()]
    assert "héllo" in lines and any(ln.endswith("wörld") for ln in lines), lines
    assert "clipped" not in err.decode()


def test_json_progress_is_clipped_too(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx-json", {"Dockerfile": "FROM busybox\nRUN head -c 5242880 /dev/zero | tr '\\0' q\n"})
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "builder.cli", "build", "--no-cache", "--progress=json", str(ctx)],
                       env={**os.environ, "PYBUILD_ROOT": str(root), "PYBUILD_STEP_LOG_MAX_SPEED": "-1"},
                       cwd=REPO, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert time.monotonic() - t < 60
    logs = [json.loads(ln) for ln in r.stderr.splitlines() + r.stdout.splitlines() if ln.startswith(b"{")]
    data = "".join(e["data"] for e in logs if e.get("event") == "StepLog")
    assert data.count("q") == 2 * MIB and "[output clipped, log limit 2MiB reached]" in data
