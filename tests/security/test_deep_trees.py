"""Trees thousands of directories deep (issue 14, item 13).

The old code walked every tree by recursion: a context 3000 directories deep ended in an
internal RecursionError (exit 3), and so did anything past ~1000 levels (context hashing, the
copier, the upper-directory walk, layer export, unpack, rmtree). Now every walk uses an explicit
stack: a tree deeper than Python's recursion limit builds, and only the system's own limit
(PATH_MAX: a path the kernel cannot name) is an error, a clear one, with exit 1. BuildKit (the
reference, docker 28) fails the same 3000-deep context in its context sender with
`lstat ctx/d/d/…/d: file name too long`.
"""
from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from builder.layers import fstree
from builder.layers.changes import changes_from_upper
from builder.layers.unpack import apply_layer
from builder.errors import LayerError
from tests.conftest import run_cli
from tests.integration.buildlib import build, make_busybox_image, validate_layout, write_ctx

PATH_MAX = os.pathconf("/", "PC_PATH_MAX")


@pytest.fixture(autouse=True)
def _remove_deep_trees(tmp_path: Path):
    """pytest's own clean-up of old temp dirs uses shutil.rmtree, which recurses: it would
    hit the recursion limit on these trees, so each test removes its own."""
    yield
    for child in tmp_path.iterdir():
        fstree.rmtree(child, ignore_errors=True)


