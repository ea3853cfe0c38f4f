"""Rootless limits under a delegated cgroup v2 subtree (issue 17), in a virtual machine.

This kind of host (and CI) has hybrid cgroups: v1 controllers, and an empty cgroup2 tree no
controller can be enabled in; so the v2 path of runtime/cgroups.py for a non-root user is
tested in a virtual machine: Debian's own kernel booted with cgroup_no_v1=all, the root
filesystem of tests/vm/provision.sh as its initramfs, plus a second archive made here (/init =
tests/vm/init.sh, /guest.sh = tests/vm/guest.sh, the checkout's builder/, runtime/, grammar/
and tests/fixtures/ under /src). The guest delegates a cgroup to the user `tester` as systemd's
Delegate=yes does and runs guest.sh as that user: pybuild (rootless) imports a busybox base,
builds and runs containers with --memory/--pids-limit, and prints "PYBUILD-VM ..."
lines on the serial console, which this test reads back.

Needs root (debootstrap) and qemu-system-x86_64 (tests/apt-packages.txt); skips without them,
except on CI (root, CI=true), where it must run. Hardware KVM when the host has it, else TCG
(see _accel). Cold provisioning ~70 s here (tests/run.sh does it before the suite), the boot
and the checks ~50 s under TCG.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.vm import cpio

HERE = Path(__file__).resolve().parent
ON_CI = os.environ.get("CI") == "true" and os.geteuid() == 0


def _unavailable(why: str):
    if ON_CI:
        pytest.fail(f"the cgroup v2 VM test must run on CI: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def vm_dir() -> Path:
    if os.geteuid() != 0:
        _unavailable("needs root (debootstrap for the guest's root filesystem)")
    if not shutil.which("qemu-system-x86_64"):
        _unavailable("qemu-system-x86_64 is not installed (Debian: qemu-system-x86)")
    r = subprocess.run(["bash", str(HERE / "provision.sh")], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        _unavailable(f"tests/vm/provision.sh failed: {r.stderr.strip().splitlines()[-1:]}")
    return Path(r.stdout.strip().splitlines()[-1])


def _boot_archive() -> bytes:
    """/init, /guest.sh, /dev/console and the checkout's Python sources under /src."""
    entries = [
        cpio.Entry("dev", stat.S_IFDIR | 0o755),
        cpio.Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        cpio.Entry("init", stat.S_IFREG | 0o755, (HERE / "init.sh").read_bytes()),
        cpio.Entry("guest.sh", stat.S_IFREG | 0o755, (HERE / "guest.sh").read_bytes()),
        cpio.Entry("src", stat.S_IFDIR | 0o755),
        cpio.Entry("src/tests", stat.S_IFDIR | 0o755),
        cpio.Entry("src/tests/__init__.py", stat.S_IFREG | 0o644, b""),
    ]
    for top in ("builder", "runtime", "grammar", "tests/fixtures"):
        entries.append(cpio.Entry(f"src/{top}", stat.S_IFDIR | 0o755))  # the kernel makes no parents
        for e in cpio.tree(str(REPO / top), prefix=f"src/{top}"):
            if "__pycache__" in e.name:
                continue
            entries.append(e._replace(uid=0, gid=0, mode=e.mode | 0o444 | (0o111 if stat.S_ISDIR(e.mode) else 0)))
    out = io.BytesIO()
    cpio.write(out, entries)
    return out.getvalue()


def _accel() -> list[str]:
    """Hardware KVM where the host has it (kvm_intel / kvm_amd), else TCG: a /dev/kvm backed by
    kvm_pvm (this machine's and CI's kind: PVM, nested virtualization without VMX) runs only
    PVM-aware guest kernels, and Debian's stops right after its real-mode setup there. Under
    TCG the whole test takes ~50 s here."""
    hardware = any(os.path.isdir(f"/sys/module/{m}") for m in ("kvm_intel", "kvm_amd"))
    if hardware and os.access("/dev/kvm", os.R_OK | os.W_OK):
        return ["-enable-kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def _boot(vm_dir: Path, tmp: Path) -> str:
    initrd = tmp / "initrd"
    with open(initrd, "wb") as f:
        with open(vm_dir / "rootfs.cpio", "rb") as base:
            shutil.copyfileobj(base, f)
        f.write(b"\0" * (-f.tell() % 4))  # the kernel looks for the next archive at a multiple of 4
        f.write(_boot_archive())
    console = tmp / "console.log"
    argv = ["qemu-system-x86_64", *_accel(), "-smp", "2", "-m", "2048", "-display", "none", "-no-reboot",
            "-nic", "none", "-monitor", "none", "-serial", f"file:{console}",
            "-kernel", str(vm_dir / "vmlinuz"), "-initrd", str(initrd),
            "-append", "console=ttyS0 cgroup_no_v1=all rdinit=/init panic=-1 quiet loglevel=3"]
    try:
        subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
    except subprocess.TimeoutExpired:
        pass  # the assertions below say how far it got
    out = console.read_text(errors="replace").replace("\r\n", "\n")
    print(out)  # shown by pytest when the test fails
    return out


def test_rootless_limits_under_a_delegated_cgroup_v2_subtree(vm_dir: Path, tmp_path: Path) -> None:
    out = _boot(vm_dir, tmp_path)
    tail = "\n".join(out.splitlines()[-80:])
    lines = {}
    for ln in out.splitlines():
        m = re.match(r"PYBUILD-VM (\S+) (.*)", ln)
        if m:
            lines.setdefault(m.group(1), []).append(m.group(2))
    assert "PYBUILD-VM-BOOTED" in out, tail
    # a pure v2 kernel: the delegated cgroup has both controllers, no v1 hierarchy exists
    assert re.search(r"controllers=\[.*memory.*\]", lines["cgroup"][0]) and "pids" in lines["cgroup"][0], tail
    assert lines["cgroup"][0].startswith("0::/user.slice/user-1000.slice/user@1000.service"), tail
    assert lines["import"] == ["rc=0"], tail
    # build --memory 64m --pids-limit 50: the RUN's cgroup holds both limits (read from
    # outside while it ran), and its sleeps stop short of 50 processes
    rc, forked = re.fullmatch(r"rc=(\d+) forked=(\d+)", lines["build"][0]).groups()
    assert rc == "0" and 40 <= int(forked) < 50, tail
    assert sorted(lines["build-limit"]) == ["memory.max=67108864", "pids.max=50"], tail
    # run --memory 32m --pids-limit 20: pybuild's cgroup in the delegated subtree holds them
    assert sorted(lines["limit"]) == ["memory.max=33554432", "pids.max=20"], tail
    assert lines["run-wait"] == ["rc=0"], tail
    # the memory limit kills an 80 MB shell variable, and pybuild says so
    assert lines["oom"] == ["rc=137 1"], tail
    rc, forked = re.fullmatch(r"rc=(\d+) forked=(\d+)", lines["pids"][0]).groups()
    assert rc == "0" and 10 <= int(forked) < 20, tail
    assert lines["leftovers"] == ["0"], tail
    assert "PYBUILD-VM-EXIT 0" in out, tail
