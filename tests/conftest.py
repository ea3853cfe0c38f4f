"""Shared fixtures and capability probes.

Markers needs_root / needs_overlay / needs_userns / registry skip with a reason when the
machine cannot do the thing; on CI (root, CI=true) they must run, so there a failed probe
is an error, not a skip.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CONFORMANCE = SHARED / "conformance"


# The integration suite's second run as a non-root user (tests/rootless/ci.sh, issue 17): the
# CLI enters a user namespace of its own, so tests that need root or overlay *for the CLI* run;
# those that need it in the test process itself are marked root_only and skip.
ROOTLESS_RUN = os.environ.get("PYBUILD_TEST_ROOTLESS") == "1" and os.geteuid() != 0


@functools.cache
def have_root() -> bool:
    return os.geteuid() == 0 or ROOTLESS_RUN


def not_rootless_run() -> bool:
    return not ROOTLESS_RUN


@functools.cache
def have_overlay() -> bool:
    if ROOTLESS_RUN:
        return True  # the CLI probes a userxattr overlay itself and falls back to the copy
    if not have_root():
        return False
    d = tempfile.mkdtemp(prefix="pybuild-probe-")
    try:
        for sub in ("l", "u", "w", "m"):
            os.mkdir(os.path.join(d, sub))
        r = subprocess.run(["unshare", "-m", "sh", "-c",
                            f"mount -t overlay overlay -o lowerdir={d}/l,upperdir={d}/u,workdir={d}/w {d}/m"],
                           capture_output=True)
        return r.returncode == 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


@functools.cache
def have_userns() -> bool:
    r = subprocess.run(["unshare", "-U", "true"], capture_output=True)
    return r.returncode == 0


@functools.cache
def have_registry() -> bool:
    return shutil.which("docker-registry") is not None or os.path.exists("/usr/bin/docker-registry")


PROBES = {
    "needs_root": (have_root, "needs root"),
    "needs_overlay": (have_overlay, "needs overlayfs (root + mount namespace)"),
    "needs_userns": (have_userns, "needs user namespaces"),
    "registry": (have_registry, "needs Debian's docker-registry package"),
    "root_only": (not_rootless_run, "only makes sense as root (skipped in the rootless run)"),
}


def pytest_collection_modifyitems(config, items):
    on_ci = os.environ.get("CI") == "true" and have_root()
    for item in items:
        for name, (probe, reason) in PROBES.items():
            if item.get_closest_marker(name) and not probe():
                if on_ci and name != "root_only":
                    # On CI (root) these tests must run: a missing capability is a failure.
                    item.add_marker(pytest.mark.usefixtures("_ci_capability_missing"))
                else:
                    item.add_marker(pytest.mark.skip(reason=reason))


def _collect_networks(under) -> None:
    """A foreground `run` makes its store's default bridge (and nft table): remove those of the
    test stores, so a session does not run the subnet pool dry or leave links behind."""
    if os.geteuid() == 0 and os.path.isdir("/sys/class/net") and \
            any(n.startswith("pbr") for n in os.listdir("/sys/class/net")):
        from builder.networks.bridge import collect_orphans
        collect_orphans(under=str(under))


@pytest.fixture(autouse=True)
def _networks_of_the_test(request):
    tmp = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if tmp is not None:
        _collect_networks(tmp)


@pytest.fixture(scope="module", autouse=True)
def _networks_of_the_module(tmp_path_factory):
    yield
    _collect_networks(tmp_path_factory.getbasetemp())


@pytest.fixture
def _ci_capability_missing():
    pytest.fail("a capability this test needs is missing on CI")


@pytest.fixture
def pybuild_root(tmp_path, monkeypatch) -> Path:
    """A fresh, private $PYBUILD_ROOT for one test."""
    root = tmp_path / "pybuild-root"
    monkeypatch.setenv("PYBUILD_ROOT", str(root))
    return root


def run_cli(*args: str, input: bytes | None = None, env: dict | None = None, cwd=None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real entry point (`python -m builder.cli`) as a user would."""
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "builder.cli", *args], input=input, env=e, cwd=cwd,
                          capture_output=True, timeout=timeout)
