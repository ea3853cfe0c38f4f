"""The built wheel under the Pythons this machine does not run itself (issue 18).

tests/pythons/provision.sh (run by tests/run.sh) debootstraps Debian root filesystems from the
archive of this machine's apt sources: trixie (Python 3.13) and forky (Python 3.14). Here, for
each one, the wheel the `dist` fixture built is installed with its interpreter into a venv
inside a chroot, with the dependencies from the package index (PyPI, through whatever proxy
the host uses: the host's CA bundle is copied in for pip), and that `pybuild` then parses and
lints a Dockerfile, imports a busybox rootfs, builds an image with COPY and RUN and runs it;
then the project's unit and error-message tests (from the sdist) run under that interpreter.

The cached rootfs is never written: every command runs in a private mount namespace
(`unshare --mount`) that mounts an overlay (the rootfs below, this test's directory above) with
/proc, /dev, /sys and the test's /tmp, then chroots into it; the mounts end with the namespace,
whatever happens to the test. Python 3.12 is in no Debian suite, so no test here runs it.

On CI (root, CI=true) the trixie rootfs must be there (a missing one fails the test, naming the
script); forky is Debian testing, whose packages can be transiently uninstallable, so a missing
forky rootfs only skips.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.fixtures.busybox_rootfs import make_busybox_rootfs

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay, pytest.mark.root_only]

ROOTFS = Path(os.environ.get("PYBUILD_CI_PYTHONS", "/var/cache/pybuild-ci/pythons"))
SUITES = {"trixie": "3.13", "forky": "3.14"}
REQUIRED_ON_CI = {"trixie"}
ON_CI = os.environ.get("CI") == "true" and os.geteuid() == 0
VENV = "/opt/venv"

# $1 merged dir, $2 lower (the cached rootfs), $3 upper, $4 overlay workdir, $5 the host dir that
# becomes /tmp, $6 the cwd inside; the rest is the command. Runs under `unshare --mount`.
_ENTER = r"""set -e
m=$1; lower=$2; upper=$3; work=$4; tmp=$5; cwd=$6; shift 6
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$m"
mount -t proc proc "$m/proc"
mount --rbind /dev "$m/dev"
mount --rbind /sys "$m/sys"
mount --bind "$tmp" "$m/tmp"
exec chroot "$m" /bin/sh -c 'cd "$0" && exec "$@"' "$cwd" "$@"
"""


class Chroot:
    """A throwaway Debian system on top of a cached rootfs; `run` executes one command in it."""

    def __init__(self, rootfs: Path, work: Path):
        self.rootfs, self.work = rootfs, work
        self.upper, self.ovl, self.merged, self.tmp = (work / n for n in ("upper", "ovl", "merged", "tmp"))
        for d in (self.upper, self.ovl, self.merged, self.tmp):
            d.mkdir(parents=True)
        os.chmod(self.tmp, 0o1777)
        etc = self.upper / "etc"
        etc.mkdir()
        for f in ("resolv.conf", "hosts"):  # name resolution as on the host
            if os.path.exists(f"/etc/{f}"):
                shutil.copyfile(f"/etc/{f}", etc / f, follow_symlinks=True)
        # the host's trust store (its intercepting proxy's CA included) for pip inside
        ca = os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
        shutil.copyfile(ca, etc / "pybuild-host-ca.pem")
        if os.path.exists("/bin/busybox"):  # static: the unit tests' busybox rootfs fixture copies it
            (self.upper / "usr" / "bin").mkdir(parents=True)
            shutil.copy2("/bin/busybox", self.upper / "usr" / "bin" / "busybox")
        self.env = {
            "PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8", "TMPDIR": "/tmp", "PYBUILD_ROOT": "/tmp/state",
            "PIP_CERT": "/etc/pybuild-host-ca.pem", "SSL_CERT_FILE": "/etc/pybuild-host-ca.pem",
            "REQUESTS_CA_BUNDLE": "/etc/pybuild-host-ca.pem", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_ROOT_USER_ACTION": "ignore",
        }
        for k, v in os.environ.items():  # proxies and the index configuration (not host paths)
            if k.lower() in ("http_proxy", "https_proxy", "no_proxy", "all_proxy") or k in (
                    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT"):
                self.env[k] = v

    def run(self, *argv: str, cwd: str = "/tmp", timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _ENTER, "enter",
             str(self.merged), str(self.rootfs), str(self.upper), str(self.ovl), str(self.tmp), cwd, *argv],
            env=self.env, capture_output=True, text=True, timeout=timeout)


def _rootfs(suite: str) -> Path:
    rootfs = ROOTFS / suite
    if (rootfs / ".pybuild-provisioned").is_file():
        return rootfs
    why = f"no Debian {suite} rootfs at {rootfs}: tests/pythons/provision.sh makes it (tests/run.sh runs it)"
    if ON_CI and suite in REQUIRED_ON_CI:
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module", params=sorted(SUITES), ids=[f"py{SUITES[s]}-{s}" for s in sorted(SUITES)])
def box(request, tmp_path_factory) -> Chroot:
    """A chroot of the suite with the wheel installed in a venv of its python3."""
    suite = request.param
    rootfs = _rootfs(suite)  # skips (or fails on CI) before the wheel is built
    dist = request.getfixturevalue("dist")
    box = Chroot(rootfs, tmp_path_factory.mktemp(f"chroot-{suite}"))
    box.want = SUITES[suite]
    r = box.run("python3", "-m", "venv", VENV, timeout=120)
    assert r.returncode == 0, r.stderr
    wheel = next(dist.glob("pybuild-*.whl"))
    shutil.copy(wheel, box.tmp / wheel.name)
    r = box.run("pip", "install", "-q", f"/tmp/{wheel.name}", timeout=600)
    if r.returncode != 0 and not ON_CI and ("No matching distribution found for" in r.stderr
                                             or "Could not fetch URL" in r.stderr):
        pytest.skip(f"no package index reachable from the chroot: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return box


def test_wheel_installs_and_runs_under_the_suites_python(box):
    r = box.run("python", "-c", "import sys, builder, grammar, lark, zstandard, yaml, rich;"
                "print('%d.%d' % sys.version_info[:2]); print(builder.__file__); print(grammar.__file__)")
    assert r.returncode == 0, r.stderr
    version, *files = r.stdout.split()
    assert version == box.want, r.stdout
    assert all(f.startswith(f"{VENV}/lib/python{box.want}/site-packages/") for f in files), files
    r = box.run("pybuild", "--version")
    assert r.returncode == 0 and r.stdout.startswith("pybuild version "), r.stdout + r.stderr

    (box.tmp / "Dockerfile").write_text("from busybox AS base\nRUN echo hi\nCMD echo hi\n")
    r = box.run("pybuild", "parse", "-f", "Dockerfile")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0].split() == ["1", "from", "busybox", "AS", "base"], r.stdout
    r = box.run("pybuild", "lint", "-f", "Dockerfile")
    assert r.returncode == 0, r.stderr
    assert "Dockerfile:1:1: warning: ConsistentInstructionCasing" in r.stderr, r.stderr
    assert "Dockerfile:3:1: warning: JSONArgsRecommended" in r.stderr, r.stderr
    r = box.run("pybuild", "lint", "--check", "-f", "Dockerfile")
    assert r.returncode == 1, r.stderr
    (box.tmp / "Bad").write_text("FROM busybox\nRUN echo hi\nCOPY --frm=x a b\n")
    r = box.run("pybuild", "parse", "-f", "Bad")
    assert r.returncode == 1 and r.stderr.startswith("Bad:3:"), r.stderr  # an error with a place, no traceback
    assert "Traceback" not in r.stderr


def test_build_and_run_under_the_suites_python(box):
    """import a busybox rootfs, build COPY + RUN on it, run the image: all under the venv's python."""
    rootfs = make_busybox_rootfs(box.work / "busybox")
    with tarfile.open(box.tmp / "busybox.tar", "w") as t:
        t.add(rootfs, arcname=".")
    r = box.run("pybuild", "import", "/tmp/busybox.tar", "busybox:latest", timeout=120)
    assert r.returncode == 0, r.stderr
    ctx = box.tmp / "ctx"
    ctx.mkdir()
    (ctx / "greeting.txt").write_text(f"hello from python {box.want}\n")
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nCOPY greeting.txt /srv/greeting.txt\n"
        "RUN tr a-z A-Z < /srv/greeting.txt > /srv/shout.txt && echo built-in-run >> /srv/shout.txt\n"
        'CMD ["cat", "/srv/shout.txt"]\n')
    r = box.run("pybuild", "build", "--progress=plain", "-t", "pyver:1", "/tmp/ctx", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    r = box.run("pybuild", "run", "--rm", "pyver:1", timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"HELLO FROM PYTHON {box.want}\nbuilt-in-run\n"
    r = box.run("pybuild", "run", "--rm", "pyver:1", "echo", "ran", "under", box.want, timeout=120)
    assert r.returncode == 0 and r.stdout == f"ran under {box.want}\n", r.stdout + r.stderr


def test_unit_and_error_tests_under_the_suites_python(box, dist):
    """The sdist's tests/unit and tests/errors under the suite's interpreter: the code, not only
    the entry point; tests/errors pins every error message, whose argparse wording changes
    between Pythons (3.13 dropped the quotes around the choices)."""
    sdist = next(dist.glob("pybuild-*.tar.gz"))
    with tarfile.open(sdist) as t:
        t.extractall(box.tmp / "sdist", filter="data")
    (src,) = (box.tmp / "sdist").iterdir()
    r = box.run("pip", "install", "-q", "pytest>=8", "hypothesis>=6", "jsonschema>=4", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    r = box.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit", "tests/errors",
                cwd=f"/tmp/sdist/{src.name}", timeout=900)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
    assert " passed" in r.stdout.splitlines()[-1], r.stdout[-500:]
