"""Hostile tar streams by every door: ADD of a local tar, a layer pulled from a registry, `pybuild load`.

Each archive (`../` names, absolute names, symlink-then-file, hardlinks to host paths, a symlink
overwritten by a file, a hardlink through a symlink) aims at a host Canary. Whatever the door, the
build either refuses with a one-line error (exit 1, no traceback) or contains every entry inside
the image; the canary is never read, changed or copied into the store.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.fixtures.registry import docker_config, registry  # noqa: F401
from tests.integration.buildlib import build, make_busybox_image, write_ctx
from tests.security.hostile import Canary, hostile_tars, image_with_raw_layer

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]

KINDS = ["dotdot", "absolute", "symlink-then-file", "relative-symlink-then-file", "hardlink-to-outside",
         "hardlink-dotdot", "symlink-file-overwrite", "hardlink-via-symlink"]


def _clean(r, what: str) -> None:
    err = r.stderr.decode(errors="replace")
    assert "Traceback" not in err and "internal error" not in err, err
    assert r.returncode in (0, 1), f"{what}: exit {r.returncode}: {err}"
    if r.returncode == 1:
        assert [ln for ln in err.splitlines() if "error:" in ln], err


@pytest.fixture
def env(tmp_path: Path):
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    return root, Canary(tmp_path)


@pytest.mark.parametrize("kind", KINDS)
def test_add_hostile_tar(env, tmp_path: Path, kind: str) -> None:
    root, canary = env
    tar = hostile_tars(canary)[kind]
    ctx = write_ctx(tmp_path / "ctx", {"evil.tar": tar,
                                       "Dockerfile": "FROM busybox\nADD evil.tar /dest/\nRUN ls -laR /dest\n"})
    r = build(root, ctx, "-t", "t")
    _clean(r, "ADD")
    canary.assert_untouched(root)
    if r.returncode == 0:  # contained: export the image and check again
        x = run_cli("export", "t", "-o", str(tmp_path / "flat.tar"), env={"PYBUILD_ROOT": str(root)})
        _clean(x, "export")
        canary.assert_untouched(root)


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_layer_from_load(env, tmp_path: Path, kind: str) -> None:
    root, canary = env
    image_with_raw_layer(root, "busybox", "evil", hostile_tars(canary)[kind])
    e = {"PYBUILD_ROOT": str(root)}
    for fmt, name in (("oci", "evil-oci.tar"), ("docker-archive", "evil-docker.tar")):
        s = run_cli("save", "--format", fmt, "-o", str(tmp_path / name), "evil", env=e)
        assert s.returncode == 0, s.stderr.decode()
        other = tmp_path / f"other-{fmt}"
        e2 = {"PYBUILD_ROOT": str(other)}
        r = run_cli("load", "-i", str(tmp_path / name), env=e2)
        _clean(r, "load")
        canary.assert_untouched(other)
        if r.returncode == 0:
            ctx = write_ctx(tmp_path / f"ctx-{fmt}", {"Dockerfile": "FROM evil\nRUN ls -la / > /dev/null\n"})
            _clean(build(other, ctx), "build FROM loaded")
            _clean(run_cli("export", "evil", "-o", str(tmp_path / f"flat-{fmt}.tar"), env=e2), "export")
        canary.assert_untouched(other)


@pytest.mark.registry
@pytest.mark.parametrize("kind", KINDS)
def test_hostile_layer_from_registry(env, registry, docker_config, tmp_path: Path, kind: str) -> None:
    root, canary = env
    image_with_raw_layer(root, "busybox", "evil", hostile_tars(canary)[kind])
    ref = registry.ref(f"evil/{kind}")
    p = run_cli("push", "evil", ref, env={"PYBUILD_ROOT": str(root)})
    assert p.returncode == 0, p.stderr.decode()
    other = tmp_path / "other"
    e2 = {"PYBUILD_ROOT": str(other)}
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": f"FROM {ref}\nRUN ls -la / > /dev/null\n"})
    _clean(build(other, ctx), "build FROM registry")  # pulls the base, then unpacks it for RUN
    canary.assert_untouched(other)
    _clean(run_cli("pull", ref, env=e2), "pull")
    _clean(run_cli("export", ref, "-o", str(tmp_path / "flat.tar"), env=e2), "export")
    canary.assert_untouched(other)


def test_add_tar_with_an_inner_hardlink_still_extracts(env, tmp_path: Path) -> None:
    """The hardlink check refuses links out of the archive, not links inside it."""
    from tests.security.hostile import Entry, tar_bytes
    import tarfile

    root, canary = env
    tar = tar_bytes([Entry("d/a", data=b"same"), Entry("d/b", tarfile.LNKTYPE, linkname="d/a")])
    ctx = write_ctx(tmp_path / "ctx", {"ok.tar": tar, "Dockerfile": "FROM busybox\nADD ok.tar /x/\n"
                                       "RUN test \"$(cat /x/d/b)\" = same\n"})
    r = build(root, ctx)
    assert r.returncode == 0, r.stderr.decode()
    canary.assert_untouched(root)


def test_add_tar_fifo_then_file_does_not_hang(env, tmp_path: Path) -> None:
    """A FIFO, then a regular file of the same name: extracting must replace it, not open it
    for writing (which blocks forever)."""
    from tests.security.hostile import Entry, tar_bytes
    import tarfile

    root, canary = env
    tar = tar_bytes([Entry("p", tarfile.FIFOTYPE), Entry("p", data=b"file now"),
                     Entry("s", tarfile.SYMTYPE, linkname="p"), Entry("s", data=b"not through the link")])
    ctx = write_ctx(tmp_path / "ctx", {"t.tar": tar, "Dockerfile": "FROM busybox\nADD t.tar /x/\n"
                                       "RUN test \"$(cat /x/p)\" = 'file now' && test ! -L /x/s\n"})
    r = build(root, ctx)  # run_cli's timeout turns a hang into a failure
    assert r.returncode == 0, r.stderr.decode()
    canary.assert_untouched(root)


def test_layer_dir_then_symlink_does_not_chmod_the_host(env, tmp_path: Path) -> None:
    """`d/` (0777) then `d -> <host dir>` in one layer: the directory-mode fix-up at the end of
    apply_layer must not follow the link and chmod the host directory."""
    import tarfile

    from builder.layers.unpack import apply_layer
    from tests.security.hostile import Entry, tar_bytes

    _, canary = env
    os.chmod(canary.subdir, 0o700)
    canary._stat = canary._snapshot()
    layer = tar_bytes([Entry("d", tarfile.DIRTYPE, mode=0o777),
                       Entry("d", tarfile.SYMTYPE, linkname=str(canary.subdir)),
                       Entry("p/q", tarfile.DIRTYPE, mode=0o777), Entry("p", tarfile.SYMTYPE, linkname=str(canary.dir))])
    for mode in ("delete", "overlay"):
        apply_layer(io.BytesIO(layer), tmp_path / f"unpacked-{mode}", whiteouts=mode)
        assert oct(canary.subdir.stat().st_mode & 0o7777) == "0o700"
        canary.assert_untouched()
