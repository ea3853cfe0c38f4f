"""ONBUILD triggers of a stage run in a stage built FROM it (BuildKit ≥ 0.17.1 behaviour)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.buildlib import build, layer_files, make_busybox_image, validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]

DOCKERFILE = """
FROM busybox AS base
ONBUILD RUN echo fired-in-child > /fired
RUN test ! -e /fired

FROM base AS child1
RUN cat /fired

FROM base AS child2
RUN cat /fired > /copy

FROM child2 AS grandchild
RUN test -e /copy && echo grandchild-ok
"""


def test_stage_onbuild_triggers_run_in_each_child_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": DOCKERFILE})
    for target in ("child1", "grandchild"):
        r = build(root, ctx, "--target", target, "-t", target)
        assert r.returncode == 0, r.stderr.decode()
        assert b"fired-in-child" in r.stderr or target == "grandchild"
    img = validate_layout(root, "grandchild")
    # the triggers ran in child2 and are not inherited by its own children
    assert "OnBuild" not in img["config"]["config"]
    files = {}
    for layer in img["manifest"]["layers"]:
        files.update(layer_files(root, layer["digest"]))
    assert "fired" in files and "copy" in files
    base = build(root, ctx, "--target", "base", "-t", "base")
    assert base.returncode == 0
    assert validate_layout(root, "base")["config"]["config"]["OnBuild"] == ["RUN echo fired-in-child > /fired"]
