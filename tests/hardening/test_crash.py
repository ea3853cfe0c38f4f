"""Crash consistency: SIGKILL the builder at random points in 50 builds.

After every kill: no process or mount of that build is left, `pybuild store verify` passes (plus
cache records/memos parse and name stored blobs, snapshots are whole), and re-running the same
build succeeds and shows as CACHED every step the killed build had reported DONE. The kill points
are drawn uniformly over a full build's duration (seed printed, PYBUILD_CRASH_SEED replays a run),
so they land in start-up, Dockerfile parsing, sandbox set-up, RUN, layer writing, commit and
tagging. Only the builder pid is killed (a crash, not a clean-up by process group): its sandbox
must die with it.
"""
from __future__ import annotations

import os
import random
import signal
import time
import uuid
from pathlib import Path

import pytest

from tests.hardening.crashlib import build_popen, check_store, leftovers
from tests.integration.buildlib import build, make_busybox_image, steps, validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]

KILLS = 50


def _dockerfile(mark: str, i: int) -> str:
    # Unique per iteration (mark-i), so every RUN and the second COPY's layer are real work.
    return (f"FROM busybox\nCOPY f{i % 4}.txt /data/\n"
            f"RUN dd if=/dev/urandom of=/blob bs=64k count=4 2>/dev/null && echo {mark}-{i} > /a\n"
            f"COPY g.txt /g/\nENV I={i}\nRUN cat /a /g/g.txt > /b\n")


def _done(stderr: bytes) -> list[str]:
    return [name for name, state in steps(stderr) if state == "DONE"]


def test_kill_9_at_random_points(tmp_path: Path) -> None:
    seed = int(os.environ.get("PYBUILD_CRASH_SEED", random.randrange(1 << 30)))
    print(f"PYBUILD_CRASH_SEED={seed}")
    rnd = random.Random(seed)
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    mark = "crash" + uuid.uuid4().hex[:12]
    ctx = write_ctx(tmp_path / "ctx", {**{f"f{k}.txt": f"file {k}\n" for k in range(4)}, "g.txt": "g\n"})

    # How long one uninterrupted build of the killed builds' shape takes here: the kill window.
    # The first build also unpacks the base (colder, often much slower, more so under load), so
    # the window is the median of three warm builds, each with its own unique steps as a killed
    # build has; a window measured on the cold one lands most kills after the build ended.
    durations = []
    for warm in (-1, -2, -3, -4):
        (ctx / "Dockerfile").write_text(_dockerfile(mark, warm))
        t0 = time.monotonic()
        r = build(root, ctx)
        durations.append(time.monotonic() - t0)
        assert r.returncode == 0, r.stderr.decode()
    full = sorted(durations[1:])[1]

    killed_with_done = 0
    for i in range(KILLS):
        (ctx / "Dockerfile").write_text(_dockerfile(mark, i))
        log = tmp_path / f"kill-{i}.log"
        p = build_popen(root, ctx, log, mark)
        time.sleep(rnd.uniform(0.05, full * 1.1))
        killed = p.poll() is None
        if killed:
            os.kill(p.pid, signal.SIGKILL)
        p.wait()
        done = _done(log.read_bytes())
        deadline = time.monotonic() + 5  # PDEATHSIG'd children take a moment to go
        while (left := leftovers(mark, root)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"kill {i} (seed {seed}) left: {left}"
        check_store(root)

        again = build(root, ctx)
        assert again.returncode == 0, f"rebuild after kill {i} (seed {seed}): {again.stderr.decode()}"
        states = dict(steps(again.stderr))
        for name in done:
            assert states.get(name) == "CACHED", f"kill {i} (seed {seed}): {name!r} was DONE, rebuild says {states.get(name)}"
        killed_with_done += bool(killed and done)

    validate_layout(root)
    check_store(root)
    assert killed_with_done >= 5, "the kill window missed the build: too few kills after a finished step"
