"""Resource exhaustion: a full disk during a layer write, a RUN printing gigabytes, fork bombs.

- Disk full: PYBUILD_ROOT on a 20 MiB tmpfs, a RUN whose 12 MB layer cannot be stored → exit 1
  with one clear line, no partial blob (store verifies), the failed step's upper is gone (free
  space returns to what it was), and after growing the tmpfs the same build succeeds.
- Output flood: a RUN printing 256 MiB (2 GiB under the `slow` marker) → the builder's peak RSS
  (wait4 of the CLI process and everything it reaped) stays within 40 MiB of a silent build's.
- Fork bombs: a bounded one (3000 `sleep &`) must hit the default RUN pids limit before it ends
  (and `--pids-limit 64` caps a RUN at 64);
  only then a real `bomb | bomb &` runs, and the build ends, the host survives, nothing is left.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.hardening.crashlib import check_store, leftovers
from tests.integration.buildlib import build, make_busybox_image, validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@pytest.fixture
def tmpfs(tmp_path: Path):
    mnt = tmp_path / "tfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_during_layer_write(tmpfs: Path, tmp_path: Path) -> None:
    root = tmpfs / "root"
    make_busybox_image(root, tmp_path / "mk")
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN true\n"})
    assert build(root, ctx).returncode == 0  # the base snapshot is unpacked now
    before = _free(tmpfs)
    blobs_before = set(os.listdir(root / "blobs" / "sha256"))

    (ctx / "Dockerfile").write_text("FROM busybox\nRUN head -c 12000000 /dev/urandom > /r\n")
    r = run_cli("build", "--progress=quiet", str(ctx), env={"PYBUILD_ROOT": str(root)})
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert err.splitlines()[0] == f"error: cannot write a blob under {root}/tmp: No space left on device", err
    assert "Traceback" not in err
    assert set(os.listdir(root / "blobs" / "sha256")) == blobs_before, "a partial blob reached the store"
    check_store(root)
    deadline = time.monotonic() + 10  # the discarded upper is deleted in the background
    while _free(tmpfs) < before - (256 << 10) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _free(tmpfs) >= before - (256 << 10), "the failed step left its files behind"

    subprocess.run(["mount", "-o", "remount,size=80m", str(tmpfs)], check=True)
    r = build(root, ctx, "-t", "big")
    assert r.returncode == 0, r.stderr.decode()
    validate_layout(root, "big")
    check_store(root)


def _peak_rss_mib(root: Path, ctx: Path) -> tuple[int, float]:
    p = subprocess.Popen([sys.executable, "-m", "builder.cli", "build", "--no-cache", "--progress=plain", str(ctx)],
                         env=dict(os.environ, PYBUILD_ROOT=str(root)), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, usage.ru_maxrss / 1024


LINE = "0123456789" * 10


def _flood(tmp_path: Path, nbytes: int) -> None:
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    quiet = write_ctx(tmp_path / "quiet", {"Dockerfile": "FROM busybox\nRUN echo one line\n"})
    loud = write_ctx(tmp_path / "loud", {"Dockerfile": f"FROM busybox\nRUN yes {LINE} | head -c {nbytes}\n"})
    code, base = _peak_rss_mib(root, quiet)
    assert code == 0
    code, peak = _peak_rss_mib(root, loud)
    assert code == 0
    assert peak < base + 40, f"peak RSS {peak:.0f} MiB printing {nbytes >> 20} MiB vs {base:.0f} MiB for one line"


def test_run_printing_256_mib_keeps_memory_flat(tmp_path: Path) -> None:
    _flood(tmp_path, 256 << 20)


@pytest.mark.slow
def test_run_printing_2_gib_keeps_memory_flat(tmp_path: Path) -> None:
    _flood(tmp_path, 2 << 30)


def test_run_pipe_to_head_ends(tmp_path: Path) -> None:
    """`yes | head` relies on SIGPIPE killing `yes`: the RUN must not inherit Python's SIG_IGN."""
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN yes | head -n 3\n"})
    r = build(root, ctx)
    assert r.returncode == 0, r.stderr.decode()


