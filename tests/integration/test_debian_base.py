"""A real-world base: Debian bookworm from debootstrap, `apt-get install` in a RUN step.

What docker users build most: FROM a distribution, apt-get update && apt-get install, a user,
USER/WORKDIR, then run it. It exercises what busybox does not: apt's privilege drop to the
_apt user (setgroups/setuid under the default capability set), DNS and TLS-less HTTP from the
sandbox, dpkg triggers, /dev/null and /proc inside RUN, a 200 MB base imported from a tar
stream. Needs root, overlayfs and Debian's archive (the one this machine's apt sources name,
through examples/debian-mirror.sh): without the archive the module skips, saying so.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import run_cli
from tests.integration.buildlib import validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


def _mirror() -> str:
    """The Debian archive of this machine's apt sources (no host is named here)."""
    env = os.environ.get("PYBUILD_TEST_DEBIAN_MIRROR")
    if env:
        return env
    script = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "debian-mirror.sh")
    r = subprocess.run(["sh", script], capture_output=True, text=True)
    return r.stdout.strip()


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory):
    if not shutil.which("debootstrap"):
        pytest.skip("debootstrap not installed (tests/apt-packages.txt lists it)")
    mirror = _mirror()
    if not mirror:
        pytest.skip("no Debian archive in this machine's apt sources")
    d = tmp_path_factory.mktemp("debian")
    rootfs = d / "rootfs"
    r = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror],
                       capture_output=True, timeout=900)
    if r.returncode != 0:
        tail = (r.stdout + r.stderr).decode(errors="replace").strip().splitlines()[-3:]
        pytest.skip(f"debootstrap from {mirror} failed (archive unreachable?): {' / '.join(tail)}")
    root = d / "root"
    env = {"PYBUILD_ROOT": str(root)}
    # a 200 MB base, streamed in as `tar -c . | pybuild import -` does
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    r = subprocess.run([sys.executable, "-m", "builder.cli", "import", "-", "debian:bookworm"],
                       stdin=tar.stdout, capture_output=True, env={**os.environ, **env}, timeout=600)
    tar.stdout.close()
    assert tar.wait() == 0 and r.returncode == 0, r.stderr
    shutil.rmtree(rootfs)
    return root


def test_apt_get_install_useradd_user_workdir(debian_root, tmp_path):
    env = {"PYBUILD_ROOT": str(debian_root)}
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": """\
FROM debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
RUN useradd -m app
USER app
WORKDIR /home/app
RUN curl --version | head -1 > version.txt && id -un > whoami
CMD ["cat", "version.txt", "whoami"]
"""})
    r = run_cli("build", "--progress=plain", "-t", "debcurl", str(ctx), env=env)
    log = r.stderr.decode(errors="replace")
    assert r.returncode == 0, log[-3000:]
    assert "unsandboxed" not in log, "apt could not drop privileges to _apt inside RUN"
    assert "Setting up curl" in log
    r = run_cli("run", "--rm", "debcurl", env=env)
    assert r.returncode == 0, r.stderr
    version, who = r.stdout.decode().splitlines()
    assert version.startswith("curl 7.") and who == "app"
    r = run_cli("run", "--rm", "debcurl", "sh", "-c", "id; dpkg -s curl | grep Status; ls /var/lib/apt/lists | wc -l",
                env=env)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode().splitlines()
    assert out[0].startswith("uid=1000(app) gid=1000(app)")
    assert out[1] == "Status: install ok installed" and out[2].strip() == "0"
    # the second build is all cache hits
    r = run_cli("build", "--progress=plain", "-t", "debcurl", str(ctx), env=env)
    assert r.returncode == 0 and r.stderr.decode().count("CACHED") >= 4, r.stderr.decode()[-2000:]
    validate_layout(debian_root)
