"""The sandbox for real: namespaces, overlayfs, /proc, /dev, id switch, streams, limits."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from runtime import sandbox
from runtime.config import Limits, Mount, Process, Rootfs, SandboxConfig
from runtime.errors import ConfigError, ExecError, MountError

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


def ours(after: str, before: str, rootfs: Rootfs) -> list[str]:
    """Mount table lines that appeared since `before` and could be ours (other engineers'
    tools mount and unmount things on this host concurrently, so equality is too strict)."""
    paths = [p for p in (rootfs.path, *rootfs.lowerdirs, rootfs.upperdir) if p]
    new = set(after.splitlines()) - set(before.splitlines())
    kinds = (" - proc ", " - sysfs ", " - devpts ", " - mqueue ", " - tmpfs shm ")
    return [ln for ln in new if "pybuild-sandbox-" in ln or any(p in ln for p in paths) or any(k in ln for k in kinds)]


def mount_targets(mountinfo: str) -> list[str]:
    return [line.split()[4] for line in mountinfo.splitlines() if line.strip()]


def test_process_is_pid_1_with_own_hostname(sh):
    r, out, err = sh("echo $$; hostname; cat /etc/hostname", hostname="box-7")
    assert r.exit_code == 0, err
    assert out.split() == ["1", "box-7", "box-7"]
    assert r.signal is None and not r.timed_out and not r.oom_killed


def test_host_canary_file_is_invisible(sh, tmp_path):
    canary = Path("/tmp") / f"pybuild-canary-{os.getpid()}"
    canary.write_text("host secret")
    try:
        r, out, _ = sh(f"cat {canary} 2>/dev/null || echo invisible; ls /tmp | grep -c canary || true")
        assert out.split() == ["invisible", "0"]
    finally:
        canary.unlink()


def test_host_processes_are_invisible(sh):
    r, out, _ = sh("ls /proc | grep -E '^[0-9]+$'; ps -o pid,comm")
    pids = [ln for ln in out.splitlines() if ln.isdigit()]
    assert pids and set(pids) <= {"1", "2", "3", "4"}, pids  # sh, ls, grep: a handful, all new
    assert str(os.getpid()) not in out.split()


def test_mountinfo_shows_only_the_expected_mounts(sh):
    r, out, _ = sh("cat /proc/self/mountinfo")
    targets = mount_targets(out)
    expected = {"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                "/etc/hosts", "/etc/resolv.conf", "/etc/hostname",
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
                "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/sched_debug", "/proc/acpi", "/proc/scsi", "/proc/asound", "/proc/timer_stats",
                "/sys/firmware", "/sys/devices/virtual/powercap",
                # the standard nodes, bound from the host onto the nodev /dev
                "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}
    assert targets[0] == "/" and " - overlay " in out.splitlines()[0]
    assert set(targets) <= expected, set(targets) - expected
    assert len(targets) == len(set(targets)), "nothing is mounted twice"
    assert {"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/sys", "/etc/hosts"} <= set(targets)
    host = Path("/proc/self/mountinfo").read_text()
    assert "cgroup" not in out and "/mnt/" not in out
    assert host != out


def test_network_none_has_only_loopback_up(sh):
    r, out, _ = sh("ls /sys/class/net; ip -o link show lo")
    lines = out.splitlines()
    assert lines[0] == "lo" and "UP" in lines[1].split("<", 1)[1].split(">")[0].split(","), out


def test_network_host_sees_host_interfaces(sh):
    host_ifaces = sorted(os.listdir("/sys/class/net"))
    if host_ifaces == ["lo"]:
        pytest.skip("this host has no interface but lo: 'host' and 'none' look alike")
    r, out, _ = sh("ls /sys/class/net", network="host", namespaces=("mount", "pid", "uts", "ipc"))
    assert sorted(out.split()) == host_ifaces


def test_exit_code_is_propagated(sh):
    r, _, _ = sh("exit 42")
    assert (r.exit_code, r.signal) == (42, None)


def test_signal_is_propagated_under_minimal_init(sh):
    # As pid 1 a process ignores signals it has no handler for (kernel rule), so the
    # self-kill is tested with the minimal init as pid 1 and the shell as pid 2.
    r, out, _ = sh("echo $$; kill -TERM $$; sleep 5", init=True)
    assert out.split() == ["2"]
    assert (r.exit_code, r.signal) == (128 + signal.SIGTERM, signal.SIGTERM)


def test_timeout_kills_with_sigkill(sh):
    t = time.monotonic()
    r, _, _ = sh("sleep 30", timeout=0.5)
    assert time.monotonic() - t < 5
    assert r.timed_out and r.signal == signal.SIGKILL and r.exit_code == 137


def test_cancel_event_stops_the_sandbox(overlay):
    rootfs, _ = overlay
    ev = threading.Event()
    cfg = SandboxConfig(rootfs=rootfs, process=Process(argv=("sleep", "30")))
    threading.Timer(0.3, ev.set).start()
    t = time.monotonic()
    r = sandbox.run(cfg, cancel=ev)
    assert time.monotonic() - t < 5 and r.cancelled and r.signal == signal.SIGKILL


def test_uid_gid_switch(sh):
    r, out, err = sh("id; cat /proc/self/status | grep -E '^(CapEff|NoNewPrivs)'",
                     process={"uid": 1000, "gid": 1000, "additional_gids": (5, 1)})
    assert r.exit_code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("uid=1000(app) gid=1000(app) groups=")
    assert "5(tty)" in lines[0] and "1(daemon)" in lines[0]
    assert "CapEff:\t0000000000000000" in out and "NoNewPrivs:\t1" in out


def test_root_gets_dockers_default_capabilities(sh):
    r, out, _ = sh("grep -E '^Cap(Eff|Bnd)' /proc/self/status")
    eff = int(out.split()[1], 16)
    # CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW
    # SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP = 0xa80425fb, Docker's well-known mask
    assert eff == 0xA80425FB
    assert int(out.split()[3], 16) == 0xA80425FB


def test_env_and_cwd(sh):
    r, out, _ = sh('echo "$GREETING"; pwd', process={"env": ("PATH=/bin", "GREETING=hello world"), "cwd": "/home/app"})
    assert out.splitlines() == ["hello world", "/home/app"]


def test_missing_cwd_is_created(sh, overlay):
    _, upper = overlay
    r, out, _ = sh("pwd", process={"cwd": "/srv/app"})
    assert out.strip() == "/srv/app" and (upper / "srv" / "app").is_dir()


def test_path_lookup_happens_inside_the_container(sh, busybox):
    r, out, _ = sh("echo ok", process={"env": ("PATH=/nowhere:/bin",)})
    assert out == "ok\n"
    cfg = SandboxConfig(rootfs=Rootfs(path=str(busybox)), process=Process(argv=("no-such-tool",)))
    with pytest.raises(ExecError, match="no-such-tool: executable file not found in \\$PATH"):
        sandbox.run(cfg)


def test_overlay_upper_gets_writes_but_never_etc_files_or_stubs(sh, overlay, busybox, tmp_path):
    _, upper = overlay
    etc = tmp_path / "etc-files"  # writable /etc files (pybuild run's); by default they are read-only
    etc.mkdir()
    r, out, _ = sh("echo data > /root/new; echo 10.0.0.1 x >> /etc/hosts; cat /etc/hosts | tail -1;"
                   " stat -c '%Y %a %u' /etc", etc_files_dir=str(etc))
    lines = out.splitlines()
    assert lines[0] == "10.0.0.1 x" and (etc / "hosts").read_text().endswith("10.0.0.1 x\n")
    st = os.stat(busybox / "etc")  # the image's /etc metadata shows, not the mount-point layer's
    assert lines[1].split() == [str(int(st.st_mtime)), f"{st.st_mode & 0o7777:o}", str(st.st_uid)]
    assert (upper / "root" / "new").read_text() == "data\n"
    leftovers = sorted(str(p.relative_to(upper)) for p in upper.rglob("*"))
    assert leftovers == ["root", "root/new"], leftovers  # mount points came from an extra lower
    assert not (busybox / "root" / "new").exists()


def test_mount_points_under_an_image_symlink_use_cleaned_stubs(tmp_path, busybox):
    lower = tmp_path / "lower"
    subprocess.run(["cp", "-a", str(busybox), str(lower)], check=True)
    (lower / "etc").rename(lower / "real-etc")
    (lower / "etc").symlink_to("real-etc")  # /etc -> /real-etc, as some images do
    mtime = os.stat(lower / "real-etc").st_mtime_ns
    upper, work = tmp_path / "u", tmp_path / "w"
    upper.mkdir(), work.mkdir()
    out = bytearray()
    cfg = SandboxConfig(rootfs=Rootfs(lowerdirs=(str(lower),), upperdir=str(upper), workdir=str(work)),
                        hostname="via-link", process=Process(argv=("cat", "/etc/hostname")))
    assert sandbox.run(cfg, stdout=out.extend).exit_code == 0 and out == b"via-link\n"
    # the stub went into the upper (through the link, inside the root) and is gone again
    assert sorted(str(p.relative_to(upper)) for p in upper.rglob("*")) == ["real-etc"]
    assert os.stat(upper / "real-etc").st_mtime_ns == mtime


def test_readonly_rootfs(sh):
    r, out, _ = sh("touch /x 2>&1; touch /tmp/y 2>&1; echo rc=$?", readonly_rootfs=True)
    assert "Read-only file system" in out and out.rstrip().endswith("rc=1")


def test_bind_and_tmpfs_mounts(sh, tmp_path):
    src = tmp_path / "cache"
    src.mkdir()
    (src / "f").write_text("cached\n")
    ro = tmp_path / "secret"
    ro.write_text("s3cret\n")
    mounts = (Mount("bind", "/cache", str(src)), Mount("bind", "/run/secrets/s", str(ro), readonly=True),
              Mount("tmpfs", "/scratch", options=("size=1m", "mode=1777")))
    r, out, err = sh("cat /cache/f; echo new > /cache/g; cat /run/secrets/s; echo x > /run/secrets/s || echo ro;"
                     " stat -c %a /scratch; df -k /scratch | tail -1", mounts=mounts)
    assert r.exit_code == 0, err
    lines = out.splitlines()
    assert lines[:4] == ["cached", "s3cret", "ro", "1777"]
    assert lines[4].split()[1] == "1024"
    assert (src / "g").read_text() == "new\n"


def test_memory_limit_oom_is_reported(sh):
    r, out, err = sh("dd if=/dev/zero of=/dev/null bs=64M count=1", limits=Limits(memory_bytes=16 << 20))
    assert r.oom_killed and r.signal == signal.SIGKILL, (r, err)


def test_memory_limit_allows_small_work(sh):
    r, _, err = sh("dd if=/dev/zero of=/dev/null bs=1M count=4", limits=Limits(memory_bytes=64 << 20, cpu_quota=0.5))
    assert r.exit_code == 0 and not r.oom_killed, err


def test_pids_limit_is_enforced(sh):
    script = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 2 & done 2>&1; echo spawned; kill $(jobs -p) 2>/dev/null"
    r, out, err = sh(script, limits=Limits(pids=5))
    assert "can't fork" in out + err or "Resource temporarily unavailable" in out + err, (out, err)
    r2, out2, _ = sh(script)
    assert "can't fork" not in out2


def test_stdin_bytes_and_streamed_output(overlay):
    rootfs, _ = overlay
    got = []
    cfg = SandboxConfig(rootfs=rootfs, process=Process(argv=("sh", "-c", "cat; head -c 50000000 /dev/zero")))
    r = sandbox.run(cfg, stdin=b"from stdin\n", stdout=got.append)
    assert r.exit_code == 0
    assert got[0].startswith(b"from stdin\n")
    assert sum(map(len, got)) == 11 + 50_000_000
    assert max(map(len, got)) <= 65536  # handed over in chunks, never accumulated


def test_output_to_fd(overlay, tmp_path):
    rootfs, _ = overlay
    with open(tmp_path / "out", "wb") as f:
        r = sandbox.run(SandboxConfig(rootfs=rootfs, process=Process(argv=("echo", "to fd"))), stdout=f.fileno())
    assert r.exit_code == 0 and (tmp_path / "out").read_bytes() == b"to fd\n"


@pytest.mark.parametrize("zygote", ["1", "0"], ids=["fork-server", "re-exec"])
def test_tty(overlay, monkeypatch, zygote):
    # As under docker the console is the container's own /dev/pts/0 (ttyname works), sized
    # before the process starts, and the controlling terminal of the process's session.
    monkeypatch.setenv("PYBUILD_SANDBOX_ZYGOTE", zygote)
    rootfs, _ = overlay
    out = bytearray()
    script = ("test -t 0 && test -t 1 && echo isatty; stty size; tty; ls /dev/pts;"
              " [ \"$(cut -d' ' -f7 /proc/$$/stat)\" = $((136 << 8)) ] && echo ctty")  # tty_nr: pts 0
    cfg = SandboxConfig(rootfs=rootfs, process=Process(argv=("sh", "-c", script), tty=True, terminal_size=(33, 101)))
    r = sandbox.run(cfg, stdout=out.extend)
    assert r.exit_code == 0
    assert out.replace(b"\r\n", b"\n").decode().split() == ["isatty", "33", "101", "/dev/pts/0", "0", "ptmx", "ctty"]


def test_tty_belongs_to_the_containers_user(overlay):
    rootfs, _ = overlay
    out = bytearray()
    cfg = SandboxConfig(rootfs=rootfs, process=Process(argv=("sh", "-c", "stat -c '%u %g %a' $(tty)"), tty=True,
                                                       uid=1000, gid=1000))
    r = sandbox.run(cfg, stdout=out.extend)
    assert r.exit_code == 0
    assert out.decode().split() == ["1000", "5", "620"]  # the user's, group tty, rw--w----


def test_plain_dir_rootfs_leaves_no_stubs(busybox, tmp_path):
    bare = tmp_path / "bare"
    subprocess.run(["cp", "-a", str(busybox), str(bare)], check=True)
    for d in ("proc", "dev", "sys"):
        (bare / d).rmdir()
    before = sorted(os.listdir(bare))
    cfg = SandboxConfig(rootfs=Rootfs(path=str(bare)), process=Process(argv=("ls", "/proc/1/", "/dev/null", "/sys/kernel")))
    r = sandbox.run(cfg)
    assert r.exit_code == 0
    assert sorted(os.listdir(bare)) == before  # /proc, /dev, /sys, /etc/hosts... stubs removed again


def test_invalid_config_lists_every_problem(busybox):
    cfg = SandboxConfig(rootfs=Rootfs(path="relative"), process=Process(argv=(), cwd="x", env=("NOEQUALS",)),
                        network="bridge", mounts=(Mount("nfs", "rel"),), limits=Limits(pids=0))
    with pytest.raises(ConfigError) as ei:
        sandbox.run(cfg)
    assert len(ei.value.problems) >= 7
    assert str(ei.value).count(";") == len(ei.value.problems) - 1


def test_mount_error_names_op_source_target_and_cleans_stubs(overlay):
    rootfs, upper = overlay
    cfg = SandboxConfig(rootfs=rootfs, process=Process(argv=("true",)),
                        mounts=(Mount("tmpfs", "/x", options=("size=bogus",)),))
    with pytest.raises(MountError, match=r"mount tmpfs tmpfs on .*/x \(flags nosuid,nodev, data 'size=bogus'\)"):
        sandbox.run(cfg)
    assert not (upper / "x").exists()  # the mount point made for it is gone again


def test_exec_errors_are_clear(overlay):
    rootfs, _ = overlay
    cfg = SandboxConfig(rootfs=rootfs, process=Process(argv=("/etc/passwd",)))
    with pytest.raises(ExecError, match="exec /etc/passwd: permission denied"):
        sandbox.run(cfg)
    cfg = SandboxConfig(rootfs=rootfs, process=Process(argv=("true",), cwd="/etc/passwd"))
    with pytest.raises(ExecError, match="cannot enter working directory /etc/passwd: Not a directory"):
        sandbox.run(cfg)


def test_concurrent_sandboxes_from_threads(busybox, tmp_path):
    results = {}

    def one(i: int) -> None:
        up, wd = tmp_path / f"u{i}", tmp_path / f"w{i}"
        up.mkdir(), wd.mkdir()
        out = bytearray()
        cfg = SandboxConfig(rootfs=Rootfs(lowerdirs=(str(busybox),), upperdir=str(up), workdir=str(wd)),
                            hostname=f"h{i}", process=Process(argv=("sh", "-c", f"hostname; echo {i} > /id; sleep 0.2")))
        results[i] = (sandbox.run(cfg, stdout=out.extend).exit_code, out.decode(), (up / "id").read_text())
    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: (0, f"h{i}\n", f"{i}\n") for i in range(6)}


def test_symlinked_mount_target_stays_inside_rootfs(tmp_path, busybox):
    lower = tmp_path / "lower"
    subprocess.run(["cp", "-a", str(busybox), str(lower)], check=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (lower / "cachelink").symlink_to(str(outside))  # absolute link: must resolve inside the root
    src = tmp_path / "src"
    src.mkdir()
    cfg = SandboxConfig(rootfs=Rootfs(path=str(lower)), process=Process(argv=("true",)),
                        mounts=(Mount("bind", "/cachelink/deep", str(src)),))
    assert sandbox.run(cfg).exit_code == 0
    assert not (outside / "deep").exists()


def test_hundred_runs_leave_host_mount_table_unchanged(overlay):
    rootfs, _ = overlay
    before = Path("/proc/self/mountinfo").read_text()
    dirs_before = {d for d in os.listdir("/tmp") if d.startswith("pybuild-sandbox-")}
    cfg = SandboxConfig(rootfs=rootfs, process=Process(argv=("true",)))
    for _ in range(100):
        assert sandbox.run(cfg).exit_code == 0
    assert ours(Path("/proc/self/mountinfo").read_text(), before, rootfs) == []
    assert {d for d in os.listdir("/tmp") if d.startswith("pybuild-sandbox-")} <= dirs_before


def test_kill_9_of_the_builder_leaves_nothing_behind(busybox, tmp_path):
    before = Path("/proc/1/mountinfo").read_text()
    marker = f"pybuild-orphan-{os.getpid()}"
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parents[2])!r});"
            "from runtime import sandbox; from runtime.config import *;"
            f"sandbox.run(SandboxConfig(rootfs=Rootfs(path={str(busybox)!r}), hostname={marker!r},"
            "process=Process(argv=('sh','-c','sleep 300 & sleep 301'))))")
    builder = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _procs_with_hostname(marker):
        time.sleep(0.05)
    assert _procs_with_hostname(marker), "container never started"
    builder.kill()
    builder.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _procs_with_hostname(marker):
        time.sleep(0.05)
    assert not _procs_with_hostname(marker)
    assert ours(Path("/proc/1/mountinfo").read_text(), before, Rootfs(path=str(busybox))) == []
    # only the dead builder's private files remain; the next builder collects them
    from runtime import prepare
    parent = prepare.private_parent() or tempfile.gettempdir()
    left = [d for d in os.listdir(parent) if d.startswith(f"pybuild-sandbox-{builder.pid}-")]
    assert len(left) == 1
    prepare._collected.discard(parent)
    prepare._collect_stale(parent)
    assert not os.path.exists(os.path.join(parent, left[0]))


def _procs_with_hostname(name: str) -> list[int]:
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if f.read() not in (b"sleep\x00300\x00", b"sleep\x00301\x00"):
                        continue
                # the uts namespace tells our container's processes apart from anyone else's
                if os.readlink(f"/proc/{p}/ns/uts") != os.readlink("/proc/self/ns/uts"):
                    found.append(int(p))
            except OSError:
                continue
    return found


def test_copy_snapshot_fallback_without_overlayfs(sh, overlay, busybox, monkeypatch):
    from runtime import fallback
    monkeypatch.setattr(fallback, "_supported", False)
    _, upper = overlay
    (upper / "etc").mkdir()
    (upper / "etc" / "from-upper").write_text("earlier step\n")
    r, out, err = sh("cat /etc/from-upper; echo new > /root/new; echo changed > /etc/group; rm /etc/passwd;"
                     " cat /proc/self/mountinfo | head -1")
    assert r.exit_code == 0, err
    assert out.startswith("earlier step\n") and " - overlay " not in out
    assert (upper / "root" / "new").read_text() == "new\n"
    assert (upper / "etc" / "group").read_text() == "changed\n"
    wh = os.lstat(upper / "etc" / "passwd")
    assert (wh.st_mode & 0o170000) == 0o020000 and wh.st_rdev == 0  # overlayfs whiteout
    assert (upper / "etc" / "from-upper").read_text() == "earlier step\n"
    assert (busybox / "etc" / "passwd").exists()  # the lower is never touched
    assert not list(upper.parent.glob("pybuild-copy-snapshot-*"))
    assert not (upper / "proc").exists() and not (upper / "etc" / "hosts").exists()


def test_fork_server_is_restarted_after_it_was_killed(sh, monkeypatch):
    from runtime import zygote
    monkeypatch.setenv("PYBUILD_SANDBOX_ZYGOTE", "1")
    assert sh("true")[0].exit_code == 0
    z = zygote._zygote
    old = z.pid
    os.kill(old, signal.SIGKILL)
    z._proc.wait()
    r, out, _ = sh("echo $$")
    assert (r.exit_code, out) == (0, "1\n") and z.pid != old


def test_a_fork_forgets_the_inherited_fork_server_without_closing_a_reused_fd(tmp_path):
    # A container's monitor is a fork of the CLI, which (`pybuild run` as root) may already
    # have forked a fork server: the monitor closes every inherited fd, opens its lock (the
    # lowest free number: the old socket's) and starts a server of its own. Forgetting the
    # old one must not close that number again: the lock would go, and the CLI would see the
    # monitor gone while it runs.
    code = f"""if True:
        import gc, os, sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from runtime import zygote
        assert zygote.prefork()
        fd = zygote._zygote._sock.fileno()
        pid = os.fork()
        if pid == 0:
            os.closerange(3, 1 << 16)
            reused = os.open({str(tmp_path / "lock")!r}, os.O_RDWR | os.O_CREAT)
            if reused != fd:
                os.dup2(reused, fd)
                reused = fd
            ino = os.fstat(reused).st_ino
            zygote.spawn(b"x", [])  # a server of our own (the request itself fails: no fds)
            gc.collect()
            try:
                still = os.fstat(reused).st_ino == ino  # (a closed number may be reused at once)
            except OSError:
                still = False
            os._exit(0 if still else 3)
        _, st = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(st))
    """
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stderr.decode()[-500:])


@pytest.mark.parametrize("script, kw, expect", [
    ("echo $$; hostname; echo $A", {"hostname": "rx", "process": {"env": ("PATH=/bin", "A=1")}}, (0, "1\nrx\n1\n")),
    ("exit 3", {}, (3, "")),
])
def test_reexec_path_without_fork_server(sh, monkeypatch, script, kw, expect):
    monkeypatch.setenv("PYBUILD_SANDBOX_ZYGOTE", "0")
    r, out, _ = sh(script, **kw)
    assert (r.exit_code, out) == expect


def test_reexec_path_timeout(sh, monkeypatch):
    monkeypatch.setenv("PYBUILD_SANDBOX_ZYGOTE", "0")
    r, _, _ = sh("sleep 30", timeout=0.3)
    assert r.timed_out and r.signal == signal.SIGKILL


@pytest.mark.parametrize("init", [True, False])
def test_minimal_init_reaps_orphaned_zombies(sh, overlay, init):
    # An orphan (its parent shell exits at once) is re-parented to pid 1. With `init`, our
    # minimal init is pid 1 and reaps it; without, pid 1 is `sleep` (never waits), so the
    # orphan stays a zombie (state Z): the control case showing the check can fail.
    _, upper = overlay
    script = ("sh -c 'sleep 0.1 &'; (sleep 0.5; ps -o stat,comm > /tmp/ps) & exec sleep 0.9")
    r, _, _ = sh(script, init=init)
    assert r.exit_code == 0
    states = [ln.split()[0] for ln in (upper / "tmp" / "ps").read_text().splitlines()[1:]]
    assert ("Z" in states) is (not init), states


def test_rlimits_are_applied(sh):
    from runtime.config import Rlimit
    r, out, _ = sh("ulimit -n; ulimit -Hn", rlimits=(Rlimit("nofile", 256, 512),))
    assert out.split() == ["256", "512"]


def test_rlimits_only_lower(sh):
    import resource
    from runtime.config import Rlimit
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with pytest.raises(ExecError, match="rlimit nofile: hard limit .* is above the current"):
        sh("true", rlimits=(Rlimit("nofile", 10, hard + 1),))


def test_interactive_tty_session(overlay):
    # `pybuild run -it`: the user's terminal (here a pty we drive) is put in raw mode and
    # relayed both ways to the container's own pty; its size is copied over.
    import fcntl
    import struct
    import termios
    rootfs, _ = overlay
    user_master, user_tty = os.openpty()
    fcntl.ioctl(user_tty, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    before = termios.tcgetattr(user_tty)
    seen = bytearray()

    def drive() -> None:
        time.sleep(0.3)
        os.write(user_master, b"stty size; echo hel''lo; exit 3\r")
        while True:
            try:
                chunk = os.read(user_master, 4096)
            except OSError:
                return
            if not chunk:
                return
            seen.extend(chunk)
    t = threading.Thread(target=drive, daemon=True)
    t.start()
    cfg = SandboxConfig(rootfs=rootfs, process=Process(argv=("sh",), tty=True, env=("PATH=/bin", "PS1=$ ")),
                        timeout=20)  # a broken relay fails instead of hanging
    r = sandbox.run(cfg, stdin=user_tty, stdout=user_tty)
    assert r.exit_code == 3
    assert termios.tcgetattr(user_tty) == before  # raw mode undone
    os.close(user_tty)
    t.join(5)
    os.close(user_master)
    text = seen.decode(errors="replace")
    assert "40 120" in text and "hello" in text, text


def test_sigpipe_has_its_default_action(sh):
    # Python ignores SIGPIPE; were that inherited, `yes | head` would never end.
    r, out, _ = sh("yes | head -c 6; grep -E '^Sig(Ign|Blk)' /proc/self/status", timeout=15)
    assert not r.timed_out and out.startswith("y\ny\ny\n")
    ign = int(out.split("SigIgn:")[1].split()[0], 16)
    assert not ign & (1 << (13 - 1)) and not ign & (1 << (25 - 1)), out  # SIGPIPE, SIGXFSZ


def test_cpu_quota_is_enforced(sh):
    # 1 s of busy loop under a 0.1-CPU quota gets ~0.1 s of CPU (without: up to 1 s).
    r, out, err = sh('time timeout 1 sh -c "while :; do :; done"', limits=Limits(cpu_quota=0.1))
    fields = dict(line.split(None, 1) for line in err.splitlines() if line.startswith(("user", "sys", "real")))
    secs = {k: float(v.replace("m", " ").split()[0]) * 60 + float(v.rstrip("s").split()[-1]) for k, v in fields.items()}
    assert secs["real"] >= 0.9, err
    assert secs["user"] + secs["sys"] <= 0.25, err


def test_read_only_overlay_without_upper(sh, busybox):
    r, out, _ = sh("cat /etc/hostname; touch /x 2>/dev/null || echo ro", hostname="lower-only",
                   rootfs=Rootfs(lowerdirs=(str(busybox),)))
    assert r.exit_code == 0 and out.split() == ["lower-only", "ro"]


def test_large_config_goes_through_a_re_exec(sh):
    big = "x" * 100_000  # a plan larger than one fork-server message
    r, out, _ = sh('echo ${#BIG}', process={"env": ("PATH=/bin", f"BIG={big}")})
    assert (r.exit_code, out) == (0, "100000\n")


def test_deep_overlay_beyond_one_page_of_mount_options(busybox, tmp_path):
    # mount(2) takes overlay's options as one page (~45 absolute snapshot paths); deeper images
    # go through the new mount API, one "lowerdir+" per layer (kernel 6.8+).
    lowers = []
    for i in range(80):
        d = tmp_path / "snapshots" / (f"{i:02d}" * 32)  # snapshot-like 64-character names
        d.mkdir(parents=True)
        (d / f"f{i}").write_text(f"{i}\n")
        lowers.append(str(d))
    lowers.reverse()  # top first
    lowers.append(str(busybox))
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    assert len(":".join(lowers)) > 4096
    out = bytearray()
    cfg = SandboxConfig(rootfs=Rootfs(lowerdirs=tuple(lowers), upperdir=str(upper), workdir=str(work)),
                        process=Process(argv=("sh", "-c", "cat /f0 /f79; ls / | grep -c '^f'; echo w > /w")))
    r = sandbox.run(cfg, stdout=out.extend)
    assert r.exit_code == 0, out
    assert out.decode().split() == ["0", "79", "80"]
    assert (upper / "w").read_text() == "w\n"


def test_too_deep_for_an_old_kernel_is_one_clear_error(tmp_path, monkeypatch):
    # Without the new mount API (before 6.8 "lowerdir+" is EINVAL, before 5.2 fsopen ENOSYS)
    # and too long even as relative paths: a MountError saying so, not mount(2)'s ENOENT.
    import errno

    from runtime import mounts
    from runtime import syscalls as sc
    from runtime.errors import MountError

    def no_new_api(_fstype):
        raise OSError(errno.ENOSYS, "Function not implemented")
    monkeypatch.setattr(sc, "fsopen", no_new_api)
    monkeypatch.setattr(mounts, "mount", lambda *a, **k: pytest.fail("mount(2) must not be tried"))
    lowers = [str(tmp_path / "s" / (f"{i:03d}" * 22)) for i in range(80)]
    with pytest.raises(MountError, match="80 layers is too deep for this kernel"):
        mounts.mount_rootfs({"lowerdirs": lowers, "upperdir": str(tmp_path / "u"), "workdir": str(tmp_path / "w"),
                             "path": None}, str(tmp_path / "root"), False)
