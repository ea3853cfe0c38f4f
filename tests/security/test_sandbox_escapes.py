"""Sandbox escapes of issue 14, each attack run through the real entry point (`pybuild build`
with RUN steps, `pybuild run`) on a busybox base; the host canaries are checked by content
and atime afterwards (tests/security/hostile.py).

1. bind-mount sources through symlinks (context, stage) never reach the host.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.buildlib import build, make_busybox_image, write_ctx
from tests.security.hostile import Canary

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


@pytest.fixture
def env(tmp_path: Path):
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    return root, Canary(tmp_path)


def _out(r) -> str:
    return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


# --- 1. bind-mount source through a symlink ------------------------------------------------
@pytest.mark.parametrize("rw", ["", ",rw"])
def test_bind_source_symlink_to_a_host_file_resolves_inside_the_context(env, tmp_path: Path, rw: str) -> None:
    """BuildKit resolves `source=` inside the context: an absolute link restarts at the
    context root (checked with the reference: it reads <ctx>/<link target>)."""
    root, canary = env
    ctx = write_ctx(tmp_path / "ctx", {
        "Dockerfile": f"FROM busybox\nRUN --mount=type=bind,source=x,target=/m{rw} "
                      "sh -c 'cat /m; echo pwned > /m 2>/dev/null; echo rc=$?'\n"})
    os.symlink(canary.file, ctx / "x")
    inside = ctx / str(canary.file).lstrip("/")
    inside.parent.mkdir(parents=True)
    inside.write_text("in-the-context\n")
    r = build(root, ctx, "-t", "t")
    out = _out(r)
    assert r.returncode == 0, out
    assert "in-the-context" in out and canary.secret.decode() not in out
    assert ("rc=0" in out) == bool(rw)  # rw: writable, but a copy
    assert inside.read_text() == "in-the-context\n"  # writes to a bind mount are discarded
    canary.assert_untouched(root)


def test_bind_source_symlink_out_of_the_context_is_not_found(env, tmp_path: Path) -> None:
    root, canary = env
    ctx = write_ctx(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox\nRUN --mount=type=bind,source=x,target=/m,rw cat /m\n"})
    os.symlink(canary.file, ctx / "x")
    r = build(root, ctx)
    assert r.returncode == 1 and "Traceback" not in _out(r), _out(r)
    assert canary.secret.decode() not in _out(r)
    canary.assert_untouched(root)


@pytest.mark.parametrize("source", ["d", "d/", "rel/.."])
def test_bind_source_dir_symlink_to_a_host_dir_stays_in_the_context(env, tmp_path: Path, source: str) -> None:
    root, canary = env
    ctx = write_ctx(tmp_path / "ctx", {
        "Dockerfile": f"FROM busybox\nRUN --mount=type=bind,source={source},target=/m,rw "
                      "sh -c 'ls -la /m; cat /m/canary.txt; touch /m/new /m/hostdir/new; true'\n"})
    os.symlink(canary.dir, ctx / "d")
    os.symlink(str(canary.dir) + "/hostdir", ctx / "rel")
    r = build(root, ctx)
    assert canary.secret.decode() not in _out(r)
    canary.assert_untouched(root)


def test_bind_source_from_a_stage_symlink_stays_in_the_stage(env, tmp_path: Path) -> None:
    root, canary = env
    ctx = write_ctx(tmp_path / "ctx", {
        "Dockerfile": f"FROM busybox AS s\nRUN ln -s {canary.file} /x && ln -s {canary.dir} /d\n"
                      "FROM busybox\n"
                      "RUN --mount=type=bind,from=s,source=/x,target=/m,rw sh -c 'cat /m; echo pwned > /m; true'\n"
                      "RUN --mount=type=bind,from=s,source=/d,target=/m,rw sh -c 'cat /m/canary.txt; touch /m/n; true'\n"})
    r = build(root, ctx)
    assert canary.secret.decode() not in _out(r)
    canary.assert_untouched(root)


def test_run_volume_through_a_symlink_binds_its_target(env, tmp_path: Path) -> None:
    """`run -v LINK:/m` is the user's own host path: the link is resolved on the host side
    (as docker does) and the runtime binds the resolved object, never a link."""
    from tests.conftest import run_cli
    root, canary = env
    (tmp_path / "vol").mkdir()
    (tmp_path / "vol" / "f").write_text("through-the-link\n")
    os.symlink(tmp_path / "vol", tmp_path / "link")
    r = run_cli("run", "--rm", "-v", f"{tmp_path / 'link'}:/m:ro", "busybox", "cat", "/m/f",
                env={"PYBUILD_ROOT": str(root)})
    assert r.returncode == 0 and b"through-the-link" in r.stdout, _out(r)
    canary.assert_untouched(root)


def test_runtime_refuses_a_symlink_as_bind_source(tmp_path: Path) -> None:
    """The runtime itself never hands mount(2) a final symlink, whoever built the config."""
    from runtime.errors import MountError
    from runtime.mounts import _open_bind_source
    os.symlink("/etc/hostname", tmp_path / "l")
    with pytest.raises(MountError, match="symbolic link"):
        _open_bind_source(str(tmp_path / "l"))
    fd = _open_bind_source(str(tmp_path))
    os.close(fd)


# --- 4. the state directory is closed to other users --------------------------------------
def _as_nobody(*argv: str):
    import shutil
    import subprocess
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) missing")
    # through sh: setpriv itself still holds root's capabilities while it looks its argv[0] up
    import shlex
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sh", "-c",
                           shlex.join(argv)], capture_output=True, timeout=60)


@pytest.fixture
def open_parent():
    """A parent directory every user may traverse (pytest's tmp dirs are 0700 themselves)."""
    import shutil
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="pybuild-modes-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _suid_in_snapshots(root: Path) -> Path:
    for dirpath, _dirs, files in os.walk(root / "snapshots"):
        if "suid" in files:
            return Path(dirpath) / "suid"
    raise AssertionError("the setuid file is in no snapshot")


def test_unprivileged_user_cannot_reach_snapshots(open_parent: Path, tmp_path: Path) -> None:
    """The attack: a setuid-root binary from an image snapshot, run by any host user."""
    root = open_parent / "root"
    make_busybox_image(root, tmp_path)
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN cp /bin/busybox /suid && chmod 4755 /suid\n"})
    r = build(root, ctx, "-t", "t")
    assert r.returncode == 0, _out(r)
    suid = _suid_in_snapshots(root)
    assert os.stat(suid).st_mode & 0o4000
    r = _as_nobody(str(suid), "id", "-u")
    assert r.returncode != 0 and b"Permission denied" in r.stderr, _out(r)
    r = _as_nobody("ls", str(root))
    assert r.returncode != 0, _out(r)
    for p in (root, root / "snapshots", root / "tmp", root / "cache", root / "blobs"):
        if p.exists():
            assert os.stat(p).st_mode & 0o777 == 0o700, p


def test_an_open_store_is_closed_on_the_next_write(open_parent: Path, tmp_path: Path) -> None:
    from tests.conftest import run_cli
    root = open_parent / "root"
    make_busybox_image(root, tmp_path)
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN cp /bin/busybox /suid && chmod 4755 /suid\n"})
    assert build(root, ctx, "-t", "t").returncode == 0
    opened = [root] + [root / n for n in ("snapshots", "tmp", "blobs", "cache") if (root / n).exists()]
    for p in opened:  # as an older pybuild left it
        os.chmod(p, 0o755)
    assert _as_nobody("stat", str(_suid_in_snapshots(root))).returncode == 0  # open: the attack works
    r = run_cli("tag", "t", "t2", env={"PYBUILD_ROOT": str(root)})
    assert r.returncode == 0, _out(r)
    for p in opened:
        assert os.stat(p).st_mode & 0o777 == 0o700, p
    assert _as_nobody("stat", str(_suid_in_snapshots(root))).returncode != 0


# --- 10. secrets stay in memory ----------------------------------------------------------
def _find_bytes(top: str, needle: bytes) -> list[str]:
    hits = []
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            p = os.path.join(dirpath, name)
            try:
                if not os.path.islink(p) and os.path.isfile(p) and needle in Path(p).read_bytes():
                    hits.append(p)
            except OSError:
                continue
    return hits


def test_secret_of_a_killed_build_is_on_no_disk_and_cleared_by_the_next_build(env, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time
    from tests.conftest import REPO
    root, _ = env
    value = b"SECRET-" + os.urandom(12).hex().encode()
    sec = tmp_path / "in" / "secret.txt"
    sec.parent.mkdir()
    sec.write_bytes(value)
    ctx = write_ctx(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox\nRUN --mount=type=secret,id=s,target=/s sh -c 'test -s /s && echo in-run-$((1+1)); sleep 60'\n"})
    e = dict(os.environ, PYBUILD_ROOT=str(root), PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-m", "builder.cli", "build", "--progress=plain", "--secret",
                          f"id=s,src={sec}", str(ctx)], env=e, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        seen = b""
        while b"in-run-2" not in seen and time.monotonic() < deadline:
            line = p.stderr.readline()
            if not line:
                break
            seen += line
        assert b"in-run-2" in seen, seen.decode(errors="replace")
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()
    assert _find_bytes(str(root), value) == []  # never written to the state disk
    left = _find_bytes("/dev/shm", value)  # in memory only, until the next build
    r = build(root, write_ctx(tmp_path / "ctx2", {"Dockerfile": "FROM busybox\nRUN true\n"}))
    assert r.returncode == 0, _out(r)
    assert [h for h in left if os.path.exists(h)] == []
    assert _find_bytes("/dev/shm", value) == [] and _find_bytes(str(root), value) == []


# --- 11. docker's masks; /etc files read-only in RUN --------------------------------------
def test_run_step_sees_masked_firmware_and_read_only_etc_files(env, tmp_path: Path) -> None:
    """BuildKit (checked with the reference): /etc/hosts and /etc/resolv.conf are read-only
    in RUN (EROFS); /sys/firmware is an empty read-only tmpfs. A RUN used to write 300 MB
    into /etc/hosts, which lived on the host's /dev/shm."""
    root, canary = env
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": (
        "FROM busybox\n"
        "RUN echo fw=$(ls -A /sys/firmware | wc -l) && touch /sys/firmware/x 2>/dev/null; echo fwrc=$?\n"
        "RUN for f in /etc/hosts /etc/resolv.conf /etc/hostname; do "
        "(echo x >> $f) 2>&1 | grep -q 'Read-only file system' && echo ro:$f; done; "
        "dd if=/dev/zero of=/etc/hosts bs=1M count=4 2>/dev/null; echo ddrc=$?\n")})
    r = build(root, ctx)
    out = _out(r)
    assert r.returncode == 0, out
    assert "fw=0" in out and "fwrc=1" in out, out
    for f in ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname"):
        assert f"ro:{f}" in out, out
    assert "ddrc=1" in out, out


