"""Property tests: random trees survive write → read → apply unchanged, and mutated archives
either apply or fail with a LayerError — never another exception, never a write outside root."""
from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from builder.errors import LayerError
from builder.layers.tarball import write_tar
from builder.layers.tarread import TarReader
from builder.layers.unpack import apply_layer

NAME = st.text(alphabet=st.sampled_from("abcXYZ09-_. ñü日"), min_size=1, max_size=40).filter(
    lambda s: s not in (".", "..") and not s.startswith(".wh."))
TREE = st.dictionaries(st.lists(NAME, min_size=1, max_size=4).map(tuple),
                       st.tuples(st.binary(max_size=3000), st.sampled_from([0o644, 0o600, 0o755, 0o4755, 0o1777])),
                       max_size=12)


def materialise(root: Path, spec: dict) -> None:
    root.mkdir()
    for parts, (data, mode) in sorted(spec.items()):
        p = root.joinpath(*parts)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.exists():
                continue
            p.write_bytes(data)
            os.chmod(p, mode)
        except (NotADirectoryError, FileExistsError, IsADirectoryError):
            continue  # a name used both as file and directory: keep the first


def snapshot(root: Path) -> dict:
    out = {}
    for p in root.rglob("*"):
        st_ = p.lstat()
        out[str(p.relative_to(root))] = (st_.st_mode, p.read_bytes() if p.is_file() else None)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=TREE, padding=st.integers(1, 200))
def test_random_trees_round_trip(spec, padding):
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / ("p" * padding) / "src"  # long absolute paths must not matter
        src.parent.mkdir()
        materialise(src, spec)
        buf = io.BytesIO()
        diff_id, _ = write_tar(src, buf)
        data = buf.getvalue()
        r = TarReader(io.BytesIO(data))
        names = []
        for e in r:
            b"".join(r.data())
            names.append(e.name)
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            assert names == [m.name + ("/" if m.isdir() else "") for m in t]
        dst = Path(d) / "dst"
        assert apply_layer(io.BytesIO(data), dst) == diff_id
        assert snapshot(dst) == snapshot(src)


BASE = None


def base_archive() -> bytes:
    global BASE
    if BASE is None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for name, kind, payload in [("d", "dir", ""), ("d/f", "file", "hello"), ("d/ln", "sym", "../outside"),
                                        ("h", "link", "d/f"), ("d/.wh.f", "file", ""), ("n" * 150, "file", "x" * 700)]:
                ti = tarfile.TarInfo(name)
                if kind == "file":
                    ti.size = len(payload)
                    t.addfile(ti, io.BytesIO(payload.encode()))
                    continue
                ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "link": tarfile.LNKTYPE}[kind]
                ti.linkname = payload
                t.addfile(ti)
        BASE = buf.getvalue()
    return BASE


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_archives_fail_cleanly_and_stay_inside(mutations):
    data = bytearray(base_archive())
    for pos, val in mutations:
        data[pos % len(data)] = val
    with tempfile.TemporaryDirectory() as d:
        root, canary = Path(d) / "root", Path(d) / "canary"
        canary.mkdir()
        (canary / "keep").write_text("x")
        try:
            apply_layer(io.BytesIO(bytes(data)), root, devices="reject")
        except LayerError:
            pass
        assert sorted(os.listdir(d)) == ["canary", "root"]
        assert os.listdir(canary) == ["keep"]
