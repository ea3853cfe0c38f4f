"""Detached containers through the real CLI, as root: lifecycle, ports, networks, volumes,
monitors killed with SIGKILL, and nothing left behind (links, nft rules, mounts, processes)."""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import REPO, run_cli

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]

WEB_DOCKERFILE = """FROM busybox
RUN mkdir -p /www && echo hello-from-web > /www/index.html
EXPOSE 80
VOLUME /www
CMD ["httpd", "-f", "-vv", "-p", "80", "-h", "/www"]
"""


def _tools() -> bool:
    from shutil import which
    return bool(which("ip") and (which("nft") or os.path.exists("/usr/sbin/nft")))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    if not _tools():
        pytest.fail("these tests need iproute2 and nftables (tests/apt-packages.txt)")
    # not under pytest's basetemp: concurrent pytest sessions rotate those away, and a root
    # that vanishes under running containers could not be cleaned up here
    import tempfile
    from pathlib import Path
    d = Path(tempfile.mkdtemp(prefix="pybuild-ctrstore-"))
    tar = d / "busybox.tar"
    subprocess.run(["bash", str(REPO / "examples/make-busybox-rootfs.sh"), str(tar)], check=True, capture_output=True)
    r = run_cli("import", str(tar), "busybox:latest", env={"PYBUILD_ROOT": str(d / "root")})
    assert r.returncode == 0, r.stderr
    ctx = d / "web"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(WEB_DOCKERFILE)
    r = run_cli("build", "-q", "-t", "web", str(ctx), env={"PYBUILD_ROOT": str(d / "root")})
    assert r.returncode == 0, r.stderr
    yield d / "root"
    # take down whatever a failed test left, then the networks (bridges, nft tables)
    env = {"PYBUILD_ROOT": str(d / "root")}
    ids = run_cli("ps", "-aq", "--no-trunc", env=env).stdout.decode().split()
    if ids:
        run_cli("rm", "-f", *ids, env=env)
    for n in (d / "root" / "networks").glob("*.json"):
        run_cli("network", "rm", n.stem, env=env)
    import shutil
    shutil.rmtree(d, ignore_errors=True)


def pb(root, *args, **kw):
    return run_cli(*args, env={"PYBUILD_ROOT": str(root)}, **kw)


