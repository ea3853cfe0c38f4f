"""Detached containers rootless (uid 65534 in a user namespace), through the real CLI:
run -d, ps, logs, exec, stop, rm; the default network is pasta, which needs /dev/net/tun."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_userns]


def _python_for_nobody() -> str:
    import sys
    for p in (sys.executable, "/usr/bin/python3"):
        # the probe re-executes itself, as the monitor's sandbox will (a first exec may succeed
        # through a path the unprivileged user cannot traverse on its own)
        probe = (f"import subprocess, sys; sys.path.insert(0, {str(REPO)!r}); import builder.commands.containers;"
                 "subprocess.run([sys.executable, '-I', '-c', 'pass'], check=True)")
        if subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", p, "-I", "-c", probe],
                          capture_output=True).returncode == 0:
            return p
    pytest.skip("uid 65534 cannot run a Python interpreter with this checkout importable")


@pytest.fixture(scope="module")
def rootless():
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) missing")
    py = _python_for_nobody()
    base = Path(tempfile.mkdtemp(prefix="pybuild-rootless-ctr-"))
    os.chmod(base, 0o755)
    tar = base / "busybox.tar"
    subprocess.run(["bash", str(REPO / "examples/make-busybox-rootfs.sh"), str(tar)], check=True, capture_output=True)
    os.chmod(tar, 0o644)
    subprocess.run(["chown", "65534:65534", str(base)], check=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(base), "PYBUILD_ROOT": str(base / "root"),
           "PYBUILD_COMPRESSION": "gzip", "XDG_RUNTIME_DIR": str(base)}

    def pb(*args: str, **kw) -> subprocess.CompletedProcess:
        code = f"import sys; sys.path.insert(0, {str(REPO)!r}); from builder.cli import main; main()"
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", py, "-I", "-c", code,
                               *args], env=env, capture_output=True, timeout=120, **kw)
    r = pb("import", str(tar), "busybox:latest")
    assert r.returncode == 0, r.stderr
    yield pb
    ids = pb("ps", "-aq").stdout.decode().split()
    if ids:
        pb("rm", "-f", *ids)
    shutil.rmtree(base, ignore_errors=True)


def test_rootless_lifecycle(rootless):
    pb = rootless
    r = pb("run", "-d", "--network", "none", "--name", "r1", "busybox", "sh", "-c", "echo hi; sleep 100")
    assert r.returncode == 0, r.stderr
    assert "r1" in pb("ps").stdout.decode()
    assert pb("logs", "r1").stdout == b"hi\n"
    r = pb("exec", "r1", "sh", "-c", "id -u; cat /proc/self/uid_map")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["0", "0", "65534", "1"]  # root inside is nobody outside
    assert pb("stop", "-t", "1", "r1").returncode == 0
    assert "Exited (137)" in pb("ps", "-a").stdout.decode()
    assert pb("rm", "r1").returncode == 0
    assert pb("ps", "-aq").stdout == b""


def test_rootless_default_network_is_pasta(rootless):
    pb = rootless
    tun_ok = os.access("/dev/net/tun", os.R_OK | os.W_OK) and os.stat("/dev/net/tun").st_mode & 0o006 == 0o006
    r = pb("run", "-d", "--name", "r2", "busybox", "sleep", "100")
    if not shutil.which("pasta"):
        assert r.returncode == 1 and b"pasta" in r.stderr
    elif not tun_ok:
        # this host's /dev/net/tun is root-only: a clear error, and nothing left running
        assert r.returncode == 1 and b"pasta could not connect the container" in r.stderr, r.stderr
        assert "Up " not in pb("ps", "-a").stdout.decode()
    else:
        assert r.returncode == 0, r.stderr
        r = pb("exec", "r2", "ip", "-o", "-4", "addr")
        assert b"eth0" in r.stdout or b"tap" in r.stdout
        assert _pastas(), "a pasta serves the running container"
    pb("rm", "-f", "r2")
    assert pb("ps", "-aq").stdout == b""
    assert not _pastas(), "pasta ends with the container"


def test_rootless_published_port_through_pasta(rootless):
    """`run -d -p` rootless: pasta binds the host port and forwards it into the container."""
    pb = rootless
    tun_ok = os.access("/dev/net/tun", os.R_OK | os.W_OK) and os.stat("/dev/net/tun").st_mode & 0o006 == 0o006
    if not (shutil.which("pasta") and tun_ok):
        pytest.skip("pasta or a usable /dev/net/tun missing (tests/run.sh provides both on CI)")
    import socket
    import time
    import urllib.request
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = pb("run", "-d", "--name", "rweb", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c",
           "mkdir -p /www && echo rootless-web > /www/index.html && exec httpd -f -p 80 -h /www")
    assert r.returncode == 0, r.stderr
    try:
        body, deadline = b"", time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        assert body == b"rootless-web\n"
        assert f"127.0.0.1:{port}->80/tcp" in pb("port", "rweb").stdout.decode() + pb("ps").stdout.decode()
    finally:
        pb("rm", "-f", "rweb")
    assert not _pastas()
    with socket.socket() as c:  # the port is free again (our finished request may be in TIME_WAIT)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        c.bind(("127.0.0.1", port))
        c.listen(1)


def _pastas() -> list[str]:
    out = subprocess.run(["ps", "-eo", "user:20,args"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if "pasta" in ln and ln.startswith("nobody")]


def test_rootless_foreground_run_gets_a_private_network(rootless):
    """The default of every `run`, rootless: a namespace of its own connected by pasta
    (before the process starts), which ends with the run; without a usable /dev/net/tun, one
    warning line and the host's network."""
    pb = rootless
    tun_ok = os.access("/dev/net/tun", os.R_OK | os.W_OK) and os.stat("/dev/net/tun").st_mode & 0o006 == 0o006
    r = pb("run", "--rm", "busybox", "sh", "-c", "ls /sys/class/net; ip route")
    assert r.returncode == 0, r.stderr
    host_links = sorted(os.listdir("/sys/class/net"))
    links = r.stdout.decode().split("\n")
    if shutil.which("pasta") and tun_ok:
        assert b"no private network" not in r.stderr, r.stderr
        assert "lo" in links and sorted(x for x in links if x and not x.startswith("default")) != host_links
        assert any(x.startswith("default via") for x in links), links  # the route is up at once
        assert not _pastas()
    else:
        assert b"no private network for this container" in r.stderr, r.stderr
        assert sorted(x for x in links if x and " " not in x) == host_links
