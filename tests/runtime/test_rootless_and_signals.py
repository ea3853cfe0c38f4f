"""Rootless runs (user namespace, single id map), signal forwarding from the builder, and
the start-up import budget of the init child."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _python_for_nobody() -> str:
    for p in (sys.executable, "/usr/bin/python3"):
        # the probe re-executes itself, as the sandbox will (a first exec may still succeed
        # through a path the unprivileged user cannot traverse on its own)
        probe = (f"import subprocess, sys; sys.path.insert(0, {str(REPO)!r}); import runtime.sandbox;"
                 "subprocess.run([sys.executable, '-I', '-c', 'pass'], check=True)")
        ok = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", p, "-I", "-c", probe],
                            capture_output=True)
        if ok.returncode == 0:
            return p
    pytest.skip("uid 65534 cannot run a Python interpreter with this checkout importable")


@pytest.mark.needs_root
@pytest.mark.needs_userns
def test_rootless_run_in_a_user_namespace(busybox):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) missing")
    py = _python_for_nobody()
    base = Path(tempfile.mkdtemp(prefix="pybuild-rootless-"))
    try:
        os.chmod(base, 0o755)
        lower, upper, work = base / "lower", base / "upper", base / "work"
        subprocess.run(["cp", "-a", str(busybox), str(lower)], check=True)
        upper.mkdir()
        work.mkdir()
        # rootless = one mapped id: the image must belong to the user (as rootless podman's)
        subprocess.run(["chown", "-R", "65534:65534", str(lower), str(upper), str(work)], check=True)
        code = (f"import sys; sys.path.insert(0, {str(REPO)!r});"
                "from runtime import sandbox; from runtime.config import *;"
                f"cfg = SandboxConfig(rootfs=Rootfs(lowerdirs=({str(lower)!r},), upperdir={str(upper)!r}, workdir={str(work)!r}),"
                "  process=Process(argv=('sh', '-c', 'id -u; echo $$; cat /proc/self/uid_map; echo w > /written')));"
                "r = sandbox.run(cfg, stdout=1, stderr=2); sys.exit(r.exit_code)")
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", py, "-I", "-c", code],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        out = r.stdout.decode().split()
        assert out == ["0", "1", "0", "65534", "1"]  # root inside = nobody outside, pid 1
        assert (upper / "written").read_text() == "w\n"
        assert (upper / "written").stat().st_uid == 65534
        # `run -t` rootless: the console is made on the container's devpts in the user namespace
        code = code.replace("argv=('sh', '-c', 'id -u; echo $$; cat /proc/self/uid_map; echo w > /written')",
                            "argv=('sh', '-c', 'tty; stty size'), tty=True, terminal_size=(7, 70)")
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", py, "-I", "-c", code],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout.decode().split() == ["/dev/pts/0", "7", "70"], r.stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.needs_root
def test_sigterm_to_the_builder_reaches_the_container(busybox, tmp_path):
    ready = tmp_path / "ready"
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r});"
            "from runtime import sandbox; from runtime.config import *;"
            f"cfg = SandboxConfig(rootfs=Rootfs(path={str(busybox)!r}), mounts=(Mount('bind', '/out', {str(tmp_path)!r}),),"
            "  process=Process(argv=('sh', '-c', \"trap 'echo got TERM; exit 3' TERM; touch /out/ready; while :; do sleep 0.05; done\")));"
            "r = sandbox.run(cfg, stdout=1, stderr=2); print('exit', r.exit_code, flush=True)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ready.exists(), p.stderr.read1().decode() if p.poll() is not None else "container never got ready"
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert out.decode().split() == ["got", "TERM", "exit", "3"], err.decode()


def test_init_child_imports_only_what_it_needs():
    # The init child pays for every import on every container start (issue 5: <= 30 ms).
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); before = set(sys.modules);"
            "import runtime.init; print(' '.join(sorted(set(sys.modules) - before)))")
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    loaded = set(r.stdout.split())
    assert {"runtime.init", "runtime.syscalls", "runtime.mounts"} <= loaded
    heavy = {"json", "re", "enum", "dataclasses", "ctypes", "signal", "subprocess", "typing", "selectors",
             "runtime.config", "runtime.sandbox", "builder"}
    assert not loaded & heavy, loaded & heavy


@pytest.mark.needs_root
@pytest.mark.needs_userns
def test_root_with_a_user_namespace_id_map(busybox, tmp_path):
    from runtime import sandbox
    from runtime.config import IdMap, Process, Rootfs, SandboxConfig
    base = Path(tempfile.mkdtemp(prefix="pybuild-userns-"))
    try:
        os.chmod(base, 0o755)
        root = base / "rootfs"
        subprocess.run(["cp", "-a", str(busybox), str(root)], check=True)
        subprocess.run(["chown", "-R", "200000:200000", str(root)], check=True)
        out = bytearray()
        cfg = SandboxConfig(rootfs=Rootfs(path=str(root)), namespaces=("mount", "pid", "uts", "ipc", "user"),
                            uid_map=(IdMap(0, 200000, 65536),), gid_map=(IdMap(0, 200000, 65536),),
                            process=Process(argv=("sh", "-c", "id -u; cat /proc/self/uid_map; echo x > /tmp/f"),
                                            additional_gids=(5,)))
        r = sandbox.run(cfg, stdout=out.extend, stderr=out.extend)
        assert r.exit_code == 0, out.decode()
        assert out.decode().split() == ["0", "0", "200000", "65536"]
        st = (root / "tmp" / "f").stat()
        assert (st.st_uid, st.st_gid) == (200000, 200000)  # container root is host 200000
    finally:
        shutil.rmtree(base, ignore_errors=True)