def _deep(top: Path, depth: int, name: str = "d", leaf: bytes | None = b"deep\n") -> None:
    """`depth` nested directories below `top` (made through dir fds: no path gets long)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        if leaf is not None:
            f = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
            os.write(f, leaf)
            os.close(f)
    finally:
        os.close(fd)


# --- library level (no root needed) ------------------------------------------------------------

def test_rmtree_removes_a_tree_deeper_than_path_max(tmp_path: Path) -> None:
    top = tmp_path / "t"
    top.mkdir()
    _deep(top, 3000)  # 6000 bytes of path: no full path names the leaf
    (top / "side").mkdir()
    os.symlink("/", top / "side" / "root-link")  # never followed
    fstree.rmtree(top)
    assert not top.exists()
    assert os.path.isdir("/") and os.listdir(tmp_path) == []


def test_tree_size_counts_deep_files(tmp_path: Path) -> None:
    _deep(tmp_path, 1500)
    assert fstree.tree_size(tmp_path) == 5


def test_changes_walk_deep_upper_and_clear_error_past_path_max(tmp_path: Path) -> None:
    ok = tmp_path / "ok"
    ok.mkdir()
    _deep(ok, 1500)
    cs = changes_from_upper(ok)
    assert len(cs) == 1501 and cs.paths()[-1].endswith(b"/d/f")
    bad = tmp_path / "bad"
    bad.mkdir()
    _deep(bad, PATH_MAX // 2 + 10)
    with pytest.raises(LayerError, match="PATH_MAX"):
        changes_from_upper(bad)
    fstree.rmtree(bad)


def _tar(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for n in names:
            ti = tarfile.TarInfo(n)
            if n.endswith("/"):
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.size = 5
                tf.addfile(ti, io.BytesIO(b"deep\n"))
    return buf.getvalue()


def test_unpack_deep_layer_and_clear_error_past_path_max(tmp_path: Path) -> None:
    dirs = ["d/" * i for i in range(1, 1501)]
    t0 = time.monotonic()
    apply_layer(io.BytesIO(_tar([*dirs, dirs[-1] + "f"])), tmp_path / "ok")
    assert time.monotonic() - t0 < 30  # not one lookup from the root per level per entry
    assert fstree.tree_size(tmp_path / "ok") == 5
    too_deep = ["d/" * i for i in range(1, PATH_MAX // 2 + 10)]
    with pytest.raises(LayerError, match="PATH_MAX"):
        apply_layer(io.BytesIO(_tar(too_deep)), tmp_path / "bad")
    fstree.rmtree(tmp_path / "bad")


# --- through the real entry point -------------------------------------------------------------------

@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    make_busybox_image(r, tmp_path)
    return r


@pytest.mark.needs_root
@pytest.mark.needs_overlay
def test_context_3000_deep_is_a_clear_error_not_a_crash(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nCOPY . /x\n"})
    _deep(ctx, 3000)
    r = build(root, ctx)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1, err[-3000:]
    assert "internal error" not in err and "Recursion" not in err
    msg = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(msg) == 1 and "PATH_MAX" in msg[0] and msg[0].startswith("Dockerfile:2:"), msg
    assert len(msg[0]) < 400  # the path is abbreviated, not 6000 bytes of d/d/d
    assert not any((root / "tmp").iterdir()) if (root / "tmp").exists() else True


@pytest.mark.needs_root
@pytest.mark.needs_overlay
def test_trees_deeper_than_the_recursion_limit_build(root: Path, tmp_path: Path) -> None:
    depth = 1100  # past Python's recursion limit (1000), well within PATH_MAX
    ctx = write_ctx(tmp_path / "ctx", {
        ".dockerignore": "**/*.tmp\n!keep.tmp\n",
        "Dockerfile": (
            "FROM busybox AS a\n"
            "COPY . /x\n"
            f"RUN test \"$(cat $(find /x -name f))\" = deep && mkdir /y && cd /y && i=0;"
            f" while [ $i -lt {depth} ]; do mkdir e; cd e; i=$((i+1)); done; echo made > g\n"
            "FROM busybox\n"
            "COPY --from=a /x /x2\n"
            "COPY --from=a /y /y2\n"
            "RUN find /x2 /y2 -type f | wc -l > /count\n"),
    })
    _deep(ctx, depth)
    r = build(root, ctx, "-t", "deep")
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, err[-3000:]
    validate_layout(root, "deep")
    r = run_cli("run", "--rm", "deep", "sh", "-c", "cat /count; cat $(find /y2 -name g)",
                env={"PYBUILD_ROOT": str(root)})
    assert r.returncode == 0 and r.stdout.split() == [b"4", b"made"], r  # Dockerfile, .dockerignore, f, g
    # and it all goes away again: rmi + prune delete the deep snapshots
    assert run_cli("rmi", "deep", env={"PYBUILD_ROOT": str(root)}).returncode == 0
    r = run_cli("prune", "--grace", "0", env={"PYBUILD_ROOT": str(root)})
    assert r.returncode == 0, r.stderr


@pytest.mark.needs_root
@pytest.mark.needs_overlay
def test_run_making_a_tree_past_path_max_is_a_clear_error(root: Path, tmp_path: Path) -> None:
    n = PATH_MAX // 2 + 50
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": (
        f"FROM busybox\nRUN i=0; while [ $i -lt {n} ]; do mkdir e && cd e || break; i=$((i+1)); done; echo x > g\n")})
    r = build(root, ctx)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1, err[-3000:]
    assert "internal error" not in err
    msg = [ln for ln in err.splitlines() if ln.startswith("Dockerfile:2:")]
    assert msg and "PATH_MAX" in msg[0] and len(msg[0]) < 400, err[-2000:]
    # the failed step's upper directory does not stay behind under tmp/
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = [p.name for p in (root / "tmp").iterdir() if p.name.startswith(("snap-", "trash-"))]
        if not left:
            break
        time.sleep(0.2)
    assert not left, left


def test_runtime_copy_and_merge_deep_trees(tmp_path: Path) -> None:
    # the no-overlayfs fallback and `pybuild bundle` flatten layers with runtime.copytree
    from runtime.copytree import copy_tree, merge_layers
    src = tmp_path / "src"
    src.mkdir()
    _deep(src, 1500)
    copy_tree(str(src), str(tmp_path / "copy"))
    merge_layers([str(src), str(src)], str(tmp_path / "merged"))
    assert fstree.tree_size(tmp_path / "copy") == 5 == fstree.tree_size(tmp_path / "merged")
    merge_layers([str(src)], str(tmp_path / "copy"))  # replaces the deep tree in place
    assert fstree.tree_size(tmp_path / "copy") == 5
    from runtime.copytree import walk
    from runtime.fallback import manifest
    assert len(list(walk(str(src)))) == 1501 == len(list(walk(str(src), topdown=False)))
    assert len(manifest(str(src))) == 1501  # the no-overlayfs fallback's change detection