def test_fork_bombs_hit_the_default_pids_limit(tmp_path: Path) -> None:
    from builder.engine.ops import DEFAULT_RUN_PIDS_LIMIT, default_pids_limit

    assert default_pids_limit() == DEFAULT_RUN_PIDS_LIMIT, "this host has a pids controller: the limit must apply"
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    mark = "bomb" + uuid.uuid4().hex[:12]
    # Bounded first: at most 3000 processes even if no limit applied (then this fails, safely).
    ctx = write_ctx(tmp_path / "bounded", {"Dockerfile": (
        f"FROM busybox\nRUN echo {mark}; n=0; while [ $n -lt 3000 ]; do sleep 30 & "
        "n=$((n+1)); [ $((n % 128)) = 0 ] && echo started=$n; done; echo ALL\"\"STARTED; exit 0\n")})
    t0 = time.monotonic()
    r = build(root, ctx)
    err = r.stderr.decode()
    assert r.returncode == 1 and "ALLSTARTED" not in err, err  # the shell died on a failed fork
    started = [int(x) for x in re.findall(r"started=(\d+)", err)]
    assert started and max(started) < DEFAULT_RUN_PIDS_LIMIT <= max(started) + 128 + 8, started
    assert time.monotonic() - t0 < 60
    deadline = time.monotonic() + 10
    while leftovers(mark, root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not leftovers(mark, root)

    # The limit holds, so a real fork bomb is safe to run here: it must not stop the build.
    # While the bomb fills the pids limit the RUN's own shell cannot fork either (ash exits 2 on
    # "can't fork"), so after lighting it the shell waits with builtins only: `read -t` on a fifo
    # it holds open itself. Its exit then ends the RUN, and the sandbox must reap the whole bomb.
    ctx = write_ctx(tmp_path / "bomb", {"Dockerfile": f"FROM busybox\nRUN echo {mark}; mkfifo /tmp/wait; "
                                                      "exec 3<>/tmp/wait; bomb() { bomb | bomb & }; bomb; "
                                                      "read -t 2 x <&3; echo survived\n"})
    t0 = time.monotonic()
    r = build(root, ctx)
    assert r.returncode == 0 and b"survived" in r.stderr, r.stderr.decode()[-2000:]
    assert time.monotonic() - t0 < 60
    deadline = time.monotonic() + 10
    while leftovers(mark, root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not leftovers(mark, root)
    check_store(root)


def test_pids_limit_flag_caps_a_run(tmp_path: Path) -> None:
    """`--pids-limit 64`: at most 64 processes + threads (the shell counts too) in one RUN."""
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN n=0; while [ $n -lt 500 ]; do sleep 30 & "
                                                     "n=$((n+1)); echo started=$n; done\n"})
    r = build(root, ctx, "--pids-limit", "64")
    err = r.stderr.decode()
    assert r.returncode == 1, err
    started = max(int(x) for x in re.findall(r"started=(\d+)", err))
    assert 50 <= started < 64, started


def test_memory_flag_caps_a_run(tmp_path: Path) -> None:
    """`build --memory 32m`: a RUN holding 80 MB in a shell variable is OOM-killed and the build
    says so; one holding 8 MB builds. A size below 6m is a usage error before any work."""
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    hog = "RUN x=$(head -c {n} /dev/zero | tr '\\0' a); echo held=${{#x}}\n"
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\n" + hog.format(n=80_000_000)})
    r = build(root, ctx, "--memory", "32m")
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "was killed by signal 9 (out of memory)" in err and not re.search(r"held=\d", err), err
    ctx = write_ctx(tmp_path / "ctx2", {"Dockerfile": "FROM busybox\n" + hog.format(n=8_000_000)})
    r = build(root, ctx, "--memory", "32m")
    assert r.returncode == 0, r.stderr.decode()
    assert "held=8000000" in r.stderr.decode()
    r = build(root, ctx, "--memory", "1m")
    assert r.returncode == 2 and r.stderr.decode().strip() == "error: --memory: the minimum is 6m", r.stderr
