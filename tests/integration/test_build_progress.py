"""Progress through the CLI as a user sees it: tty mode on a real pty, plain and json.

BuildKit's final lines (`FINISHED`, `exporting to image`, `writing image sha256:…`, `naming to
docker.io/library/NAME:TAG`), FROM with the image's full name, one frame for a build that is over
before the first refresh, and the JSON events documented in README."""
from __future__ import annotations

import json
import os
import pty
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.integration.buildlib import make_busybox_image, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _pty_build(root: Path, *args: str) -> tuple[int, str]:
    """`pybuild build ARGS` with stderr on a pty (80 columns), as in a terminal."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        os.environ.update(PYBUILD_ROOT=str(root), PYTHONPATH=str(REPO), COLUMNS="120")
        os.execv(sys.executable, [sys.executable, "-m", "builder.cli", "build", *args])
    out = b""
    while True:
        try:
            d = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the pty
            break
        if not d:
            break
        out += d
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


@pytest.fixture
def setup(tmp_path: Path):
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo hello-log && echo hi > /x\nCOPY f /f\n", "f": "x"})
    return root, ctx


def test_tty_final_lines_and_single_frame_on_a_cached_rebuild(setup) -> None:
    root, ctx = setup
    rc, out = _pty_build(root, "-t", "progapp:1", str(ctx))
    assert rc == 0, out
    text = ANSI.sub("", out)
    assert re.search(r"\[\+\] Building \d+\.\ds \(4/4\) FINISHED", text), text
    for want in ("=> CACHED [1/3] FROM docker.io/library/busybox:latest", "=> [2/3] RUN echo hello-log && echo hi > /x",
                 "=> [3/3] COPY f /f", "=> exporting to image", "=> => exporting layers",
                 "=> => naming to docker.io/library/progapp:1"):
        assert want in text, want
    assert re.search(r"=> => writing image sha256:[0-9a-f]{40}", text), text
    # a cached rebuild is over before the first refresh: exactly one frame, the final one
    rc, out = _pty_build(root, "-t", "progapp:1", str(ctx))
    assert rc == 0, out
    text = ANSI.sub("", out)
    assert text.count("[+] Building") == 1, text
    assert "(4/4) FINISHED" in text and "=> CACHED [2/3] RUN echo hello-log && echo hi > /x" in text
    assert "=> => naming to docker.io/library/progapp:1" in text


def test_plain_final_lines(setup) -> None:
    root, ctx = setup
    r = run_cli("build", "--progress=plain", "-t", "progapp:2", str(ctx), env={"PYBUILD_ROOT": str(root)})
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "#1 [1/3] FROM docker.io/library/busybox:latest" in err
    block = err.strip().split("\n\n")[-1].splitlines()
    assert block[0] == "#4 exporting to image" and block[1] == "#4 exporting layers done", block
    assert re.fullmatch(r"#4 writing image sha256:[0-9a-f]{64} done", block[2]), block
    assert block[3:] == ["#4 naming to docker.io/library/progapp:2 done", "#4 DONE 0.0s"], block


def test_json_events(setup) -> None:
    root, ctx = setup
    r = run_cli("build", "--progress=json", "-t", "progapp:3", str(ctx), env={"PYBUILD_ROOT": str(root)})
    assert r.returncode == 0, r.stderr.decode()
    events = [json.loads(ln) for ln in r.stderr.decode().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "BuildStarted" and kinds[-1] == "BuildFinished", kinds
    assert events[0]["steps"] == len({e["id"] for e in events if e["event"] in ("StepStarted", "StepCached")}) == 3
    assert all(isinstance(e["time"], float | int) for e in events)
    started = [e for e in events if e["event"] == "StepStarted"]
    assert [e["name"] for e in started] == ["[2/3] RUN echo hello-log && echo hi > /x", "[3/3] COPY f /f"]
    fin = [e for e in events if e["event"] == "StepFinished"]
    assert all(e["error"] is None and e["canceled"] is False for e in fin)
    log = next(e for e in events if e["event"] == "StepLog")
    assert log["id"] == started[0]["id"] and log["data"] == "hello-log\n" and log["stream"] == "stdout"
    cached = next(e for e in events if e["event"] == "StepCached")
    assert cached["name"] == "[1/3] FROM docker.io/library/busybox:latest"
    last = events[-1]
    assert last["image"].startswith("sha256:") and last["tags"] == ["docker.io/library/progapp:3"]
    assert last["error"] is None
    # the alias BuildKit users know
    r = run_cli("build", "--progress=rawjson", str(ctx), env={"PYBUILD_ROOT": str(root)})
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stderr.decode().splitlines()[-1])["event"] == "BuildFinished"


def test_plain_stage_and_scratch_bases_have_no_step_as_in_buildkit(tmp_path: Path) -> None:
    # checked against BuildKit (docker 28): `FROM a AS b` and `FROM scratch` show no step, and
    # the stage's steps are numbered without it ([b 1/1])
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox AS a\nRUN echo a > /a\nFROM a AS b\n"
                                                     "RUN echo b > /b\nFROM scratch\nCOPY --from=b /b /b\n"})
    r = run_cli("build", "--progress=plain", str(ctx), env={"PYBUILD_ROOT": str(root)})
    err = r.stderr.decode()
    assert r.returncode == 0, err
    heads = [ln.split(" ", 1)[1] for ln in err.splitlines() if re.match(r"#\d+ \[", ln)]
    assert heads == ["[a 1/2] FROM docker.io/library/busybox:latest", "[a 2/2] RUN echo a > /a",
                     "[b 1/1] RUN echo b > /b", "[stage-2 1/1] COPY --from=b /b /b"], heads
    assert re.search(r"^#5 exporting to image$", err, re.M), err
