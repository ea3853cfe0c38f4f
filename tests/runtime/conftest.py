"""Fixtures for the sandbox tests: a session-wide busybox rootfs and config builders."""
from __future__ import annotations

from runtime import record
from pathlib import Path

import pytest

from runtime import sandbox
from runtime.config import Process, Rootfs, SandboxConfig
from tests.fixtures.busybox_rootfs import make_busybox_rootfs


@pytest.fixture(scope="session")
def busybox(tmp_path_factory) -> Path:
    try:
        return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")
    except RuntimeError as e:
        pytest.skip(str(e))


@pytest.fixture
def overlay(busybox, tmp_path):
    """A fresh overlay rootfs (busybox lower, empty upper/work) -> (Rootfs, upper Path)."""
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    return Rootfs(lowerdirs=(str(busybox),), upperdir=str(upper), workdir=str(work)), upper


@pytest.fixture
def sh(overlay):
    """sh("script", **config overrides) -> (RunResult, stdout text, stderr text)."""
    rootfs, _ = overlay

    def run(script: str, process: dict | None = None, **kw):
        proc = Process(argv=("/bin/sh", "-c", script), **(process or {}))
        cfg = SandboxConfig(rootfs=kw.pop("rootfs", rootfs), process=proc, **kw)
        out, err = bytearray(), bytearray()
        r = sandbox.run(cfg, stdout=out.extend, stderr=err.extend)
        return r, out.decode(), err.decode()
    return run


def replace(cfg, **kw):
    return record.replace(cfg, **kw)