def test_pybuild_run_etc_hosts_is_writable_but_on_disk(env, tmp_path: Path) -> None:
    """`pybuild run` keeps docker's writable /etc/hosts, in the container's dir on disk."""
    from tests.conftest import run_cli
    root, _ = env
    r = run_cli("run", "busybox", "sh", "-c",
                "echo 10.9.8.7 added >> /etc/hosts && grep -c added /etc/hosts && grep ' /etc/hosts ' /proc/self/mountinfo",
                env={"PYBUILD_ROOT": str(root)})
    out = _out(r)
    assert r.returncode == 0 and "1" in r.stdout.decode().split(), out
    kept = [p for p in (root / "containers").glob("*/hosts")]
    assert kept and "10.9.8.7 added" in kept[0].read_text(), out
    assert not any("10.9.8.7" in open(p, errors="replace").read()
                   for p in (str(x) for x in Path("/dev/shm").rglob("hosts")) if os.path.isfile(p))


# --- 2. cgroup limits cannot be lifted from inside ----------------------------------------
ATTACK = r"""
unshare-ul -UrmC sh -c '
  d=$(mktemp -d); mount -t cgroup -o pids none $d && echo pids-mounted; echo max > $d/pids.max
  m=$(mktemp -d); mount -t cgroup -o memory none $m && echo 400000000000 > $m/memory.limit_in_bytes
  f=$(mktemp -d); mount -t cgroup -o freezer none $f && echo freezer-procs=$(cat $f/cgroup.procs | tr "\n" ,)
  touch /sys/fs/cgroup/x 2>/dev/null || echo cgroupfs-ro'
# ash gives up at the first fork that fails: count in a subshell, read the count with builtins
echo 0 > /tmp/count
( i=0; while [ $i -lt 80 ]; do sleep 3 & i=$((i+1)); echo $i > /tmp/count; done ) 2>/dev/null
read n < /tmp/count; echo spawned=$n
"""


