"""engine/copyshare.py: what a copy read of its base is written down, and replayed exactly.

The end-to-end property (each platform's image = its single-platform build) is checked in
tests/integration/test_multiplatform_copyshare.py; these check the recording itself.
"""
from __future__ import annotations

import os
from pathlib import Path

from builder.engine.copyshare import RecordingFS, share_key
from builder.engine.fsview import copy_up
from builder.plan import cachekey as ck
from builder.plan.graph import CopyOp


def _base(d: Path, usr_mode: int = 0o755, passwd: str = "app:x:1000:1000::/:/bin/sh\n", usr_link: bool = False,
          mtime: int = 1_600_000_000) -> str:
    (d / "etc").mkdir(parents=True)
    (d / "etc" / "passwd").write_text(passwd)
    if usr_link:
        (d / "opt").mkdir()
        os.symlink("/opt", d / "usr")
    else:
        (d / "usr" / "local").mkdir(parents=True)
        os.chmod(d / "usr", usr_mode)
        os.utime(d / "usr", (mtime, mtime))
    (d / "arch").write_text(d.name)  # bases differ in a path the copy never reads
    for p in ("etc/passwd", "etc", "usr/local", "opt"):
        if (d / p).exists():
            os.utime(d / p, (1_600_000_000, 1_600_000_000))
    return str(d)


def _record(tmp: Path, base: str) -> RecordingFS:
    upper = tmp / "upper"
    upper.mkdir()
    fs = RecordingFS(upper, [base])
    fs.read_file("/etc/passwd")  # what --chown=name reads, before anything is written
    copy_up(fs, upper, fs.resolve("/usr/local/bin", follow_last=False))
    return fs


def test_the_same_answers_match_and_any_difference_does_not(tmp_path: Path) -> None:
    fs = _record(tmp_path, _base(tmp_path / "a"))
    fp = fs.footprint
    assert fp.complete and ("usr",) in fp.lookups and "/etc/passwd" in fp.reads
    assert not any(k == ("arch",) for k in fp.lookups)
    assert fp.matches([_base(tmp_path / "b")])  # differs only in /arch
    assert not fp.matches([_base(tmp_path / "c", usr_mode=0o700)])  # copied-up parent's mode
    assert not fp.matches([_base(tmp_path / "d", mtime=1_600_000_060)])  # … and its mtime
    assert not fp.matches([_base(tmp_path / "e", usr_link=True)])  # a symlink on the way
    assert not fp.matches([_base(tmp_path / "f", passwd="app:x:2000:2000::/:/bin/sh\n")])  # --chown's lookup


def test_a_layer_above_decides_like_the_stack_does(tmp_path: Path) -> None:
    fs = _record(tmp_path, _base(tmp_path / "a"))
    top = tmp_path / "top"
    (top / "usr").mkdir(parents=True)
    os.chmod(top / "usr", 0o700)  # a later layer of the other base changes /usr's mode
    assert not fs.footprint.matches([str(top), _base(tmp_path / "b")])
    wh = tmp_path / "wh"
    wh.mkdir()
    os.mknod(wh / "usr", 0o600 | 0o020000, os.makedev(0, 0)) if os.geteuid() == 0 else None
    if os.geteuid() == 0:  # a whiteout hides /usr: the copy would create it instead
        assert not fs.footprint.matches([str(wh), _base(tmp_path / "c")])


def test_reading_through_a_written_upper_is_not_replayable(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    fs = RecordingFS(upper, [_base(tmp_path / "a")])
    (upper / "etc").mkdir()
    (upper / "etc" / "passwd").write_text("x:x:5:5::/:/bin/sh\n")
    fs.read_file("/etc/passwd")
    assert not fs.footprint.complete and not fs.footprint.matches([_base(tmp_path / "b")])


def test_share_key_leaves_out_the_base_and_platform_only() -> None:
    op = CopyOp(sources=("f",), dest="/x/")
    pre = lambda parent, plat, dest="/x/": ck.make_key("copy", parent, ck.copy_op(op, dest=dest, platform=plat),  # noqa: E731
                                                       ["f:sha256:1"]).pre_image
    k = share_key(op, pre("sha256:a", "linux/amd64"), workdir="/", compression="gzip", source_date_epoch=None)
    assert k == share_key(op, pre("sha256:b", "linux/arm64"), workdir="/", compression="gzip", source_date_epoch=None)
    assert k != share_key(op, pre("sha256:a", "linux/amd64", "/y/"), workdir="/", compression="gzip",
                          source_date_epoch=None)
    assert k != share_key(op, pre("sha256:a", "linux/amd64"), workdir="/w", compression="gzip", source_date_epoch=None)
    assert k != share_key(op, pre("sha256:a", "linux/amd64"), workdir="/", compression="zstd", source_date_epoch=None)
    assert k != share_key(op, pre("sha256:a", "linux/amd64"), workdir="/", compression="gzip", source_date_epoch=1)
    from builder.plan.graph import CopyFrom

    other = CopyOp(sources=("f",), dest="/x/", source_from=CopyFrom(stage=0))
    assert share_key(other, pre("sha256:a", "linux/amd64"), workdir="/", compression="gzip",
                     source_date_epoch=None) is None
