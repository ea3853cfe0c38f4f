"""Change sets from a real overlayfs upperdir and from the two-tree diff agree, and applying
the layer they make to the lower tree reproduces the merged tree."""
from __future__ import annotations

import io
import os
import shutil
import subprocess

import pytest

from builder.layers.changes import ADD, DELETE, OPAQUE, changes_from_upper, diff_trees
from builder.layers.tarball import write_tar
from builder.layers.unpack import apply_layer

SCRIPT = """
set -e
rm {m}/etc/remove-me
rm -rf {m}/var/cache
mkdir {m}/var/cache
echo fresh > {m}/var/cache/new
echo changed > {m}/etc/conf
mkdir -p {m}/opt/app
echo hi > {m}/opt/app/run
"""


def make_lower(lower):
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "remove-me").write_text("x")
    (lower / "etc" / "conf").write_text("orig")
    (lower / "etc" / "keep").write_text("keep")
    (lower / "var" / "cache").mkdir(parents=True)
    (lower / "var" / "cache" / "stale1").write_text("s")
    (lower / "var" / "cache" / "stale2").write_text("s")


def tree(root):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
        for d in dirs:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = None
    return out


@pytest.mark.needs_overlay
def test_changes_from_real_overlay_upper(tmp_path):
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    make_lower(lower)
    for d in (upper, work, merged):
        d.mkdir()
    script = f"mount -t overlay overlay -o lowerdir={lower},upperdir={upper},workdir={work} {merged}\n" \
        + SCRIPT.format(m=merged) + f"cp -a {merged} {tmp_path}/snapshot\n"
    subprocess.run(["unshare", "-m", "sh", "-c", script], check=True)
    cs = changes_from_upper(upper)
    assert b"etc/remove-me" in cs.paths(DELETE)
    assert b"var/cache" in cs.paths(OPAQUE)
    assert {b"etc/conf", b"opt/app/run", b"var/cache/new"} <= set(cs.paths(ADD))
    # lower + layer(upper) == what the merged mount showed
    out = io.BytesIO()
    write_tar(cs, out)
    out.seek(0)
    result = tmp_path / "result"
    shutil.copytree(lower, result, symlinks=True)
    apply_layer(out, result)
    assert tree(result) == tree(tmp_path / "snapshot")


def test_diff_trees_equals_what_the_change_did(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    make_lower(lower)
    subprocess.run(["cp", "-a", str(lower), str(upper)], check=True)
    subprocess.run(["sh", "-c", SCRIPT.format(m=upper)], check=True)
    cs = diff_trees(lower, upper)
    assert b"etc/remove-me" in cs.paths(DELETE)
    assert b"var/cache/stale1" in cs.paths(DELETE) and b"var/cache/new" in cs.paths(ADD)
    assert b"etc/keep" not in cs.paths()  # unchanged files stay out of the layer
    assert b"etc" in cs.paths(ADD)  # parent directory rides along
    out = io.BytesIO()
    write_tar(cs, out)
    out.seek(0)
    result = tmp_path / "result"
    shutil.copytree(lower, result, symlinks=True)
    apply_layer(out, result)
    assert tree(result) == tree(upper)


def test_diff_trees_same_size_same_mtime_different_content(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    (lower / "f").write_text("aaaa")
    (upper / "f").write_text("bbbb")
    for p in (lower / "f", upper / "f"):
        os.utime(p, (1000, 1000))
    os.utime(lower, (1000, 1000))
    os.utime(upper, (1000, 1000))
    assert diff_trees(lower, upper).paths() == [b"f"]
    (upper / "f").write_text("aaaa")
    os.utime(upper / "f", (1000, 1000))
    assert diff_trees(lower, upper).paths() == []


@pytest.mark.needs_root
def test_redirected_directory_in_upper_is_refused(tmp_path):
    from builder.errors import LayerError

    upper = tmp_path / "upper"
    (upper / "moved").mkdir(parents=True)
    os.setxattr(upper / "moved", "trusted.overlay.redirect", b"/orig")
    with pytest.raises(LayerError, match="redirect_dir=off"):
        changes_from_upper(upper)
    os.removexattr(upper / "moved", "trusted.overlay.redirect")
    os.setxattr(upper / "moved", "trusted.overlay.opaque", b"y")
    assert changes_from_upper(upper).paths(OPAQUE) == [b"moved"]