def _attack_ctx(path: Path) -> Path:
    """busybox + the host's util-linux unshare (busybox's has no -C) with the libc it needs."""
    import shutil
    unshare = shutil.which("unshare")
    libc, ld = Path("/lib/x86_64-linux-gnu/libc.so.6"), Path("/lib64/ld-linux-x86-64.so.2")
    if not unshare or not libc.exists() or not ld.exists():
        pytest.skip("needs the host's util-linux unshare and glibc (x86_64)")
    import subprocess
    if b"--cgroup" not in subprocess.run([unshare, "--help"], capture_output=True).stdout:
        pytest.skip("the host's unshare has no --cgroup")
    ctx = write_ctx(path, {"attack.sh": ATTACK, "Dockerfile": (
        "FROM busybox\nCOPY unshare-ul /usr/bin/\nCOPY libc.so.6 /lib/x86_64-linux-gnu/\n"
        "COPY ld-linux-x86-64.so.2 /lib64/\nCOPY attack.sh /attack.sh\n")})
    shutil.copy(unshare, ctx / "unshare-ul")
    shutil.copy(libc.resolve(), ctx / "libc.so.6")
    shutil.copy(ld.resolve(), ctx / "ld-linux-x86-64.so.2")
    return ctx


def _host_cgroup_files() -> dict[str, str]:
    """This process's own cgroup limit files (the builder's, which the attack used to reach)."""
    out = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        for c, f in (("pids", "pids.max"), ("memory", "memory.limit_in_bytes"), ("freezer", "freezer.state")):
            p = Path(f"/sys/fs/cgroup/{c}{path}/{f}")
            if c in ctrls.split(",") and p.exists():
                out[str(p)] = p.read_text()
    return out


