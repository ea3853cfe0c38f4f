"""`pybuild run`: the container gets pipes (or its own pty), never the caller's stdio fds, and
`--init` gives it a pid 1 no more privileged than itself (issue 14, items 8 and 9).

Through the real entry point on a busybox image. Each test aims at what the old code handed in:
the host file the caller's stdout was redirected to (re-opened through /proc/self/fd/1), and a
pid 1 that was the host's Python with every capability, no no_new_privs and host paths on its
command line.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.buildlib import make_busybox_image

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("stdio")
    make_busybox_image(d / "root", d)
    return d / "root"


def _run(root: Path, *args: str, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, input=None):
    env = {**os.environ, "PYBUILD_ROOT": str(root)}
    return subprocess.run([sys.executable, "-m", "builder.cli", "run", "--rm", *args], env=env, stdin=stdin,
                          stdout=stdout, stderr=subprocess.PIPE, input=input, timeout=120)


def test_reopening_stdout_cannot_reach_the_host_file(root: Path, tmp_path: Path) -> None:
    host = tmp_path / "out.log"
    host.write_bytes(b"HOST-SECRET-CONTENT\n")
    with open(host, "ab") as f:  # the caller's `pybuild run ... >> out.log`
        # The read-back comes first: stdout being a pipe, re-opening it reads the pipe, and with
        # "hello" already in it `head` could take it before pybuild relays it (a race under load).
        r = _run(root, "busybox", "sh", "-c",
                 "timeout 1 head -c 19 /proc/$$/fd/1 | grep -q SECRET && echo READ-BACK >&2; echo hello;"
                 " readlink /proc/self/fd/1 >&2; : > /proc/self/fd/1; echo bye",
                 stdout=f)
    assert r.returncode == 0, r.stderr
    data = host.read_bytes()
    # the secret is still there, nothing was truncated, and the container's own output arrived
    assert data == b"HOST-SECRET-CONTENT\nhello\nbye\n", data
    err = r.stderr.decode()
    assert "READ-BACK" not in err and str(host) not in err and "pipe:" in err, err


def test_reopening_stdin_cannot_reach_the_host_file(root: Path, tmp_path: Path) -> None:
    host = tmp_path / "in.txt"
    host.write_bytes(b"line one\nline two\n")
    with open(host, "rb") as f:
        r = _run(root, "-i", "busybox", "sh", "-c",
                 "readlink /proc/self/fd/0; echo injected > /proc/self/fd/0; cat", stdin=f)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.splitlines()[0].startswith("pipe:"), out
    # (writing to its own stdin pipe only feeds itself: "injected" may come back through cat)
    assert [ln for ln in out.splitlines()[1:] if ln != "injected"] == ["line one", "line two"], out
    assert host.read_bytes() == b"line one\nline two\n"


def test_interactive_stdin_is_relayed(root: Path) -> None:
    data = os.urandom(300_000).hex().encode()  # more than a pipe buffer each way
    r = _run(root, "-i", "busybox", "sh", "-c", "cat; echo done >&2", input=data, stdin=None)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data and r.stderr == b"done\n"


@pytest.mark.parametrize("tty", ["", "-t"])
def test_stdout_closed_by_the_reader_does_not_hang(root: Path, tty: str) -> None:
    p = subprocess.Popen(f"{sys.executable} -m builder.cli run --rm {tty} busybox yes | head -c 10",
                         shell=True, env={**os.environ, "PYBUILD_ROOT": str(root)}, cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=60)
    assert out == (b"y\r\ny\r\ny\r\ny" if tty else b"y\ny\ny\ny\ny\n"), err


def _status(text: str) -> dict[str, str]:
    return dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln)


def test_init_is_no_more_privileged_than_the_container(root: Path) -> None:
    script = ("cat /proc/1/status; echo ====; cat /proc/self/status; echo ====; tr '\\0' ' ' < /proc/1/cmdline;"
              " echo; echo ====; readlink /proc/1/exe || echo EXE-DENIED;"
              " for f in /proc/1/fd/*; do readlink $f || echo FD-DENIED; done")
    r = _run(root, "--init", "busybox", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    init, me, cmdline, probes = r.stdout.decode().split("====\n")
    init_s, me_s = _status(init), _status(me)
    assert init_s["NoNewPrivs"].strip() == "1"
    for k in ("CapEff", "CapPrm", "CapBnd", "CapInh"):
        assert init_s[k] == me_s[k], (k, init_s[k], me_s[k])
    assert int(init_s["CapEff"], 16) != (1 << 41) - 1  # not the full set
    assert init_s["Uid"] == me_s["Uid"]
    assert cmdline.startswith("pybuild-init -- sh -c cat /proc/1/status"), cmdline
    for bad in ("python", str(REPO), "sys.path", "/root", "/work", "/tmp"):
        assert bad not in cmdline, (bad, cmdline)
    assert init_s["Name"].strip() == "pybuild-init"
    # not dumpable: the host interpreter behind /proc/1/exe and the status pipe in /proc/1/fd are out of reach
    assert "EXE-DENIED" in probes and "FD-DENIED" in probes and "/" not in probes.replace("/proc/1", ""), probes


def test_init_does_not_show_the_callers_environment(root: Path) -> None:
    """`pybuild run` forks the sandbox's fork server from itself (runtime.zygote.prefork), so
    the --init pid 1 descends from the CLI: the kernel's /proc/1/environ is the block that
    process started with, readable by a container with CAP_SYS_PTRACE. It must hold nothing
    of the caller's environment (the re-exec'd server had an empty one)."""
    secret = "pybuild-caller-secret-7f3a"
    env = {**os.environ, "PYBUILD_ROOT": str(root), "CALLER_TOKEN": secret}
    r = subprocess.run([sys.executable, "-m", "builder.cli", "run", "--rm", "--init", "--cap-add", "SYS_PTRACE",
                        "busybox", "sh", "-c", "cat /proc/1/environ; echo; echo ====; echo $CALLER_TOKEN"],
                       env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    environ, own = r.stdout.split(b"====\n")
    assert own == b"\n"  # (nor does the container's own environment get it)
    assert secret.encode() not in environ and b"PYBUILD_ROOT" not in environ, environ[:300]


def test_init_runs_as_the_containers_user(root: Path) -> None:
    r = _run(root, "--init", "-u", "65534:65534", "busybox", "sh", "-c",
             "grep -E '^(Uid|Gid|CapEff|NoNewPrivs)' /proc/1/status")
    assert r.returncode == 0, r.stderr
    s = _status(r.stdout.decode())
    assert s["Uid"].split() == ["65534"] * 4 and s["Gid"].split() == ["65534"] * 4
    assert int(s["CapEff"], 16) == 0 and s["NoNewPrivs"].strip() == "1"


@pytest.mark.needs_userns
def test_init_is_confined_rootless_too(tmp_path: Path) -> None:
    """As an unprivileged user (user namespace, one mapped id) the init drops to the container's
    capabilities and no_new_privs too; its command line names no host path (there it cannot be
    shortened without CAP_SYS_RESOURCE, so it is NUL-padded)."""
    import shutil
    import tempfile

    from tests.fixtures.busybox_rootfs import make_busybox_rootfs
    from tests.runtime.test_rootless_and_signals import _python_for_nobody

    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) missing")
    py = _python_for_nobody()
    base = Path(tempfile.mkdtemp(prefix="pybuild-rootless-init-"))
    try:
        os.chmod(base, 0o755)
        lower = make_busybox_rootfs(base / "lower")
        upper, work = base / "upper", base / "work"
        upper.mkdir()
        work.mkdir()
        subprocess.run(["chown", "-R", "65534:65534", str(lower), str(upper), str(work)], check=True)
        script = ("grep -E '^(NoNewPrivs|CapEff|CapBnd)' /proc/1/status; echo ====;"
                  " grep -E '^(NoNewPrivs|CapEff|CapBnd)' /proc/self/status; echo ====; tr '\\0' ' ' < /proc/1/cmdline")
        code = (f"import sys; sys.path.insert(0, {str(REPO)!r});"
                "from runtime import sandbox; from runtime.config import *;"
                f"cfg = SandboxConfig(rootfs=Rootfs(lowerdirs=({str(lower)!r},), upperdir={str(upper)!r}, workdir={str(work)!r}),"
                f"  process=Process(argv=('sh', '-c', {script!r})), init=True);"
                "r = sandbox.run(cfg, stdout=1, stderr=2); sys.exit(r.exit_code)")
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", py, "-I", "-c", code],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        init, me, cmdline = r.stdout.decode().split("====\n")
        assert init == me, (init, me)
        assert "NoNewPrivs:\t1" in init
        # (the argv area is the interpreter's: a long command is cut to its size)
        assert cmdline.startswith("pybuild-init -- sh -c grep -E"), cmdline
        for bad in ("python", str(REPO), "sys.path", "/tmp"):
            assert bad not in cmdline, (bad, cmdline)
    finally:
        subprocess.run(["rm", "-rf", str(base)])
