"""OCI runtime bundle export, started by Debian's runc (and crun): interop with the runtime spec."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from runtime.bundle import oci_config, write_bundle
from runtime.config import Limits, Mount, Process, Rootfs, SandboxConfig
from runtime.errors import SandboxError

RUNTIMES = [pytest.param(t, marks=pytest.mark.skipif(not shutil.which(t), reason=f"{t} not installed"))
            for t in ("runc", "crun")]


def run_bundle(tool: str, bundle) -> subprocess.CompletedProcess:
    cid = f"pybuild-test-{uuid.uuid4().hex[:12]}"
    argv = [tool, "run", "--bundle", str(bundle), cid]
    if tool == "crun" and os.path.ismount("/sys/fs/cgroup/unified"):
        # crun 1.8 refuses a hybrid host (v1 controllers next to a cgroup2 mount), even with
        # --cgroup-manager=disabled. Run it as a crun user here would: in a private mount
        # namespace without the cgroup2 mount (the host's mounts stay as they are).
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'umount /sys/fs/cgroup/unified && exec "$@"', "sh", *argv]
    try:
        r = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    finally:
        subprocess.run([tool, "delete", "-f", cid], capture_output=True)
    return r


@pytest.mark.needs_root
@pytest.mark.parametrize("tool", RUNTIMES)
def test_exported_bundle_runs_under_oci_runtime(tool, busybox, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "f").write_text("from the host\n")
    cfg = SandboxConfig(
        rootfs=Rootfs(path=str(busybox)), hostname="bundled",
        process=Process(argv=("sh", "-c", "echo $$; hostname; id -u; pwd; cat /data/f; ls /sys/class/net;"
                              " grep -c . /etc/hosts; touch /data/x 2>/dev/null || echo ro; exit 7"),
                        uid=1000, gid=1000, cwd="/home/app", env=("PATH=/bin", "A=b")),
        mounts=(Mount("bind", "/data", str(src), readonly=True),),
        limits=Limits(memory_bytes=64 << 20, pids=32))
    bundle = write_bundle(cfg, busybox, tmp_path / "bundle")
    assert (bundle / "rootfs" / "bin" / "busybox").stat().st_size == (busybox / "bin" / "busybox").stat().st_size
    assert os.readlink(bundle / "rootfs" / "bin" / "sh") == "busybox"
    r = run_bundle(tool, bundle)
    assert r.returncode == 7, r.stderr.decode()
    assert r.stdout.decode().split() == ["1", "bundled", "1000", "/home/app", "from", "the", "host", "lo", "3", "ro"]


def test_config_json_speaks_the_runtime_spec(busybox, tmp_path):
    cfg = SandboxConfig(rootfs=Rootfs(path=str(busybox)), process=Process(argv=("true",), tty=True, terminal_size=(24, 80)),
                        network="host", namespaces=("mount", "pid", "uts", "ipc"), readonly_rootfs=True,
                        limits=Limits(cpu_quota=1.5))
    doc = oci_config(cfg)
    assert doc["ociVersion"].startswith("1.0")
    assert doc["root"] == {"path": "rootfs", "readonly": True}
    assert {"type": "network"} not in doc["linux"]["namespaces"]
    assert doc["linux"]["resources"]["cpu"] == {"quota": 150000, "period": 100000}
    assert doc["process"]["consoleSize"] == {"height": 24, "width": 80}
    assert "CAP_SYS_ADMIN" not in doc["process"]["capabilities"]["bounding"]
    json.dumps(doc)


def test_bundle_refuses_a_non_empty_destination(busybox, tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("")
    with pytest.raises(SandboxError, match="not empty"):
        write_bundle(SandboxConfig(rootfs=Rootfs(path=str(busybox)), process=Process(argv=("true",))), busybox, tmp_path / "b")
