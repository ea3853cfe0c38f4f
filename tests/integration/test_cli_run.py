"""`pybuild run` and `pybuild bundle` through the real entry point, as root on overlay."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import REPO, run_cli

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A store with busybox:latest imported the way the README does it."""
    d = tmp_path_factory.mktemp("runstore")
    tar = d / "busybox.tar"
    subprocess.run(["bash", str(REPO / "examples/make-busybox-rootfs.sh"), str(tar)], check=True,
                   capture_output=True)
    env = {"PYBUILD_ROOT": str(d / "root")}
    r = run_cli("import", str(tar), "busybox:latest", env=env)
    assert r.returncode == 0, r.stderr
    return d / "root"


def pb(root, *args, **kw):
    return run_cli(*args, env={"PYBUILD_ROOT": str(root)}, **kw)


def test_exit_code_and_output(root):
    r = pb(root, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert r.returncode == 7
    assert r.stdout == b"out\n" and r.stderr == b"err\n"


def test_signal_becomes_128_plus_n(root):
    # As pid 1 the shell ignores SIGTERM (the kernel protects a namespace's init), as in docker;
    # under --init it is pid 2 and dies of it.
    r = pb(root, "run", "--rm", "--init", "busybox", "sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + 15


def test_signals_to_pybuild_are_forwarded(root):
    import signal
    import sys
    import time

    p = subprocess.Popen([sys.executable, "-m", "builder.cli", "run", "--rm", "--init", "busybox", "sh", "-c",
                          "echo ready; sleep 30"], env={**os.environ, "PYBUILD_ROOT": str(root)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 128 + 15


def test_env_workdir_user_hostname(root, tmp_path):
    envf = tmp_path / "env"
    envf.write_text("# c\nFROMFILE=yes\n")
    r = pb(root, "run", "--rm", "-e", "A=1", "--env-file", str(envf), "-w", "/tmp", "-u", "65534:65534",
           "--hostname", "box1", "busybox", "sh", "-c", 'echo "$A $FROMFILE $(pwd) $(id -u):$(id -g) $(hostname)"')
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == "1 yes /tmp 65534:65534 box1"


def test_entrypoint_override_and_cmd_args(root):
    r = pb(root, "run", "--rm", "--entrypoint", "/bin/echo", "busybox", "a", "b")
    assert r.returncode == 0 and r.stdout == b"a b\n"


def test_pid_1_and_host_processes_invisible(root):
    r = pb(root, "run", "--rm", "busybox", "sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'")
    pid, count = r.stdout.decode().split()
    assert pid == "1" and int(count) <= 3


def test_rm_discards_writable_layer_and_default_keeps_it(root):
    before = set(os.listdir(root / "containers")) if (root / "containers").exists() else set()
    assert pb(root, "run", "--rm", "busybox", "touch", "/made").returncode == 0
    after = set(os.listdir(root / "containers")) if (root / "containers").exists() else set()
    assert after == before
    assert pb(root, "run", "busybox", "touch", "/kept").returncode == 0
    new = set(os.listdir(root / "containers")) - before
    assert len(new) == 1 and (root / "containers" / new.pop() / "upper" / "kept").exists()
    # the image itself is untouched: a new container does not see /made or /kept
    assert pb(root, "run", "--rm", "busybox", "ls", "/kept").returncode != 0
    # prune removes the kept layer of the finished container (its pybuild has exited)
    r = pb(root, "prune")
    assert r.returncode == 0 and b"1 stopped containers" in r.stdout, r.stdout
    assert not any((root / "containers").iterdir())


def test_rm_mounts_the_root_volatile_and_a_kept_layer_synced(root):
    """`run --rm` throws its writable layer away: the overlay is mounted `volatile` (no sync of
    the upper filesystem at every fsync and at unmount, a few ms per start); a kept layer is
    an ordinary, synced overlay."""
    if tuple(int(x) for x in os.uname().release.split(".")[:2]) < (5, 10):
        pytest.skip("overlayfs volatile needs Linux 5.10")
    script = "awk '$5 == \"/\" {print}' /proc/self/mountinfo"
    r = pb(root, "run", "--rm", "busybox", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert b" - overlay " in r.stdout and b"volatile" in r.stdout, r.stdout
    r = pb(root, "run", "busybox", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert b" - overlay " in r.stdout and b"volatile" not in r.stdout, r.stdout


def test_volumes_rw_and_ro(root, tmp_path):
    host = tmp_path / "vol"
    host.mkdir()
    (host / "in.txt").write_text("from host")
    r = pb(root, "run", "--rm", "-v", f"{host}:/data", "busybox", "sh", "-c", "cat /data/in.txt; echo x > /data/out")
    assert r.returncode == 0 and r.stdout == b"from host"
    assert (host / "out").read_text() == "x\n"
    r = pb(root, "run", "--rm", "-v", f"{host}:/data:ro", "busybox", "sh", "-c", "echo y > /data/out2")
    assert r.returncode != 0 and not (host / "out2").exists()


def test_read_only_and_tmpfs(root):
    r = pb(root, "run", "--rm", "--read-only", "--tmpfs", "/scratch", "busybox", "sh", "-c",
           "touch /x 2>/dev/null && echo wrote-root; touch /scratch/y && echo wrote-tmpfs")
    assert r.stdout == b"wrote-tmpfs\n"


def test_network_none_has_only_lo(root):
    r = pb(root, "run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net")
    assert r.returncode == 0 and r.stdout.split() == [b"lo"]
    host = sorted(os.listdir("/sys/class/net"))
    r = pb(root, "run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net")
    assert sorted(r.stdout.decode().split()) == host


def test_stdin_with_i(root):
    r = pb(root, "run", "--rm", "-i", "busybox", "cat", input=b"piped in\n")
    assert r.stdout == b"piped in\n"
    r = pb(root, "run", "--rm", "busybox", "cat", input=b"not attached\n")
    assert r.stdout == b""


@pytest.mark.root_only  # rootless without a delegated cgroup: a clear error instead (tests/rootless)
def test_pids_limit(root):
    r = pb(root, "run", "--rm", "--pids-limit", "8", "busybox", "sh", "-c",
           "for i in $(seq 20); do sleep 2 & done 2>/dev/null; wait; echo done")
    assert b"can't fork" in r.stderr or b"Resource temporarily unavailable" in r.stderr or r.returncode != 0


@pytest.mark.root_only  # a memory cgroup: rootless has none without delegation
def test_memory_limit_oom(root):
    r = pb(root, "run", "--rm", "--memory", "16m", "busybox", "sh", "-c",
           "x=a; while true; do x=$x$x$x$x; done")
    assert r.returncode == 137
    assert b"out of memory" in r.stderr


@pytest.mark.parametrize("args,code,first", [
    (("run", "--rm", "nosuch"), 1, "error: no image 'nosuch' in the local store"),
    (("run", "--memory", "lots", "busybox", "true"), 2, "error: invalid value 'lots' for --memory"),
    (("run", "-v", "relative", "busybox", "true"), 2, "error: invalid volume 'relative'"),
    (("run", "--rm", "busybox", "/no/such/binary"), 127, ""),
    (("run", "-u", "nosuchuser", "busybox", "true"), 1, "error: unable to find user nosuchuser"),
])
def test_bad_input(root, args, code, first):
    r = pb(root, *args)
    assert r.returncode == code, r.stderr
    assert r.stderr.decode().startswith(first) and b"Traceback" not in r.stderr


@pytest.mark.root_only  # runc itself as root
@pytest.mark.skipif(shutil.which("runc") is None, reason="Debian's runc is not installed")
def test_bundle_runs_under_runc(root, tmp_path):
    dest = tmp_path / "bundle"
    r = pb(root, "bundle", "--dest", str(dest), "-e", "X=from-bundle", "busybox", "sh", "-c", 'echo "$X $(id -u)"')
    assert r.returncode == 0, r.stderr
    cfg = json.loads((dest / "config.json").read_text())
    assert cfg["process"]["args"][-1] == 'echo "$X $(id -u)"'
    assert (dest / "rootfs" / "bin" / "busybox").exists()
    # runc refuses the hybrid cgroup layout's unified mount inside; run it in a private mount ns.
    p = subprocess.run(["unshare", "-m", "sh", "-c",
                        "umount /sys/fs/cgroup/unified 2>/dev/null; "
                        f"runc --root {tmp_path}/runc-state run --bundle {dest} pybuild-test-{os.getpid()}"],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().strip() == "from-bundle 0"


def test_prune_spares_the_layers_of_a_running_container(root):
    """`rmi` + `prune --grace 0` while a container runs: its snapshots are leased, so they stay
    until it ends, and the container keeps reading its files."""
    import sys

    env = {**os.environ, "PYBUILD_ROOT": str(root)}
    snaps = root / "snapshots"
    assert pb(root, "tag", "busybox", "leased:v1").returncode == 0
    p = subprocess.Popen([sys.executable, "-m", "builder.cli", "run", "-i", "--rm", "leased:v1", "sh", "-c",
                          "echo ready; read x; head -1 /etc/passwd"], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        layers = {d.name for d in snaps.iterdir() if not d.name.startswith(".") and d.name != "empty"}
        assert layers
        for ref in ("leased:v1", "busybox"):
            assert pb(root, "rmi", ref).returncode == 0
        assert pb(root, "images", "-q").stdout == b""  # nothing tags the layers any more
        r = pb(root, "prune", "--grace", "0", "--no-keep-cache")
        assert r.returncode == 0, r.stderr
        assert layers <= {d.name for d in snaps.iterdir()}, r.stdout  # leased: still there
        out, err = p.communicate(b"go\n", timeout=30)
        assert p.returncode == 0, err
        assert out == b"root:x:0:0:root:/root:/bin/sh\n"
        r = pb(root, "prune", "--grace", "0", "--no-keep-cache")  # the lease ended with the container
        assert not layers & {d.name for d in snaps.iterdir()}, r.stdout
        assert not any((snaps / ".leases").iterdir())
    finally:
        p.kill()
        p.wait()
        # the module's other tests need busybox back
        subprocess.run(["bash", str(REPO / "examples/make-busybox-rootfs.sh"), str(root.parent / "bb2.tar")],
                       check=True, capture_output=True)
        assert run_cli("import", str(root.parent / "bb2.tar"), "busybox:latest",
                       env={"PYBUILD_ROOT": str(root)}).returncode == 0


def test_docker_run_environment(root):
    # what docker run adds: HOSTNAME (the container's host name), TERM=xterm with -t, and HOME
    # from the user's passwd entry (runc) unless the image or -e sets it
    r = pb(root, "run", "--rm", "--hostname", "envbox", "busybox", "env")
    assert r.returncode == 0, r.stderr
    env = dict(line.split("=", 1) for line in r.stdout.decode().splitlines())
    assert env["HOSTNAME"] == "envbox" and env["HOME"] == "/root" and "TERM" not in env
    r = pb(root, "run", "--rm", "-u", "65534", "-e", "TERM=dumb", "busybox", "sh", "-c", 'echo "$HOME $TERM $HOSTNAME"')
    home, term, host = r.stdout.decode().split()
    assert (home, term, len(host)) == ("/nonexistent", "dumb", 12)  # nobody's passwd entry
