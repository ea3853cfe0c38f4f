"""Fail-fast (BuildKit's): a failing step cancels the steps still running in other stages at once.

Through the CLI: the build returns within seconds while the other stage's RUN would sleep 30 s,
no process of that RUN is left, no snapshot leaks under $PYBUILD_ROOT/tmp, the error is the
failed step's (Dockerfile location + caret) and the cancelled step is shown as CANCELED."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.buildlib import build, make_busybox_image, validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


def _procs_with(marker: str) -> list[int]:
    """Pids whose command line holds `marker` (read from /proc, not pgrep: no pattern quirks)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    out.append(int(d))
        except OSError:
            pass
    return out


def _leftovers(root: Path) -> list[str]:
    tmp = root / "tmp"
    names = [p.name for p in tmp.iterdir()] if tmp.exists() else []
    return [n for n in names if n.startswith(("snap-", "mnt-", "copy-", "upper-", "active-"))]


def test_failing_run_cancels_a_sleeping_run_in_another_stage(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    marker = f"pybuild-ff-{os.getpid()}"
    # stage a is listed first: waiting on the stages in order would wait its 30 s
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": f"""
FROM busybox AS a
RUN sleep 30 && echo {marker}
FROM busybox AS b
RUN sleep 1 && false
FROM scratch
COPY --from=a /bin/busybox /a
COPY --from=b /bin/busybox /b
"""})
    t0 = time.monotonic()
    r = build(root, ctx)
    took = time.monotonic() - t0
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert took < 10, f"the build took {took:.1f}s: the other stage was not cancelled"
    assert "Traceback" not in err
    # the first failure's error, placed on its line, with the caret
    assert "Dockerfile:5:1: error: RUN 'sleep 1 && false' exited with status 1" in err, err
    assert "    5 | RUN sleep 1 && false" in err and "      | ^^^" in err, err
    # the cancelled RUN as BuildKit prints it: its header again, then CANCELED
    lines = err.splitlines()
    run_a = next(ln.split()[0] for ln in lines if ln.endswith(f"RUN sleep 30 && echo {marker}"))
    assert f"{run_a} CANCELED" in lines, err
    assert not any(ln.startswith(f"{run_a} DONE") for ln in lines), err
    time.sleep(0.3)
    assert _procs_with(marker) == [], "the cancelled RUN's processes are still running"
    assert _leftovers(root) == []
    with open("/proc/self/mountinfo") as f:
        assert str(root) not in f.read()
    validate_layout(root)


def test_failing_copy_cancels_a_running_stage(tmp_path: Path) -> None:
    # a step that fails before executing (a missing COPY source) cancels the others too
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    marker = f"pybuild-ff2-{os.getpid()}"
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": f"""
FROM busybox AS a
RUN sleep 30 && echo {marker}
FROM busybox AS b
RUN sleep 1
COPY nothere /x
FROM scratch
COPY --from=a /bin/busybox /a
COPY --from=b /bin/busybox /b
""", "f": "x"})
    t0 = time.monotonic()
    r = build(root, ctx)
    took = time.monotonic() - t0
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert took < 10, f"{took:.1f}s"
    assert "Dockerfile:6:" in err and "nothere" in err, err
    assert "CANCELED" in err
    time.sleep(0.3)
    assert _procs_with(marker) == []
    assert _leftovers(root) == []


def test_cancelled_copy_stops_and_leaves_nothing(tmp_path: Path) -> None:
    # a big COPY in one stage while another fails: it stops at a file boundary, its upper is discarded
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    files = {f"many/d{i // 500}/f{i}": "x" * 10 for i in range(20000)}
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": """
FROM busybox AS a
COPY many /many
FROM busybox AS b
RUN false
FROM scratch
COPY --from=a /bin/busybox /a
COPY --from=b /bin/busybox /b
""", **files})
    r = build(root, ctx)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "Dockerfile:5:1: error: RUN 'false' exited with status 1" in err, err
    assert _leftovers(root) == []
    validate_layout(root)


def test_a_queued_stage_never_starts_after_a_failure(tmp_path: Path) -> None:
    # --jobs 1: stage b waits for a worker; once a fails it is never started
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": """
FROM busybox AS a
RUN false
FROM busybox AS b
RUN echo never-started
FROM scratch
COPY --from=a /bin/busybox /a
COPY --from=b /bin/busybox /b
"""})
    r = build(root, ctx, "--jobs", "1")
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "Dockerfile:3:1: error: RUN 'false' exited with status 1" in err, err
    assert "RUN echo never-started" not in err, err
    assert "FROM docker.io/library/busybox:latest" in err
    assert _leftovers(root) == []
