"""pybuild inside a container (issue 17): the project's image (examples/pybuild-image/Dockerfile,
Debian + python3 from Debian's archive) built by pybuild, then started by `pybuild run` with
seccomp unconfined (unshare(CLONE_NEWUSER) is refused by the default filter, as under docker for
BuildKit rootless) and a volume for the state; inside, as the non-root user `builder`, pybuild
makes a busybox base and builds and runs examples/hello. Nested, the inner sandboxes get the
container's /proc bound (a masked /proc allows no fresh proc mount to a user namespace) and a
single-id map (no_new_privs keeps the setuid newuidmap from working): both said in README.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay, pytest.mark.needs_userns, pytest.mark.root_only]


def test_pybuild_image_builds_hello_as_non_root_inside_pybuild_run(debian_tar):
    tar, _ = debian_tar
    d = Path(tempfile.mkdtemp(prefix="pybuild-in-pybuild-"))
    try:
        env = {"PYBUILD_ROOT": str(d / "root")}
        r = run_cli("import", str(tar), "debian:bookworm", env=env, timeout=900)
        assert r.returncode == 0, r.stderr.decode()
        r = run_cli("build", "--progress=plain", "-f", str(REPO / "examples" / "pybuild-image" / "Dockerfile"),
                    "-t", "pybuild-img", str(REPO), env=env, timeout=1500)
        assert r.returncode == 0, r.stderr.decode()[-3000:]
        state = d / "state"
        state.mkdir(mode=0o700)
        os.chown(state, 1000, 1000)  # the image's `builder`
        script = ("set -e; id -u; bash /opt/pybuild/examples/make-busybox-rootfs.sh /tmp/bb.tar; "
                  "pybuild import /tmp/bb.tar busybox; cd /opt/pybuild/examples/hello; "
                  "pybuild build --progress=plain -t hello .; pybuild run --rm hello")
        r = run_cli("run", "--rm", "--security-opt", "seccomp=unconfined",
                    "-v", f"{state}:/home/builder/.local/share/pybuild", "pybuild-img", "sh", "-c", script,
                    env=env, timeout=900)
        out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        assert r.returncode == 0, out[-2000:] + err[-3000:]
        assert out.splitlines()[0] == "1000", out  # not root inside the container
        assert "Hello from pybuild, world!" in out, out + err[-2000:]
        assert "internal error" not in err
    finally:
        shutil.rmtree(d, ignore_errors=True)
