"""BuildContext: .dockerignore applied to a real tree, source selection, content digests, stat cache."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from builder.context import BuildContext, StatCache, read_ignore_patterns, unpack_context_tar
from builder.errors import ContextError


def make_tree(root: Path) -> None:
    for rel, data in {"a.txt": "a", "b.go": "b", "docs/README.md": "r", "docs/x.md": "x",
                      "src/main.c": "m", "src/sub/deep.c": "d", "node_modules/p/i.js": "j"}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(data)


def test_walk_respects_ignore_and_exceptions(tmp_path: Path) -> None:
    make_tree(tmp_path)
    ctx = BuildContext(tmp_path, read_ignore_patterns("docs\n!docs/README.md\nnode_modules\n*.go\n"))
    rels = [s.rel for s in ctx.walk()]
    assert "docs/README.md" in rels and "docs/x.md" not in rels
    assert not any(r.startswith("node_modules") for r in rels)
    assert "b.go" not in rels and "a.txt" in rels
    assert rels == sorted(rels, key=lambda r: r.split("/"))  # depth-first, sorted by component
    assert rels.index("src") < rels.index("src/main.c")


def test_select_plain_wildcard_and_missing(tmp_path: Path) -> None:
    make_tree(tmp_path)
    ctx = BuildContext(tmp_path, ["*.go"])
    assert [s.rel for s in ctx.select("src")] == ["src"]
    assert [s.rel for s in ctx.select("src/*.c")] == ["src/main.c"]
    assert [s.rel for s in ctx.select("*.txt")] == ["a.txt"]
    with pytest.raises(ContextError) as e:
        ctx.select("b.go")
    assert e.value.hint and ".dockerignore" in e.value.hint
    with pytest.raises(ContextError):
        ctx.select("nope")
    # '..' cannot climb out of the context
    with pytest.raises(ContextError):
        ctx.select("../../etc/passwd")


def test_digest_content_and_metadata_not_mtime(tmp_path: Path) -> None:
    make_tree(tmp_path)
    ctx = BuildContext(tmp_path, [])
    d1 = ctx.digest(ctx.select("src")[0])
    os.utime(tmp_path / "src/main.c", (1, 1))
    assert BuildContext(tmp_path, []).digest(ctx.select("src")[0]) == d1  # mtime does not count
    os.chmod(tmp_path / "src/main.c", 0o755)
    d2 = BuildContext(tmp_path, []).digest(ctx.select("src")[0])
    assert d2 != d1  # mode counts
    (tmp_path / "src/sub/deep.c").write_text("changed")
    assert BuildContext(tmp_path, []).digest(ctx.select("src")[0]) != d2
    # an ignored file never changes the digest
    ctx_ign = BuildContext(tmp_path, ["src/sub"])
    d3 = ctx_ign.digest(ctx_ign.select("src")[0])
    (tmp_path / "src/sub/deep.c").write_text("changed again")
    assert BuildContext(tmp_path, ["src/sub"]).digest(ctx_ign.select("src")[0]) == d3


def test_stat_cache_skips_reads_and_notices_changes(tmp_path: Path) -> None:
    make_tree(tmp_path)
    cache_file = tmp_path.parent / (tmp_path.name + "-stat.json")
    sc = StatCache.load(cache_file)
    ctx = BuildContext(tmp_path, [], sc)
    d1 = ctx.digest(ctx.select(".")[0])
    assert sc.reads == 7
    sc.save()
    sc2 = StatCache.load(cache_file)
    ctx2 = BuildContext(tmp_path, [], sc2)
    assert ctx2.digest(ctx2.select(".")[0]) == d1
    assert sc2.reads == 0
    (tmp_path / "a.txt").write_text("new content")
    sc3 = StatCache.load(cache_file)
    ctx3 = BuildContext(tmp_path, [], sc3)
    assert ctx3.digest(ctx3.select(".")[0]) != d1
    assert sc3.reads == 1


def test_stat_cache_vouches_for_xattrs_and_survives_a_bad_file(tmp_path: Path) -> None:
    make_tree(tmp_path)
    cache_file = tmp_path.parent / (tmp_path.name + "-stat.marshal")
    cache_file.write_text('{"an older": "JSON cache"}')
    sc = StatCache.load(cache_file)
    assert sc.entries == {}  # unreadable: empty, rewritten on save
    ctx = BuildContext(tmp_path, [], sc)
    d1 = ctx.digest(ctx.select(".")[0])
    sc.save()
    try:
        os.setxattr(tmp_path / "a.txt", "user.k", b"v")  # changes ctime, not content or mtime
    except OSError:
        pytest.skip("no user xattrs on this filesystem")
    sc2 = StatCache.load(cache_file)
    ctx2 = BuildContext(tmp_path, [], sc2)
    assert ctx2.digest(ctx2.select(".")[0]) != d1 and sc2.reads == 1
    assert ctx2.known_xattrs(str(tmp_path / "a.txt")) == (("user.k", b"v"),)
    sc2.save()
    sc3 = StatCache.load(cache_file)  # a hit: xattrs from the cache, no read
    ctx3 = BuildContext(tmp_path, [], sc3)
    ctx3.digest(ctx3.select(".")[0])
    assert sc3.reads == 0 and ctx3.known_xattrs(str(tmp_path / "a.txt")) == (("user.k", b"v"),)


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("a\n")
    df = tmp_path / "sub" / "Dockerfile"
    df.parent.mkdir()
    df.write_text("FROM scratch\n")
    assert BuildContext.ignore_file_for(tmp_path, df) == tmp_path / ".dockerignore"
    Path(str(df) + ".dockerignore").write_text("b\n")
    assert BuildContext.ignore_file_for(tmp_path, df) == Path(str(df) + ".dockerignore")


def test_context_tar_is_unpacked_safely(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = b"hello"
        ti = tarfile.TarInfo("app/hello.txt")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    dest = tmp_path / "ctx"
    dest.mkdir()
    unpack_context_tar(buf, dest)
    assert (dest / "app/hello.txt").read_bytes() == b"hello"
    bad = io.BytesIO()
    with tarfile.open(fileobj=bad, mode="w") as tf:
        ti = tarfile.TarInfo("../escape.txt")
        ti.size = 1
        tf.addfile(ti, io.BytesIO(b"x"))
    bad.seek(0)
    with pytest.raises(ContextError):
        unpack_context_tar(bad, dest)
    assert not (tmp_path / "escape.txt").exists()
