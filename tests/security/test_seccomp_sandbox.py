"""Issue 14 items 2 (the seccomp half), 3, 5 and 7 through the real entry points: a RUN step of
`pybuild build` and `pybuild run`, on a busybox image.

The attacks come from the issue: a nested user namespace (`unshare -U`), the cgroup-mount
escape (`unshare(USER|NS|CGROUP)` + `mount -t cgroup -o pids` + `echo max > pids.max`), and
reading a key of the invoking session's keyring. Busybox has no keyctl and its unshare has no
-C, so those two use a static C probe (tests/security/probe.c, built with `gcc -static`).
Before the fix each attack went through (the probe printed `write: ok`, the key's payload);
now the filter refuses the first step with EPERM (clone3: ENOSYS, as docker).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.buildlib import build, make_busybox_image

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]

HERE = Path(__file__).resolve().parent
CHECK = ("grep Seccomp: /proc/self/status; unshare -U true; echo unshare=$?; "
         "unshare -r true; echo unshare_r=$?")


def _out(r) -> str:
    return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def pb(root: Path, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYBUILD_ROOT": str(root), "PYTHONPATH": str(REPO)}
    return subprocess.run([*prefix, sys.executable, "-m", "builder.cli", *args], env=env, cwd=str(REPO),
                          capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("seccomp")
    make_busybox_image(d / "root", d)
    return d / "root"


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    """The static attack probe, compiled for this machine."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (apt-get install gcc libc6-dev) for the static attack probe")
    out = tmp_path_factory.mktemp("probe") / "probe"
    r = subprocess.run([cc, "-static", "-O1", "-o", str(out), str(HERE / "probe.c")], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build a static binary here: {r.stderr.decode(errors='replace')[:300]}")
    return out


@pytest.fixture(scope="module")
def probe_image(store, probe, tmp_path_factory) -> str:
    ctx = tmp_path_factory.mktemp("probectx")
    shutil.copy2(probe, ctx / "probe")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY probe /probe\n")
    r = build(store, ctx, "-t", "probe")
    assert r.returncode == 0, _out(r)
    return "probe"


def _build(store: Path, tmp_path: Path, dockerfile: str, *args: str, prefix: tuple[str, ...] = ()):
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return pb(store, "build", "--progress=plain", "--no-cache", *args, str(ctx), prefix=prefix)


# --- item 5 / 7: the filter is on, nested user namespaces are refused ---------------------------
def test_run_step_is_filtered(store, tmp_path):
    r = _build(store, tmp_path, f"FROM busybox\nRUN {CHECK}\n")
    out = _out(r)
    assert r.returncode == 0, out
    assert "Seccomp:\t2" in out
    assert "unshare=1" in out and "unshare_r=1" in out
    assert "Operation not permitted" in out


def test_pybuild_run_is_filtered(store):
    r = pb(store, "run", "--rm", "busybox", "sh", "-c", CHECK)
    out = _out(r)
    assert r.returncode == 0, out
    assert "Seccomp:\t2" in out and "unshare=1" in out and "unshare_r=1" in out


def test_clone3_is_enosys_so_libc_falls_back(store, probe_image):
    r = pb(store, "run", "--rm", probe_image, "/probe", "clone3")
    assert "clone3: ENOSYS" in _out(r), _out(r)


# --- item 2 (seccomp half): the cgroup-mount escape ---------------------------------------------
def test_cgroup_mount_escape_is_refused_in_run_step(store, probe_image, tmp_path):
    r = _build(store, tmp_path, "FROM probe\nRUN /probe cgroup-escape; echo rc=$?\n")
    out = _out(r)
    assert r.returncode == 0, out
    assert "unshare: EPERM" in out and "rc=1" in out
    assert "mount: ok" not in out and "write: ok" not in out


def test_cgroup_mount_escape_is_refused_in_pybuild_run(store, probe_image):
    r = pb(store, "run", "--rm", "--pids-limit", "50", probe_image, "/probe", "cgroup-escape")
    out = _out(r)
    assert r.returncode == 1 and "unshare: EPERM" in out, out
    assert "write: ok" not in out


# --- item 3: the invoking session's keyring --------------------------------------------------
def _with_key(probe: Path, secret: str) -> tuple[str, ...]:
    """Run pybuild in a fresh session keyring holding the key pybuild-canary=secret."""
    return (str(probe), "addkey-exec", "pybuild-canary", secret)


def test_session_key_is_not_readable_from_run_step(store, probe_image, probe, tmp_path):
    secret = os.urandom(8).hex()
    r = _build(store, tmp_path, "FROM probe\nRUN /probe keyread pybuild-canary; echo rc=$?\n",
               prefix=_with_key(probe, secret))
    out = _out(r)
    assert r.returncode == 0, out
    assert "add_key: ok" in out  # the key was there, in the session that started the build
    assert secret not in out
    assert "search: EPERM" in out  # keyctl is refused by the filter


def test_session_key_is_not_readable_from_pybuild_run(store, probe_image, probe):
    secret = os.urandom(8).hex()
    r = pb(store, "run", "--rm", probe_image, "/probe", "keyread", "pybuild-canary", prefix=_with_key(probe, secret))
    out = _out(r)
    assert "add_key: ok" in out and secret not in out and "search: EPERM" in out, out


def test_fresh_session_keyring_even_unconfined(store, probe_image, probe):
    """Without the filter, keyctl works, but the container's session keyring is a new, empty
    one (init joins it, as runc does): the invoking session's key is not found."""
    secret = os.urandom(8).hex()
    r = pb(store, "run", "--rm", "--security-opt", "seccomp=unconfined", probe_image, "/probe", "keyread",
           "pybuild-canary", prefix=_with_key(probe, secret))
    out = _out(r)
    assert "add_key: ok" in out and secret not in out, out
    assert "search: ENOKEY" in out, out


# --- --security-opt and RUN --security=insecure ------------------------------------------------
def test_security_opt_unconfined(store):
    r = pb(store, "run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "sh", "-c", CHECK)
    out = _out(r)
    assert "Seccomp:\t0" in out and "unshare=0" in out, out


def test_security_opt_custom_profile(store, tmp_path):
    prof = tmp_path / "no-mkdir.json"
    prof.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"],'
                    ' "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}')
    r = pb(store, "run", "--rm", "--security-opt", f"seccomp={prof}", "busybox", "sh", "-c",
           "grep Seccomp: /proc/self/status; mkdir /tmp/d; echo mkdir=$?; touch /tmp/f && echo touched")
    out = _out(r)
    assert "Seccomp:\t2" in out and "mkdir=1" in out and "touched" in out, out
    assert "Permission denied" in out  # errnoRet 13 = EACCES


@pytest.mark.parametrize("opt,msg", [("seccomp=/nonexistent.json", "No such file or directory"),
                                     ("seccomp=BAD", "not valid JSON"),
                                     ("apparmor=unconfined", "supported is seccomp=")])
def test_bad_security_opt_is_one_line_before_any_work(store, tmp_path, opt, msg):
    if opt == "seccomp=BAD":
        bad = tmp_path / "bad.json"
        bad.write_text("{nope")
        opt = f"seccomp={bad}"
    before = set(os.listdir(store / "containers")) if (store / "containers").exists() else set()
    r = pb(store, "run", "--rm", "--security-opt", opt, "busybox", "true")
    err = r.stderr.decode()
    assert r.returncode == 2 and msg in err and err.count("\n") == 1, err
    after = set(os.listdir(store / "containers")) if (store / "containers").exists() else set()
    assert after == before


def test_insecure_run_needs_allow(store, tmp_path):
    df = ("FROM busybox\nRUN echo first-step-ran\n"
          "RUN --security=insecure grep -E 'Seccomp:|CapEff' /proc/self/status\n"
          f"RUN {CHECK}\n")
    r = _build(store, tmp_path, df)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "Dockerfile:3:" in err and "security.insecure is not allowed" in err
    assert "first-step-ran" not in err  # refused before any step ran
    r = _build(store, tmp_path, df, "--allow", "security.insecure")
    out = _out(r)
    assert r.returncode == 0, out
    assert "Seccomp:\t0" in out  # the insecure step
    cap_eff = [ln.split()[-1] for ln in out.splitlines() if "CapEff:" in ln][0]
    assert int(cap_eff, 16) & (1 << 21)  # CAP_SYS_ADMIN
    assert "Seccomp:\t2" in out and "unshare=1" in out  # the next RUN is confined again


def test_bad_allow_is_a_usage_error(store, tmp_path):
    r = _build(store, tmp_path, "FROM busybox\n", "--allow", "security.nope")
    assert r.returncode == 2 and "security.nope" in r.stderr.decode()


@pytest.mark.skipif(shutil.which("runc") is None, reason="Debian's runc is not installed")
@pytest.mark.parametrize("opt,want", [((), ("Seccomp:\t2", "unshare=1")),
                                      (("--security-opt", "seccomp=unconfined"), ("Seccomp:\t0", "unshare=0"))])
def test_bundle_carries_the_filter_to_runc(store, tmp_path, opt, want):
    """`pybuild bundle` writes the same policy as linux.seccomp: runc confines the same way."""
    import json

    dest = tmp_path / "bundle"
    r = pb(store, "bundle", "--dest", str(dest), *opt, "busybox", "sh", "-c",
           "grep Seccomp: /proc/self/status; unshare -U true; echo unshare=$?")
    assert r.returncode == 0, _out(r)
    cfg = json.loads((dest / "config.json").read_text())
    assert ("seccomp" in cfg["linux"]) == (not opt)
    p = subprocess.run(["unshare", "-m", "sh", "-c",
                        "umount /sys/fs/cgroup/unified 2>/dev/null; "
                        f"runc --root {tmp_path}/runc-state run --bundle {dest} pybuild-sc-{os.getpid()}"],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    out = _out(p)
    assert p.returncode == 0, out
    for w in want:
        assert w in out, out
