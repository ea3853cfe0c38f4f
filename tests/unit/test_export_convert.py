"""Pure parts of issue 19 item 4: `-o` specs as buildx reads them, and re-encoding an image's
layers (compression, media types, annotations) deterministically; and the content digests
that key `COPY --from` (item 3) ignoring mtimes but nothing else."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from builder.commands.outputs import annotations, parse_output, parse_outputs
from builder.engine.contentkey import ContentMemo, source_digest, stage_inputs, tree_digest
from builder.engine.fsview import LayeredFS
from builder.errors import UsageError
from builder.layers.tarball import write_layer
from builder.oci import mediatypes as mt
from builder.oci.config import History, ImageConfig
from builder.layers.convert import convert_image
from builder.oci.image import write_image
from builder.oci.model import Manifest
from builder.oci.store import DirStore


@pytest.mark.parametrize("spec,want", [
    ("out", {"type": "local", "dest": "out"}),
    ("-", {"type": "tar", "dest": "-"}),
    ("type=oci,dest=x.tar,NAME=a:1", {"type": "oci", "dest": "x.tar", "name": "a:1"}),
    ('type=oci,dest=x,"annotation.org.k=a,b"', {"type": "oci", "dest": "x", "annotation.org.k": "a,b"}),
    ("type=oci,dest=d,tar=FALSE", {"type": "oci", "dest": "d", "tar": "false"}),
    ("type=image,name=a,push=true", {"type": "image", "name": "a", "push": "true"}),
])
def test_parse_output_as_buildx(spec: str, want: dict) -> None:
    assert parse_output(spec) == want


@pytest.mark.parametrize("spec,msg", [
    ("type=oci,dest=x,foo=1", "unknown key 'foo'"),
    ("type=oci,dest", "invalid value 'dest'"),
    ("type=tar", "needs dest"),
    ("type=oci,dest=x,compression=estargz", "compression must be"),
    ("type=oci,dest=x,compression-level=x", "compression-level for gzip"),
])
def test_parse_output_errors(spec: str, msg: str) -> None:
    with pytest.raises(UsageError, match=msg):
        parse_output(spec)


def test_one_stdout_only() -> None:
    with pytest.raises(UsageError, match="only one output"):
        parse_outputs(["-", "type=oci,dest=-"])


def test_annotation_targets() -> None:
    o = parse_output("type=oci,dest=x,annotation.a=1,annotation-manifest.b=2,annotation-manifest-descriptor.c=3")
    assert annotations(o) == ({"a": "1", "b": "2"}, {"c": "3"})


def _image(tmp_path: Path, compression: str) -> tuple[DirStore, object]:
    src = tmp_path / "tree"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(os.urandom(5000) + bytes(100_000))
    store = DirStore(tmp_path / "store")
    info = write_layer(src, store, compression=compression, source_date_epoch=1)
    cfg = ImageConfig(architecture="amd64", os="linux").with_layer(info.diff_id, History(created_by="x"))
    return store, write_image(store, cfg, [info.descriptor])


def test_convert_round_trip_is_deterministic(tmp_path: Path) -> None:
    store, desc = _image(tmp_path, "gzip")
    orig = Manifest.from_json(store.read_bytes(desc.digest))
    z = convert_image(store, desc, compression="zstd", memo_dir=tmp_path / "memo", tmp_dir=tmp_path / "t")
    zm = Manifest.from_json(store.read_bytes(z.digest))
    assert zm.layers[0].media_type == mt.OCI_LAYER_ZSTD and zm.config == orig.config
    assert store.read_bytes(zm.layers[0].digest)[:4] == b"\x28\xb5\x2f\xfd"
    back = convert_image(store, z, compression="gzip")  # no memo: really re-compressed
    assert back.digest == desc.digest  # same bytes as the original build: fixed parameters
    again = convert_image(store, desc, compression="zstd", memo_dir=tmp_path / "memo")
    assert again.digest == z.digest
    assert convert_image(store, desc, compression="gzip") == desc  # nothing to do: the same image
    lvl = convert_image(store, desc, compression="gzip", level=1, force=True)
    assert lvl.digest != desc.digest  # forced: re-compressed at another level
    docker = convert_image(store, desc, oci_mediatypes=False, annotations={"k": "v"})
    dm = Manifest.from_json(store.read_bytes(docker.digest))
    assert dm.media_type == mt.DOCKER_MANIFEST and dm.layers[0].media_type == mt.DOCKER_LAYER_GZIP
    assert dm.layers[0].digest == orig.layers[0].digest and dm.config.media_type == mt.DOCKER_CONFIG
    assert dm.annotations == {"k": "v"}


def _tree(root: Path, body: bytes = b"out\n", mtime: int = 1000) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True, exist_ok=True)
    f = root / "pkg" / "sub" / "out"
    f.write_bytes(body)
    os.symlink("sub/out", root / "pkg" / "link")
    os.utime(f, (mtime, mtime))
    return root


def test_content_digest_ignores_mtime_only(tmp_path: Path) -> None:
    a = LayeredFS([_tree(tmp_path / "a", mtime=1000)])
    b = LayeredFS([_tree(tmp_path / "b", mtime=2000)])
    assert tree_digest(a, "/pkg") == tree_digest(b, "/pkg")
    c = _tree(tmp_path / "c", body=b"other\n")
    assert tree_digest(LayeredFS([c]), "/pkg") != tree_digest(a, "/pkg")
    d = _tree(tmp_path / "d")
    os.chmod(d / "pkg" / "sub" / "out", 0o4755)
    assert tree_digest(LayeredFS([d]), "/pkg") != tree_digest(a, "/pkg")
    e = _tree(tmp_path / "e")
    os.unlink(e / "pkg" / "link")
    os.symlink("sub/other", e / "pkg" / "link")
    assert tree_digest(LayeredFS([e]), "/pkg") != tree_digest(a, "/pkg")
    assert source_digest(a, "/nope") == "missing"
    assert source_digest(a, "/pkg/sub/o*") != source_digest(a, "/pkg/sub/out")  # the match is named


def test_content_digest_sees_through_layers_and_whiteouts(tmp_path: Path) -> None:
    lower = _tree(tmp_path / "lower")
    upper = tmp_path / "upper"
    (upper / "pkg" / "sub").mkdir(parents=True)
    (upper / "pkg" / "sub" / "out").write_bytes(b"newer\n")
    merged = tree_digest(LayeredFS([upper, lower]), "/pkg")
    flat = _tree(tmp_path / "flat", body=b"newer\n")
    assert merged == tree_digest(LayeredFS([flat]), "/pkg")


def test_stage_inputs_memoized_by_chain(tmp_path: Path) -> None:
    fs = LayeredFS([_tree(tmp_path / "a")])
    memo = ContentMemo(tmp_path / "cache", tmp_path / "tmp")
    calls = []

    def view():
        calls.append(1)
        return fs
    first = stage_inputs(("sha256:" + "1" * 64,), ["/pkg"], memo, view)
    again = stage_inputs(("sha256:" + "1" * 64,), ["/pkg"], memo, view)
    assert first == again and first[0].startswith("content:/pkg=sha256:") and len(calls) == 1


def test_content_digest_of_a_tree_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    import sys

    root = tmp_path / "deep"
    d = root / "pkg"
    p = d
    for _ in range(300):
        p = p / "d"
    p.mkdir(parents=True)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(150)  # a tree deeper than the limit (as 1000+ levels would be normally)
    try:
        got = tree_digest(LayeredFS([root]), "/pkg")
    finally:
        sys.setrecursionlimit(limit)
    assert got.startswith("sha256:")
    shutil.rmtree(d)
