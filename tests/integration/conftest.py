"""Fixtures shared by the build integration tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.buildlib import make_busybox_image


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fresh state directory holding busybox:latest (modules may override with their own)."""
    r = tmp_path / "root"
    make_busybox_image(r, tmp_path)
    return r
