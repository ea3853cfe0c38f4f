"""Cache hit/miss sequences: what invalidates which steps, and what must not."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.buildlib import build, make_busybox_image, steps, validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]

DOCKERFILE = """FROM busybox
RUN echo base-step > /base
COPY a.txt /a.txt
ARG FLAVOR=plain
RUN echo flavor=$FLAVOR > /flavor
COPY b.txt /b.txt
RUN cat /a.txt /b.txt > /ab
"""


@pytest.fixture
def setup(tmp_path: Path):
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": DOCKERFILE, "a.txt": "A\n", "b.txt": "B\n",
                                       "ignored.log": "x", ".dockerignore": "*.log\n"})
    r = build(root, ctx, "-t", "c")
    assert r.returncode == 0, r.stderr.decode()
    assert [res for _, res in steps(r.stderr)][1:] == ["DONE"] * 5
    return root, ctx


def results(r) -> list[str]:
    assert r.returncode == 0, r.stderr.decode()
    return [res for _, res in steps(r.stderr)][1:]  # without FROM


def test_nothing_changed_all_hit(setup) -> None:
    root, ctx = setup
    assert results(build(root, ctx, "-t", "c")) == ["CACHED"] * 5


def test_edit_one_file_misses_from_its_copy_on(setup) -> None:
    root, ctx = setup
    (ctx / "b.txt").write_text("B2\n")
    assert results(build(root, ctx, "-t", "c")) == ["CACHED", "CACHED", "CACHED", "DONE", "DONE"]
    validate_layout(root, "c")


def test_touch_without_change_still_hits(setup) -> None:
    root, ctx = setup
    import os

    os.utime(ctx / "a.txt", (1, 1))  # mtime is not content
    assert results(build(root, ctx, "-t", "c")) == ["CACHED"] * 5


def test_edit_ignored_file_all_hit(setup) -> None:
    root, ctx = setup
    (ctx / "ignored.log").write_text("changed")
    assert results(build(root, ctx, "-t", "c")) == ["CACHED"] * 5


def test_build_arg_misses_at_first_use(setup) -> None:
    root, ctx = setup
    assert results(build(root, ctx, "-t", "c", "--build-arg", "FLAVOR=spicy")) == \
        ["CACHED", "CACHED", "DONE", "DONE", "DONE"]
    # and an unconsumed build arg changes nothing
    assert results(build(root, ctx, "-t", "c", "--build-arg", "FLAVOR=spicy", "--build-arg", "UNUSED=1")) == \
        ["CACHED"] * 5


def test_proxy_args_do_not_invalidate(setup) -> None:
    root, ctx = setup
    assert results(build(root, ctx, "-t", "c", "--build-arg", "HTTP_PROXY=http://proxy:3128")) == ["CACHED"] * 5


def test_no_cache_and_no_cache_filter(setup, tmp_path: Path) -> None:
    root, ctx = setup
    assert results(build(root, ctx, "-t", "c", "--no-cache")) == ["DONE"] * 5
    (ctx / "Dockerfile").write_text("FROM busybox AS one\nRUN echo 1 > /1\nFROM busybox AS two\nRUN echo 2 > /2\n"
                                    "COPY --from=one /1 /1\n")
    build(root, ctx)
    r = build(root, ctx, "--no-cache-filter", "two")
    got = dict(steps(r.stderr))
    assert got["RUN echo 1 > /1"] == "CACHED" and got["RUN echo 2 > /2"] == "DONE"


def test_cache_explain_names_the_changed_field(setup) -> None:
    root, ctx = setup
    (ctx / "b.txt").write_text("B3\n")
    r = run_cli("cache", "explain", str(ctx), env={"PYBUILD_ROOT": str(root)})
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    lines = out.splitlines()
    copy_b = next(ln for ln in lines if "COPY b.txt" in ln)
    assert "miss" in copy_b and "inputs[0]" in copy_b, out
    run_ab = next(ln for ln in lines if "RUN cat" in ln)
    assert "miss" in run_ab and "parent" in run_ab, out
    assert "hit" in next(ln for ln in lines if "COPY a.txt" in ln)


def test_cache_ls_and_prune(setup) -> None:
    root, _ctx = setup
    env = {"PYBUILD_ROOT": str(root)}
    r = run_cli("cache", "ls", env=env)
    assert r.returncode == 0 and r.stdout.decode().count("\n") >= 5, r.stdout.decode()
    snaps = lambda: sorted(p.name for p in (root / "snapshots").iterdir()  # noqa: E731
                           if p.name != "empty" and not p.name.startswith("."))  # not the lease files
    before = snaps()
    assert len(before) >= 6  # busybox + 5 steps
    stray = root / "snapshots" / ("f" * 64)
    stray.mkdir()  # a snapshot nothing names any more
    r = run_cli("cache", "prune", env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert snaps() == before  # records and the tagged images still name these
    r = run_cli("cache", "prune", "--all", env=env)
    assert r.returncode == 0, r.stderr.decode()
    r = run_cli("cache", "ls", env=env)
    assert len(r.stdout.decode().strip().splitlines()) <= 1  # header only
    assert snaps() == []
    # and the next build still works (snapshots come back from the layer blobs)
    assert results(build(root, _ctx, "-t", "c")) == ["DONE"] * 5


def test_local_cache_export_import(setup, tmp_path: Path) -> None:
    root, ctx = setup
    exp = tmp_path / "cache-export"
    r = build(root, ctx, "-t", "c", "--cache-to", f"type=local,dest={exp}")
    assert r.returncode == 0, r.stderr.decode()
    assert (exp / "index.json").is_file()
    fresh = tmp_path / "fresh"
    make_busybox_image(fresh, tmp_path / "f")
    r = build(fresh, ctx, "-t", "c", "--cache-from", f"type=local,src={exp}")
    assert results(r) == ["CACHED"] * 5
    validate_layout(fresh, "c")


def test_noop_memo_notices_base_and_tag_changes(setup, tmp_path: Path) -> None:
    root, ctx = setup
    # the tag moved away from our image: the no-op path must put it back
    run_cli("tag", "busybox", "c", env={"PYBUILD_ROOT": str(root)})
    assert results(build(root, ctx, "-t", "c")) == ["CACHED"] * 5
    img = validate_layout(root, "c")
    assert len(img["manifest"]["layers"]) == 6  # our image again, not busybox
    # the base tag now names another image: everything misses
    other = write_ctx(tmp_path / "other", {"Dockerfile": "FROM busybox\nRUN touch /marker\n"})
    assert build(root, other, "-t", "busybox").returncode == 0
    assert results(build(root, ctx, "-t", "c")) == ["DONE"] * 5


def test_noop_with_a_new_tag_still_tags(setup) -> None:
    root, ctx = setup
    assert results(build(root, ctx, "-t", "c", "-t", "second:v2")) == ["CACHED"] * 5
    a, b = validate_layout(root, "c"), validate_layout(root, "second:v2")
    assert a["digest"] == b["digest"]
    r = build(root, ctx, "-t", "Not:A:Tag")
    assert r.returncode == 2 and b"invalid tag" in r.stderr
