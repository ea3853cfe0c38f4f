"""FROM an image that is only in a registry: pulled once, then built on; --pull re-checks."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.fixtures.registry import registry  # noqa: F401  (fixture)
from tests.integration.buildlib import build, make_busybox_image, steps, validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay, pytest.mark.registry]


def test_from_a_registry_image(registry, tmp_path: Path) -> None:  # noqa: F811
    src = tmp_path / "src"
    make_busybox_image(src, tmp_path / "b")
    ref = registry.ref("test/busybox", "1")
    r = run_cli("push", "busybox", ref, env={"PYBUILD_ROOT": str(src)})
    assert r.returncode == 0, r.stderr.decode()
    root = tmp_path / "fresh"
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": f"FROM {ref}\nRUN echo pulled-base-ok && touch /on-pulled\n"})
    r = build(root, ctx, "-t", "onpulled")
    assert r.returncode == 0, r.stderr.decode()
    assert b"pulled-base-ok" in r.stderr
    img = validate_layout(root, "onpulled")
    assert len(img["manifest"]["layers"]) == 2
    r = build(root, ctx, "-t", "onpulled", "--pull")
    assert r.returncode == 0, r.stderr.decode()
    assert all(res == "CACHED" for _, res in steps(r.stderr))  # same base digest: still cached
