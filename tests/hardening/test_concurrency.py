"""Concurrency: 8 builds at once on one store, and readers that never wait for writers.

Eight `pybuild build` processes share one store and one base image: three build the same
Dockerfile (racing to write the same layers, snapshots, records and tag), five build different
ones (sharing their first steps). All must succeed, the store must verify, every image must
validate, and same-Dockerfile builds must agree on the image digest. Meanwhile `images` and
`inspect` run in a loop and must answer promptly; and with the store's writer lock HELD by this
process, they must still answer (readers take no lock).
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.hardening.crashlib import build_popen, check_store, leftovers
from tests.integration.buildlib import make_busybox_image, validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


def _dockerfile(variant: int) -> str:
    return ("FROM busybox\nCOPY shared.txt /shared/\nRUN echo shared-step > /s\n"
            f"COPY v{variant}.txt /v/\nRUN sleep 0.3 && dd if=/dev/urandom of=/r bs=64k count=8 2>/dev/null\n"
            f"RUN echo variant {variant} > /variant\nLABEL variant={variant}\n")


def test_eight_builds_at_once_on_one_store(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    mark = "conc" + uuid.uuid4().hex[:12]
    variants = [0, 0, 0, 1, 2, 3, 4, 5]  # three identical, five different
    procs = []
    for n, v in enumerate(variants):
        ctx = write_ctx(tmp_path / f"ctx{n}", {"Dockerfile": _dockerfile(v), "shared.txt": "same everywhere\n",
                                               f"v{v}.txt": f"variant {v}\n"})
        procs.append((n, v, build_popen(root, ctx, tmp_path / f"b{n}.log", mark, "-t", f"img{n}",
                                             "--build-arg", "SOURCE_DATE_EPOCH=1700000000")))

    env = {"PYBUILD_ROOT": str(root)}
    slowest = 0.0
    polls = 0
    while any(p.poll() is None for _, _, p in procs):
        for args in (("images",), ("inspect", "busybox")):
            t0 = time.monotonic()
            r = run_cli(*args, env=env, timeout=30)
            slowest = max(slowest, time.monotonic() - t0)
            assert r.returncode == 0, r.stderr.decode()
            polls += 1
    for n, v, p in procs:
        assert p.returncode == 0, f"build {n} (variant {v}): {(tmp_path / f'b{n}.log').read_text()}"
    assert polls >= 2
    # A reader that waited for a build's writer lock would take as long as that build's writes.
    assert slowest < 10, f"images/inspect took {slowest:.1f}s while builds ran"

    check_store(root)
    imgs = {n: validate_layout(root, f"img{n}") for n in range(len(variants))}
    layers = {n: [x["digest"] for x in img["manifest"]["layers"]] for n, img in imgs.items()}
    # RUN layers differ between racing builds (random bytes); COPY layers under SOURCE_DATE_EPOCH are
    # content-derived, so racing writers of the same blob must have stored one and the same.
    assert len({ls[:2] for ls in map(tuple, layers.values())}) == 1, "base + shared COPY differ between builds"
    assert layers[0][3] == layers[1][3] == layers[2][3], "the same COPY gave different layers"
    assert len({layers[n][3] for n in range(2, len(variants))}) == len(variants) - 2
    assert all(imgs[n]["config"]["config"]["Labels"] == {"variant": str(v)} for n, v in enumerate(variants))
    assert not leftovers(mark, root)
    images = run_cli("images", env=env).stdout.decode()
    assert all(f"img{n}" in images for n in range(len(variants)))


def test_readers_never_take_the_writer_lock(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a build does while it tags
        env = dict(os.environ, PYBUILD_ROOT=str(root))
        for args in (("images",), ("inspect", "busybox"), ("history", "busybox")):
            r = subprocess.run([sys.executable, "-m", "builder.cli", *args], env=env, capture_output=True, timeout=20)
            assert r.returncode == 0, r.stderr.decode()
            assert b"busybox" in r.stdout or args[0] == "history"
    finally:
        os.close(fd)
