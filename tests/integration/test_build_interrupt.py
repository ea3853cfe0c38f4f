"""Ctrl-C during a RUN: every sandbox stops, temp state is removed, the store stays valid."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.buildlib import make_busybox_image, validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


@pytest.mark.parametrize("how", ["SIGINT to the group", "SIGTERM to pybuild"])
def test_interrupt_stops_parallel_sandboxes_and_cleans_up(tmp_path: Path, how: str) -> None:
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    marker = f"pybuild-int-{os.getpid()}"
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": f"""
FROM busybox AS a
RUN sleep 60 && echo {marker}-a
FROM busybox AS b
RUN sleep 61 && echo {marker}-b
FROM scratch
COPY --from=a /bin/busybox /a
COPY --from=b /bin/busybox /b
"""})
    env = dict(os.environ, PYBUILD_ROOT=str(root))
    # the RUN shells carry the marker: another `sleep 60` on the host must not count
    pattern = f"sleep 6[01] && echo {marker}"
    p = subprocess.Popen([sys.executable, "-m", "builder.cli", "build", "--progress=plain", str(ctx)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        if len(out) >= 2:
            break
        time.sleep(0.2)
    else:
        p.kill()
        pytest.fail("the two RUN steps never started")
    t0 = time.monotonic()
    if how.startswith("SIGINT"):
        os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    else:
        os.kill(p.pid, signal.SIGTERM)  # what a service manager does: only the builder
    _, err = p.communicate(timeout=30)
    assert time.monotonic() - t0 < 20
    assert p.returncode == 130, err.decode()
    assert b"Traceback" not in err
    time.sleep(0.5)
    assert subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 1, "sandbox left running"
    leftovers = [p.name for p in (root / "tmp").iterdir()] if (root / "tmp").exists() else []
    assert not [n for n in leftovers if n.startswith(("snap-", "mnt-", "copy-"))], leftovers
    with open("/proc/self/mountinfo") as f:
        assert str(root) not in f.read()
    validate_layout(root)
