"""Driving the real CLI as a non-root user from a root test run (issue 17).

Owns: the test users (`pybuild-rootless` with subordinate id ranges, `pybuild-rootless1` with
none; or $PYBUILD_ROOTLESS_USER), a Python interpreter that user may run with pybuild's
dependencies ($PYBUILD_ROOTLESS_PYTHON, else a venv in the user's home made on first use), a
copy of the checkout the user can read (a CI clone may sit under root's 0700 home), and
`Rootless.cli(...)`: the entry point run under setpriv as that user, with HOME set so the
default state directory is ~/.local/share/pybuild. Skips without root, setpriv or newuidmap.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fixtures.busybox_rootfs import make_busybox_rootfs

DEPS = ["lark", "zstandard", "pyyaml", "rich", "requests", "isal"]
ON_CI = os.environ.get("CI") == "true"


def _unavailable(why: str):
    if ON_CI:
        pytest.fail(f"rootless tests cannot run on CI: {why}")
    pytest.skip(why)


def ensure_user(name: str, ranges: bool) -> pwd.struct_passwd:
    """The user `name`, created if missing; with a 65536-id subordinate range, or with none."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        args = ["useradd", "-m", "-s", "/bin/sh"]
        if not ranges:
            args += ["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]
        r = subprocess.run([*args, name], capture_output=True, text=True)
        if r.returncode != 0:
            _unavailable(f"useradd {name}: {r.stderr.strip()}")
        pw = pwd.getpwnam(name)
    if ranges:
        for f, flag in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
            have = Path(f).read_text().splitlines() if os.path.exists(f) else []
            if not any(ln.split(":")[0] in (name, str(pw.pw_uid)) for ln in have):
                start = 300000 + (pw.pw_uid % 1000) * 65536
                subprocess.run(["usermod", flag, f"{start}-{start + 65535}", name], check=True)
    return pw


class Rootless:
    def __init__(self, pw: pwd.struct_passwd, python: str, src: Path) -> None:
        self.pw, self.python, self.src = pw, python, src

    @property
    def home(self) -> Path:
        return Path(self.pw.pw_dir)

    def env(self, extra: dict | None = None) -> dict:
        e = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": self.pw.pw_dir,
             "USER": self.pw.pw_name, "LOGNAME": self.pw.pw_name, "PYTHONPATH": str(self.src), "LANG": "C.UTF-8"}
        for k in ("SSL_CERT_FILE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
            if k in os.environ:
                e[k] = os.environ[k]
        e.update(extra or {})
        return e

    def as_user(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        env = self.env(kw.pop("env", None))
        cmd = ["setpriv", f"--reuid={self.pw.pw_uid}", f"--regid={self.pw.pw_gid}", "--init-groups", "--", *argv]
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 600)
        return subprocess.run(cmd, env=env, cwd=kw.pop("cwd", str(self.home)), **kw)

    def cli(self, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
        return self.as_user([self.python, "-m", "builder.cli", *args], env=env, **kw)

    def mkdtemp(self) -> Path:
        d = Path(tempfile.mkdtemp(prefix="pybuild-rl-"))
        os.chown(d, self.pw.pw_uid, self.pw.pw_gid)
        return d

    def give(self, path: Path) -> Path:
        """Hand a tree made by the test (as root) to the user."""
        for dirpath, dirnames, filenames in os.walk(path):
            for n in [dirpath, *(os.path.join(dirpath, x) for x in dirnames + filenames)]:
                os.lchown(n, self.pw.pw_uid, self.pw.pw_gid)
        return path


def _python_for(pw: pwd.struct_passwd, src: Path) -> str:
    env_py = os.environ.get("PYBUILD_ROOTLESS_PYTHON")
    if env_py:
        return env_py
    venv = Path(pw.pw_dir) / "venv"
    py = venv / "bin" / "python"
    probe = ["-c", "import lark, zstandard, yaml, rich, requests"]
    r = Rootless(pw, str(py), src)
    if py.exists() and r.as_user([str(py), *probe]).returncode == 0:
        return str(py)
    base = "/usr/bin/python3"
    mk = r.as_user([base, "-m", "venv", str(venv)])
    if mk.returncode != 0:
        _unavailable(f"cannot make a venv for {pw.pw_name}: {mk.stderr.decode(errors='replace').strip()[-300:]}")
    pip = r.as_user([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *DEPS], timeout=900)
    if pip.returncode != 0:
        _unavailable(f"cannot install pybuild's dependencies for {pw.pw_name}: "
                     f"{pip.stderr.decode(errors='replace').strip()[-300:]}")
    return str(py)


def _copy_source(pw: pwd.struct_passwd) -> Path:
    """builder/, runtime/, grammar/ copied where the user can read them (fresh each session)."""
    dest = Path(tempfile.mkdtemp(prefix="pybuild-rl-src-"))
    for part in ("builder", "runtime", "grammar"):
        shutil.copytree(REPO / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
    os.chmod(dest, 0o755)
    for dirpath, dirnames, filenames in os.walk(dest):
        for n in dirnames:
            os.chmod(os.path.join(dirpath, n), 0o755)
        for n in filenames:
            os.chmod(os.path.join(dirpath, n), 0o644)
    return dest


def _make(name: str, ranges: bool, tmp_path_factory) -> Rootless:
    if os.geteuid() != 0:
        pytest.skip("drives pybuild as another user: needs a root test run")
    for tool in ("setpriv", "newuidmap", "newgidmap", "useradd"):
        if not shutil.which(tool):
            _unavailable(f"{tool} is not installed (Debian: util-linux, uidmap, passwd)")
    pw = ensure_user(name, ranges)
    src = _copy_source(pw)
    return Rootless(pw, _python_for(pw, src), src)


@pytest.fixture(scope="session")
def rl(tmp_path_factory) -> Rootless:
    """The rootless user with subordinate ranges."""
    r = _make(os.environ.get("PYBUILD_ROOTLESS_USER", "pybuild-rootless"), True, tmp_path_factory)
    yield r
    shutil.rmtree(r.src, ignore_errors=True)


@pytest.fixture(scope="session")
def rl_single(tmp_path_factory) -> Rootless:
    """A user without any subordinate range (single-id mode)."""
    name = os.environ.get("PYBUILD_ROOTLESS_USER1", "pybuild-rootless1")
    r = _make(name, False, tmp_path_factory)
    for f in ("/etc/subuid", "/etc/subgid"):
        lines = Path(f).read_text().splitlines() if os.path.exists(f) else []
        if any(ln.split(":")[0] in (name, str(r.pw.pw_uid)) for ln in lines):
            pytest.skip(f"{name} has a subordinate range in {f}: not a single-id user")
    yield r
    shutil.rmtree(r.src, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_tar() -> Path:
    """A busybox root filesystem as a tar with root-owned entries (as an image's would be)."""
    d = Path(tempfile.mkdtemp(prefix="pybuild-rl-busybox-"))  # pytest's own tmp is 0700 root
    rootfs = make_busybox_rootfs(d / "rootfs")
    tar = d / "busybox.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(rootfs, arcname=".")
    shutil.rmtree(rootfs)
    os.chmod(d, 0o755)
    os.chmod(tar, 0o644)
    yield tar
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def debian_tar():
    """A debootstrap'ed Debian bookworm (minbase) as a tar with numeric owners, world-readable
    (made once per session: a few minutes). Skips without debootstrap or the machine's archive."""
    from tests.integration.test_debian_base import _mirror

    if not shutil.which("debootstrap"):
        pytest.skip("debootstrap not installed (tests/apt-packages.txt lists it)")
    mirror = _mirror()
    if not mirror:
        pytest.skip("no Debian archive in this machine's apt sources")
    d = Path(tempfile.mkdtemp(prefix="pybuild-rl-debian-"))
    os.chmod(d, 0o755)
    rootfs = d / "rootfs"
    r = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror],
                       capture_output=True, timeout=900)
    if r.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        tail = (r.stdout + r.stderr).decode(errors="replace").strip().splitlines()[-3:]
        pytest.skip(f"debootstrap from {mirror} failed (archive unreachable?): {' / '.join(tail)}")
    apt_uid = next(int(ln.split(":")[2]) for ln in (rootfs / "etc" / "passwd").read_text().splitlines()
                   if ln.startswith("_apt:"))
    tar = d / "debian.tar"
    subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tar), "."], check=True)
    shutil.rmtree(rootfs)
    os.chmod(tar, 0o644)
    yield tar, apt_uid
    shutil.rmtree(d, ignore_errors=True)
