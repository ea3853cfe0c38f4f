"""COPY of several sources where an earlier source leaves a symlink that a later source's
directory lands on: the symlink's target is a path in the image, never on the host.

Regression: `COPY a/ b/ /dest/` with a/x -> /abs/host/dir and a directory b/x/ wrote b/x's files
THROUGH the symlink onto the host (replacing an existing host file), because the copier reused
the upper's host path of /dest/x as the parent of b/x's children.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.buildlib import build, layer_files, make_busybox_image, validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


@pytest.mark.parametrize("link", [False, True], ids=["follow", "link"])
def test_later_source_dir_does_not_write_through_earlier_symlink(tmp_path: Path, link: bool) -> None:
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    victim = tmp_path / "host-victim"
    victim.mkdir()
    (victim / "keep").write_text("host original\n")
    flag = "--link " if link else ""
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": f"FROM busybox\nCOPY {flag}a/ b/ /dest/\n",
                                       "b/x/keep": "from the context\n", "b/x/planted": "new\n"})
    (ctx / "a").mkdir()
    os.symlink(str(victim), ctx / "a" / "x")

    r = build(root, ctx, "-t", "t")
    assert r.returncode == 0, r.stderr.decode()

    # the host is untouched
    assert sorted(os.listdir(victim)) == ["keep"]
    assert (victim / "keep").read_text() == "host original\n"

    img = validate_layout(root, "t")
    files = layer_files(root, img["manifest"]["layers"][-1]["digest"])
    inside = str(victim).lstrip("/")
    if link:
        # --link never follows destinations: the directory replaces the symlink in the layer
        assert files["dest/x"].isdir()
        assert files["dest/x/keep"].isfile() and files["dest/x/planted"].isfile()
        assert inside + "/keep" not in files
    else:
        # followed inside the image rootfs, as BuildKit does: the symlink stays, the files land
        # at its target path in the image
        assert files["dest/x"].issym() and files["dest/x"].linkname == str(victim)
        assert files[inside + "/keep"].isfile() and files[inside + "/planted"].isfile()