def _check_attack_failed(out: str) -> None:
    assert "pids-mounted" in out, out  # the attack really ran (no seccomp filter needed here)
    spawned = [ln for ln in out.split() if ln.startswith("spawned=")]
    assert spawned and int(spawned[0].split("=")[1]) < 50, out  # the pids limit of 50 held
    procs = [ln for ln in out.split() if ln.startswith("freezer-procs=")][0].split("=")[1].strip(",").split(",")
    assert procs and "0" not in procs and all(int(p) < 50 for p in procs), out  # only the container's own
    assert "cgroupfs-ro" in out


def test_run_step_cannot_lift_its_cgroup_limits(env, tmp_path: Path) -> None:
    root, canary = env
    ctx = _attack_ctx(tmp_path / "ctx")
    with open(ctx / "Dockerfile", "a") as f:
        f.write("RUN sh /attack.sh\n")
    before = _host_cgroup_files()
    r = build(root, ctx, "--pids-limit", "50")
    out = _out(r)
    assert r.returncode == 0, out
    _check_attack_failed(out)
    assert _host_cgroup_files() == before
    canary.assert_untouched(root)


def test_pybuild_run_cannot_lift_its_cgroup_limits(env, tmp_path: Path) -> None:
    from tests.conftest import run_cli
    root, _ = env
    ctx = _attack_ctx(tmp_path / "ctx")
    assert build(root, ctx, "-t", "attack").returncode == 0
    before = _host_cgroup_files()
    r = run_cli("run", "--rm", "--pids-limit", "50", "--memory", "64m", "attack", "sh", "/attack.sh",
                env={"PYBUILD_ROOT": str(root)})
    _check_attack_failed(_out(r))
    assert _host_cgroup_files() == before


# --- 6. devices -------------------------------------------------------------------------
DEVICES = r"""
mknod /tmp/fuse c 10 229 2>&1 | grep -q 'not permitted' && echo mknod-c-eperm
mknod /tmp/loop b 7 0 2>&1 | grep -q 'not permitted' && echo mknod-b-eperm
for d in /tmp /dev /m /t; do
  mknod $d/null2 c 1 3 2>/dev/null && { (echo x > $d/null2) 2>/dev/null && echo open-null2-$d; }
done
[ -c /tmp/fuse ] && (exec 3<>/tmp/fuse) 2>/dev/null && echo fuse-opened
echo x > /dev/null && [ "$(head -c 4 /dev/urandom | wc -c)" = 4 ] && echo std-ok
awk '$5 == "/" { print "rootfs-opts=" $6 }' /proc/self/mountinfo
"""


@pytest.mark.parametrize("zygote", ["1", "0"])
def test_run_step_cannot_make_or_open_devices(env, tmp_path: Path, zygote: str) -> None:
    root, _ = env
    ctx = write_ctx(tmp_path / "ctx", {"d.sh": DEVICES, "Dockerfile": (
        "FROM busybox\nCOPY d.sh /d.sh\n"
        "RUN --mount=type=cache,target=/m --mount=type=tmpfs,target=/t sh /d.sh\n")})
    r = build(root, ctx, env={"PYBUILD_SANDBOX_ZYGOTE": zygote})
    out = _out(r)
    assert r.returncode == 0, out
    assert "mknod-c-eperm" in out and "mknod-b-eperm" in out, out
    assert "fuse-opened" not in out and "open-null2" not in out, out
    assert "std-ok" in out
    opts = [w.split("=", 1)[1] for w in out.split() if w.startswith("rootfs-opts=")]
    assert opts and "nodev" in opts[0].split(","), out


def test_pybuild_run_cannot_open_host_devices(env, tmp_path: Path) -> None:
    from tests.conftest import run_cli
    root, _ = env
    r = run_cli("run", "--rm", "--tmpfs", "/t", "-v", f"{tmp_path}:/m", "busybox", "sh", "-c", DEVICES,
                env={"PYBUILD_ROOT": str(root)})
    out = _out(r)
    assert "mknod-c-eperm" in out and "fuse-opened" not in out and "open-null2" not in out, out
    assert "std-ok" in out, out
