"""Fixtures shared by the build integration tests."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.buildlib import make_busybox_image


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fresh state directory holding busybox:latest (modules may override with their own)."""
    r = tmp_path / "root"
    make_busybox_image(r, tmp_path)
    return r


@pytest.fixture(scope="session")
def dist(tmp_path_factory) -> Path:
    """The sdist and wheel, built once from a copy of the checkout with `python -m build`
    (tests/integration/test_package*.py install that wheel as users would)."""
    pytest.importorskip("build", reason="the `build` package (test extra) builds the wheel")
    pytest.importorskip("wheel", reason="setuptools needs `wheel` to build one without isolation")
    repo = Path(__file__).resolve().parents[2]
    work = tmp_path_factory.mktemp("pkg")
    src = work / "src"
    shutil.copytree(repo, src, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".pytest_cache", ".hypothesis"))
    out = work / "dist"
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "-o", str(out), str(src)],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return out