def ok(root, *args, **kw) -> str:
    r = pb(root, *args, **kw)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout.decode()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(url: str, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def inspect(root, ref: str) -> dict:
    return json.loads(ok(root, "container", "inspect", ref))[0]


def host_snapshot(root) -> dict:
    """What a container may leave behind on the host."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    mounts = open("/proc/self/mountinfo").read()
    procs = set()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            env = open(f"/proc/{p}/environ", "rb").read()
        except OSError:
            continue
        if f"PYBUILD_ROOT={root}".encode() in env:
            procs.add(p)
        try:
            if b"/run/netns/pb-" in open(f"/proc/{p}/cmdline", "rb").read():
                procs.add(p)  # a pasta serving one of our namespaces
        except OSError:
            pass
    return {
        "links": sorted(ln.split(":")[1].strip().split("@")[0] for ln in links.splitlines() if "pbv" in ln or "pbr" in ln),
        "nft": sorted(ln.strip() for ln in nft.splitlines() if "pybuild" in ln),
        "mounts": sorted(ln.split()[4] for ln in mounts.splitlines() if str(root) in ln or "/run/netns/pb-" in ln),
        "netns": sorted(n for n in os.listdir("/run/netns") if n.startswith("pb-")) if os.path.isdir("/run/netns") else [],
        "procs": sorted(procs - {str(os.getpid())}),
        "containers": sorted(p.name for p in (root / "containers").iterdir()) if (root / "containers").is_dir() else [],
    }


def wait_for(pred, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def clean(root):
    """The default network exists (it is made once, like docker0), nothing else runs."""
    ok(root, "run", "-d", "--rm", "--name", "warmup", "busybox", "true")
    wait_for(lambda: "warmup" not in ok(root, "ps", "-a"), what="warm-up container gone")
    return host_snapshot(root)


def test_web_service_from_a_dockerfile(root, clean):
    port = free_port()
    cid = ok(root, "run", "-d", "-p", f"127.0.0.1:{port}:80", "--name", "web", "web").strip()
    assert len(cid) == 64
    assert get(f"http://127.0.0.1:{port}/") == b"hello-from-web\n"
    ps = ok(root, "ps")
    assert "web" in ps and f"127.0.0.1:{port}->80/tcp" in ps and "Up " in ps
    assert ok(root, "ps", "-q") .split() == [cid[:12]]
    assert ok(root, "port", "web") == f"80/tcp -> 127.0.0.1:{port}\n"
    assert ok(root, "port", "web", "80") == f"127.0.0.1:{port}\n"
    # its access log in logs -f (a follower started before the request sees it)
    follower = subprocess.Popen([sys.executable, "-m", "builder.cli", "logs", "-f", "web"],
                                env={**os.environ, "PYBUILD_ROOT": str(root)}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    time.sleep(0.5)
    get(f"http://127.0.0.1:{port}/index.html")
    # exec web ls, in the container's mount namespace (its /www, not the host's)
    assert ok(root, "exec", "web", "ls", "/www").split() == ["index.html"]
    assert ok(root, "exec", "web", "hostname").strip() == cid[:12]
    info = inspect(root, "web")
    assert info["Name"] == "/web" and info["State"]["Status"] == "running" and info["State"]["Pid"] > 0
    assert info["NetworkSettings"]["Ports"]["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    assert info["Config"]["ExposedPorts"] == {"80/tcp": {}}
    assert info["HostConfig"]["NetworkMode"] == "bridge"
    top = ok(root, "top", "web")
    assert "httpd" in top
    t0 = time.monotonic()
    ok(root, "stop", "-t", "1", "web")
    assert time.monotonic() - t0 < 1 + 3.0  # the timeout, then SIGKILL (httpd as pid 1 ignores SIGTERM)
    out, _ = follower.communicate(timeout=10)  # -f ends with the container
    assert b"url:/index.html" in out
    assert "Exited (137)" in ok(root, "ps", "-a", "--filter", "name=web")
    ok(root, "rm", "-v", "web")
    assert host_snapshot(root) == clean


def test_start_restart_wait_rename_and_errors(root, clean):
    cid = ok(root, "run", "-d", "--name", "job", "busybox", "sh", "-c", "echo run; exit 3").strip()
    assert ok(root, "wait", "job").strip() == "3"
    assert ok(root, "logs", "job") == "run\n"
    ok(root, "start", "job")
    assert ok(root, "wait", cid[:8]).strip() == "3"  # an id prefix works
    assert ok(root, "logs", "job") == "run\nrun\n"
    assert ok(root, "logs", "--tail", "1", "-t", "job").endswith("Z run\n")
    assert ok(root, "logs", "--since", "1h", "job") == "run\nrun\n"
    r = pb(root, "start", "-a", "job")
    assert r.returncode == 3 and r.stdout == b"run\n"
    ok(root, "rename", "job", "job2")
    assert "job2" in ok(root, "ps", "-a", "--format", "{{.Names}} {{.State}}")
    r = pb(root, "run", "-d", "--name", "job2", "busybox", "true")
    assert r.returncode == 1 and b"already in use" in r.stderr
    assert pb(root, "run", "-d", "--name", "bad/name", "busybox", "true").returncode == 1
    r = pb(root, "exec", "job2", "true")
    assert r.returncode == 1 and b"not running" in r.stderr
    r = pb(root, "logs", "nosuch")
    assert r.returncode == 1 and r.stderr.strip() == b"error: no such container: nosuch"
    # an unknown command is run -d's own error (docker returns after the start), not a later exit
    r = pb(root, "run", "-d", "--name", "nocmd", "busybox", "nosuchcmd")
    assert r.returncode != 0 and b"exec nosuchcmd: executable file not found" in r.stderr
    assert "Exited (127)" in ok(root, "ps", "-a", "--filter", "name=nocmd")
    ok(root, "rm", "nocmd")
    r = pb(root, "run", "-d", "--restart", "sometimes", "busybox", "true")
    assert r.returncode == 2 and b"--restart" in r.stderr
    ok(root, "rm", "job2")
    assert host_snapshot(root) == clean


def test_restart_policy_and_restart_command(root, clean):
    ok(root, "run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo try; exit 1")
    wait_for(lambda: inspect(root, "flaky")["State"]["Status"] == "exited" and
             inspect(root, "flaky")["RestartCount"] == 2, what="two restarts")
    assert ok(root, "logs", "flaky") == "try\n" * 3
    ok(root, "run", "-d", "--name", "svc", "--restart", "always", "--init", "busybox", "sleep", "100")
    pid1 = inspect(root, "svc")["State"]["Pid"]
    ok(root, "restart", "-t", "1", "svc")
    info = inspect(root, "svc")
    assert info["State"]["Status"] == "running" and info["State"]["Pid"] != pid1
    # stop wins over "always"; with --init the stop signal is handled at once
    t0 = time.monotonic()
    ok(root, "stop", "svc")
    assert time.monotonic() - t0 < 5
    time.sleep(0.5)
    assert inspect(root, "svc")["State"]["Status"] == "exited"
    ok(root, "rm", "flaky", "svc")
    assert host_snapshot(root) == clean


def test_exec_env_user_workdir_and_kill(root, clean):
    ok(root, "run", "-d", "--name", "box", "-e", "A=1", "busybox", "sleep", "100")
    assert ok(root, "exec", "-e", "B=2", "-w", "/tmp", "box", "sh", "-c", "echo $A $B $(pwd)") == "1 2 /tmp\n"
    assert ok(root, "exec", "-u", "nobody", "box", "id", "-u").strip() == "65534"
    r = pb(root, "exec", "-i", "box", "cat", input=b"piped\n")
    assert r.stdout == b"piped\n"
    r = pb(root, "exec", "box", "sh", "-c", "exit 5")
    assert r.returncode == 5
    r = pb(root, "exec", "box", "nosuchcmd")
    assert r.returncode == 127 and b"not found" in r.stderr
    # exec joins the container's pid namespace: it sees the container's processes only
    ps = ok(root, "exec", "box", "ps", "-o", "pid,comm")
    assert "sleep" in ps and len(ps.strip().splitlines()) == 3  # header, sleep, ps
    ok(root, "kill", "-s", "KILL", "box")
    wait_for(lambda: inspect(root, "box")["State"]["Status"] == "exited", what="killed")
    assert inspect(root, "box")["State"]["ExitCode"] == 137
    r = pb(root, "rm", "box")
    assert r.returncode == 0
    assert host_snapshot(root) == clean


def test_rm_refuses_running_and_force(root, clean):
    ok(root, "run", "-d", "--name", "busy", "busybox", "sleep", "100")
    r = pb(root, "rm", "busy")
    assert r.returncode == 1 and b"running" in r.stderr
    ok(root, "rm", "-f", "busy")
    assert host_snapshot(root) == clean


def test_containers_reach_each_other_by_name_on_a_network_only(root, clean):
    ok(root, "network", "create", "appnet")
    ok(root, "network", "create", "othernet")
    try:
        ok(root, "run", "-d", "--network", "appnet", "--name", "alpha", "busybox", "sleep", "100")
        ok(root, "run", "-d", "--network", "appnet", "--name", "beta", "--network-alias", "db", "busybox",
           "sleep", "100")
        ok(root, "run", "-d", "--network", "othernet", "--name", "gamma", "busybox", "sleep", "100")
        beta_ip = inspect(root, "beta")["NetworkSettings"]["Networks"]["appnet"]["IPAddress"]
        # by name and alias, both ways (alpha started first and learnt of beta later)
        assert pb(root, "exec", "alpha", "ping", "-c", "1", "-W", "2", "beta").returncode == 0
        assert pb(root, "exec", "alpha", "ping", "-c", "1", "-W", "2", "db").returncode == 0
        assert pb(root, "exec", "beta", "ping", "-c", "1", "-W", "2", "alpha").returncode == 0
        # the other network: the name does not resolve, the address is not reachable
        r = pb(root, "exec", "gamma", "ping", "-c", "1", "-W", "1", "beta")
        assert r.returncode != 0
        r = pb(root, "exec", "gamma", "ping", "-c", "1", "-W", "1", beta_ip)
        assert r.returncode != 0 and b"1 packets transmitted, 0 packets received" in r.stdout
        nets = json.loads(ok(root, "network", "inspect", "appnet"))[0]
        assert sorted(c["Name"] for c in nets["Containers"].values()) == ["alpha", "beta"]
        r = pb(root, "network", "rm", "appnet")
        assert r.returncode == 1 and b"active endpoints" in r.stderr
    finally:
        pb(root, "rm", "-f", "alpha", "beta", "gamma")
    ok(root, "network", "rm", "appnet", "othernet")
    assert "appnet" not in ok(root, "network", "ls")
    assert host_snapshot(root) == clean


@contextlib.contextmanager
def outside_server():
    """A TCP server on 198.51.100.2:8000 in a network namespace of the test's own, linked to
    the host by a veth pair (host side 198.51.100.1): "outside" without leaving the machine.
    It prints the peer address and the first line it gets."""
    ns, host_if = "pbtest-outside", "pbtout0"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "link", "del", host_if], capture_output=True)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    server = None
    try:
        subprocess.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns], check=True)
        subprocess.run(["ip", "addr", "add", "198.51.100.1/30", "dev", host_if], check=True)
        subprocess.run(["ip", "link", "set", host_if, "up"], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", "198.51.100.2/30", "dev", "eth0"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "up"], check=True)
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c",
                                   "import socket;s=socket.socket();s.bind(('198.51.100.2',8000));s.listen(1);"
                                   "print('ready',flush=True);c,a=s.accept();print(a[0],c.recv(10).decode().strip(),"
                                   "flush=True);c.close()"], stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline() == "ready\n"
        yield server
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_outbound_traffic_is_routed_and_masqueraded(root, clean):
    """Outbound: the container reaches a network beyond the host and arrives from the
    host's address there (masquerade), as under docker's bridge."""
    ok(root, "run", "-d", "--name", "out", "busybox", "sleep", "100")
    try:
        with outside_server() as server:
            r = pb(root, "exec", "out", "sh", "-c", "echo hi | nc 198.51.100.2 8000")
            out, _ = server.communicate(timeout=10)
        assert r.returncode == 0, r.stderr
        assert out.split() == ["198.51.100.1", "hi"]  # masqueraded: the host's address on that link
    finally:
        pb(root, "rm", "-f", "out")
    assert host_snapshot(root) == clean


def test_foreground_run_defaults_to_a_private_network_with_outbound_access(root, clean):
    """docker's default for every `run`, in the foreground too: a namespace of its own with
    eth0 on the default bridge (not the host's interfaces), the id as host name mapped to its
    address, outbound traffic masqueraded; nothing left after it ends."""
    bridge = json.loads((root / "networks" / "bridge.json").read_text())
    with outside_server() as server:
        r = pb(root, "run", "--rm", "busybox", "sh", "-c",
               "ls /sys/class/net; ip -o -4 addr show eth0; hostname; grep -v localhost /etc/hosts; "
               "echo hi | nc 198.51.100.2 8000")
        out, _ = server.communicate(timeout=10)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().split("\n")
    assert lines[:2] == ["eth0", "lo"], lines  # no host interface in there
    addr = lines[2].split()[3].split("/")[0]
    assert ipaddress.ip_address(addr) in ipaddress.ip_network(bridge["Subnet"]), (addr, bridge)
    assert lines[4].split() == [addr, lines[3]] and len(lines[3]) == 12  # "ADDR\tID12", as docker
    assert out.split() == ["198.51.100.1", "hi"]  # masqueraded, as from a detached container
    assert host_snapshot(root) == clean
    assert not list((root / "networks" / "bridge.leases").iterdir())


def test_foreground_runs_get_distinct_addresses_and_a_killed_run_leaves_nothing(root, clean):
    """Concurrent foreground runs and detached containers share the default bridge without
    clashing (leases); kill -9 of a foreground `pybuild run` takes its container, namespace
    and veth with it, and its lease is taken back by the next run."""
    bridge = json.loads((root / "networks" / "bridge.json").read_text())
    ok(root, "run", "-d", "--name", "det", "busybox", "sleep", "100")
    det_ip = inspect(root, "det")["NetworkSettings"]["IPAddress"]
    env = dict(os.environ, PYBUILD_ROOT=str(root))
    fg = subprocess.Popen([sys.executable, "-m", "builder.cli", "run", "busybox", "sh", "-c",
                           "ip -o -4 addr show eth0; exec sleep 100"], env=env, stdout=subprocess.PIPE)
    try:
        fg_ip = fg.stdout.readline().decode().split()[3].split("/")[0]
        r = pb(root, "run", "--rm", "busybox", "sh", "-c", "ip -o -4 addr show eth0; ping -c1 -W2 " + fg_ip)
        assert r.returncode == 0, r.stderr  # one bridge: they reach each other
        third_ip = r.stdout.decode().split()[3].split("/")[0]
        assert len({det_ip, fg_ip, third_ip}) == 3, (det_ip, fg_ip, third_ip)
        leases = sorted(p.name for p in (root / "networks" / "bridge.leases").iterdir())
        assert leases == [fg_ip]
        fg.kill()  # SIGKILL: no finally runs in the CLI
        fg.wait()
        on_bridge = ["ip", "-o", "link", "show", "master", bridge["Bridge"]]
        wait_for(lambda: len(subprocess.run(on_bridge, capture_output=True, text=True).stdout.splitlines()) == 1,
                 what="only det's veth left on the bridge")
        r = pb(root, "run", "--rm", "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
        assert r.returncode == 0 and r.stdout.decode().split()[3].split("/")[0] == fg_ip  # reclaimed
        assert not list((root / "networks" / "bridge.leases").iterdir())
    finally:
        if fg.poll() is None:
            fg.kill()
            fg.wait()
        pb(root, "rm", "-f", "det")
    ok(root, "prune")  # the killed run's writable layer (kept without --rm, as docker keeps it)
    wait_for(lambda: host_snapshot(root) == clean, what="nothing left")


def test_port_taken_is_a_clear_error(root, clean):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    r = pb(root, "run", "-d", "--name", "clash", "-p", f"127.0.0.1:{port}:80", "web")
    s.close()
    assert r.returncode == 1
    assert f"cannot publish port 127.0.0.1:{port}/tcp".encode() in r.stderr
    assert b"Exited" in pb(root, "ps", "-a").stdout or True
    pb(root, "rm", "-f", "-v", "clash")
    assert host_snapshot(root) == clean
    r = pb(root, "run", "-d", "-p", "70000:80", "web")
    assert r.returncode == 2 and b"-p" in r.stderr


def test_publish_all_uses_exposed_ports(root, clean):
    ok(root, "run", "-d", "-P", "--name", "webp", "web")
    line = ok(root, "port", "webp", "80/tcp").strip()
    host, _, port = line.rpartition(":")
    assert host == "0.0.0.0" and int(port) > 0
    assert get(f"http://127.0.0.1:{port}/") == b"hello-from-web\n"
    ok(root, "rm", "-f", "-v", "webp")
    assert host_snapshot(root) == clean


def test_named_volume_persists_and_anonymous_volume_is_seeded(root, clean):
    ok(root, "volume", "create", "data")
    ok(root, "run", "-d", "--name", "writer", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    ok(root, "wait", "writer")
    ok(root, "rm", "writer")
    r = pb(root, "run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/f")
    assert r.returncode == 0 and r.stdout == b"kept\n", r.stderr
    r = pb(root, "volume", "rm", "data")
    assert r.returncode == 0
    # the image's VOLUME /www: an anonymous volume holding the image's files
    ok(root, "run", "-d", "--name", "seeded", "web")
    mounts = inspect(root, "seeded")["Mounts"]
    assert [m["Destination"] for m in mounts] == ["/www"]
    src = mounts[0]["Source"]
    assert open(os.path.join(src, "index.html")).read() == "hello-from-web\n"
    ok(root, "exec", "seeded", "sh", "-c", "echo changed > /www/index.html")
    # --volumes-from shares it
    r = pb(root, "run", "--rm", "--volumes-from", "seeded", "busybox", "cat", "/www/index.html")
    assert r.stdout == b"changed\n", r.stderr
    ok(root, "rm", "-f", "-v", "seeded")
    assert not os.path.exists(src)
    vols = ok(root, "volume", "ls", "-q").split()
    assert vols == []
    assert host_snapshot(root) == clean


def test_volume_commands(root):
    ok(root, "volume", "create", "--label", "a=b", "v1")
    info = json.loads(ok(root, "volume", "inspect", "v1"))[0]
    assert info["Name"] == "v1" and info["Labels"] == {"a": "b"} and os.path.isdir(info["Mountpoint"])
    r = pb(root, "volume", "create", "v1")
    assert r.returncode == 1 and b"already exists" in r.stderr
    ok(root, "run", "-d", "--name", "user", "-v", "v1:/v", "busybox", "true")
    r = pb(root, "volume", "rm", "v1")
    assert r.returncode == 1 and b"in use" in r.stderr
    ok(root, "rm", "-f", "user")
    assert ok(root, "volume", "prune", "-a").splitlines()[0] == "v1"
    assert ok(root, "volume", "ls", "-q") == ""


def _monitor_pid(root, ref: str) -> int:
    c = inspect(root, ref)
    st = json.loads((root / "containers" / c["Id"] / "state.json").read_text())
    return st["MonitorPid"]


def test_kill_9_of_the_monitor_leaves_a_state_ps_and_rm_handle(root, clean):
    port = free_port()
    ok(root, "run", "-d", "--name", "orphan", "-p", f"127.0.0.1:{port}:80", "web")
    assert get(f"http://127.0.0.1:{port}/") == b"hello-from-web\n"
    cpid = inspect(root, "orphan")["State"]["Pid"]
    os.kill(_monitor_pid(root, "orphan"), signal.SIGKILL)
    # the container dies with its monitor (parent-death signal), the record stays
    wait_for(lambda: not os.path.exists(f"/proc/{cpid}"), what="container gone with its monitor")
    line = [ln for ln in ok(root, "ps", "-a").splitlines() if "orphan" in ln][0]
    assert "Exited (unknown: monitor lost)" in line
    info = inspect(root, "orphan")
    assert info["State"]["Status"] == "exited" and "monitor" in info["State"]["Error"]
    ok(root, "rm", "-v", "orphan")
    assert host_snapshot(root) == clean


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.12, 0.25])
def test_kill_9_of_the_cli_during_run_d(root, clean, delay):
    p = subprocess.Popen([sys.executable, "-m", "builder.cli", "run", "-d", "--name", "interrupted", "-p",
                          f"127.0.0.1:{free_port()}:80", "web"], env={**os.environ, "PYBUILD_ROOT": str(root)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(delay)
    p.kill()
    p.wait()
    time.sleep(0.5)  # a monitor forked before the kill goes on and starts the container
    r = pb(root, "ps", "-a")
    assert r.returncode == 0
    ids = ok(root, "ps", "-aq").split()
    if ids:
        ok(root, "rm", "-f", "-v", *ids)
    assert ok(root, "volume", "ls", "-q") == ""
    assert host_snapshot(root) == clean


def test_twenty_detached_containers_leak_nothing(root, clean):
    for i in range(20):
        ok(root, "run", "-d", "--name", f"c{i}", "-p", f"127.0.0.1:{free_port()}:80", "busybox", "sleep", "100")
    assert len(ok(root, "ps", "-q").split()) == 20
    ips = {inspect(root, f"c{i}")["NetworkSettings"]["IPAddress"] for i in range(20)}
    assert len(ips) == 20
    ok(root, "rm", "-f", *[f"c{i}" for i in range(20)])
    assert host_snapshot(root) == clean


def test_container_prune_and_ps_filters(root, clean):
    ok(root, "run", "-d", "--name", "done1", "--label", "team=a", "busybox", "true")
    ok(root, "run", "-d", "--name", "live1", "busybox", "sleep", "100")
    ok(root, "wait", "done1")
    assert ok(root, "ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}").split() == ["done1"]
    assert ok(root, "ps", "-a", "--filter", "label=team=a", "--format", "{{.Names}}").split() == ["done1"]
    assert ok(root, "ps", "-a", "--filter", "ancestor=busybox", "--format", "{{.Names}}").split() == ["live1", "done1"]
    assert json.loads(ok(root, "ps", "--format", "json"))["Names"] == "live1"
    out = ok(root, "container", "prune")
    assert "Total reclaimed: 1" in out
    assert ok(root, "ps", "-a", "--format", "{{.Names}}").split() == ["live1"]
    ok(root, "rm", "-f", "live1")
    assert host_snapshot(root) == clean


def test_detached_rm_removes_itself(root, clean):
    ok(root, "run", "-d", "--rm", "--name", "gone", "busybox", "true")
    wait_for(lambda: "gone" not in ok(root, "ps", "-a"), what="--rm container removed")
    assert host_snapshot(root) == clean


def test_store_prune_keeps_detached_containers_and_inspect_finds_them(root, clean, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo only-here > /only\n")
    ok(root, "build", "-q", "-t", "onlyimg", str(tmp_path))
    ok(root, "run", "-d", "--name", "keep", "onlyimg", "sleep", "100")
    ok(root, "run", "-d", "--name", "keep2", "onlyimg", "cat", "/only")
    ok(root, "wait", "keep2")
    ok(root, "rmi", "onlyimg")  # the containers still hold its layers
    try:
        ok(root, "prune")
        assert ok(root, "ps", "-a", "--format", "{{.Names}} {{.State}}").splitlines() == ["keep2 exited", "keep running"]
        assert ok(root, "start", "-a", "keep2") == "only-here\n"
        assert json.loads(ok(root, "inspect", "keep"))[0]["State"]["Status"] == "running"
        assert ok(root, "exec", "keep", "cat", "/only") == "only-here\n"
    finally:
        ok(root, "rm", "-f", "keep", "keep2")
    assert host_snapshot(root) == clean



def test_pasta_network_as_root(root, clean):
    """--network pasta (the rootless default; as root it serves a named namespace made
    before the container starts): published port, outbound through pasta, nothing left."""
    from shutil import which
    if not which("pasta"):
        pytest.fail("pasta (Debian package passt) is needed: tests/apt-packages.txt")
    port = free_port()
    ok(root, "run", "-d", "--network", "pasta", "-p", f"127.0.0.1:{port}:80", "--name", "pw", "web")
    assert get(f"http://127.0.0.1:{port}/") == b"hello-from-web\n"
    assert f"127.0.0.1:{port}->80/tcp" in ok(root, "ps")
    # outbound: pasta makes the connection from the host (here to a namespace of our own)
    with outside_server() as server:
        r = pb(root, "exec", "pw", "sh", "-c", "echo hi | nc 198.51.100.2 8000")
        out, _ = server.communicate(timeout=10)
    assert r.returncode == 0, r.stderr
    assert out.split() == ["198.51.100.1", "hi"]
    ok(root, "rm", "-f", "-v", "pw")
    wait_for(lambda: host_snapshot(root) == clean, timeout=5, what="pasta gone with the namespace")


def test_hostile_image_volume_paths_are_refused_before_any_copy(root, tmp_path):
    (tmp_path / "Dockerfile").write_text('FROM busybox\nVOLUME ["/../../../etc"]\n')
    ok(root, "build", "-q", "-t", "badvol", str(tmp_path))
    before = ok(root, "volume", "ls", "-q")
    r = pb(root, "run", "-d", "--name", "badvol", "badvol", "true")
    assert r.returncode == 1 and b"invalid volume path '/../../../etc'" in r.stderr
    assert ok(root, "volume", "ls", "-q") == before  # nothing seeded, nothing created
    assert "badvol" not in ok(root, "ps", "-a")
    r = pb(root, "run", "-d", "-v", "vol:/a/../b", "busybox", "true")
    assert r.returncode == 1 and b"invalid volume path" in r.stderr
    ok(root, "rmi", "badvol")


def test_exec_tty_gets_a_console_on_the_containers_devpts(root, clean):
    import pty
    ok(root, "run", "-d", "--name", "ttybox", "busybox", "sleep", "100")
    try:
        pid, fd = pty.fork()
        if pid == 0:
            os.environ["PYBUILD_ROOT"] = str(root)
            os.execv(sys.executable, [sys.executable, "-m", "builder.cli", "exec", "-it", "ttybox", "sh", "-c",
                                      "tty; echo TERM=$TERM; read x; echo got:$x"])
        out = b""
        deadline = time.monotonic() + 20
        sent = False
        while time.monotonic() < deadline:
            import select
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if b"TERM=" in out and not sent:
                os.write(fd, b"typed\r")
                sent = True
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, out
        assert b"/dev/pts/0" in out and b"TERM=xterm" in out and b"got:typed" in out, out
    finally:
        ok(root, "rm", "-f", "ttybox")


def test_health_checks_from_flags_and_image(root, clean, tmp_path):
    ok(root, "run", "-d", "--name", "hc", "--health-cmd", "test -f /tmp/ok", "--health-interval", "300ms",
       "--health-retries", "2", "busybox", "sleep", "100")
    wait_for(lambda: "(unhealthy)" in ok(root, "ps", "--filter", "name=hc"), what="unhealthy")
    ok(root, "exec", "hc", "touch", "/tmp/ok")
    wait_for(lambda: "(healthy)" in ok(root, "ps", "--filter", "name=hc"), what="healthy")
    health = json.loads(ok(root, "container", "inspect", "-f", "{{json .State.Health}}", "hc"))
    assert health["Status"] == "healthy" and health["FailingStreak"] == 0 and health["Log"][-1]["ExitCode"] == 0
    ok(root, "rm", "-f", "hc")
    (tmp_path / "Dockerfile").write_text('FROM busybox\nHEALTHCHECK --interval=300ms CMD ["true"]\n')
    ok(root, "build", "-q", "-t", "hcimg", str(tmp_path))
    ok(root, "run", "-d", "--name", "hc2", "hcimg", "sleep", "100")
    wait_for(lambda: "(healthy)" in ok(root, "ps", "--filter", "name=hc2"), what="image healthcheck")
    ok(root, "run", "-d", "--name", "hc3", "--no-healthcheck", "hcimg", "sleep", "100")
    assert "Health" not in inspect(root, "hc3")["State"]
    r = pb(root, "run", "-d", "--health-interval", "soon", "busybox", "true")
    assert r.returncode == 2 and b"--health-interval" in r.stderr
    ok(root, "rm", "-f", "hc2", "hc3")
    ok(root, "rmi", "hcimg")
    assert host_snapshot(root) == clean
