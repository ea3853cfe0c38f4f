"""Hostile build contexts and Dockerfiles: nothing outside the context or the image rootfs is read or written.

Each test plants a Canary on the host (a file with random bytes whose atime shows any read, and an
empty directory) and aims a hostile input at it: context symlinks, `COPY ../`, symlinks made by RUN
and then followed by COPY / WORKDIR / `RUN --mount target`, .dockerignore'd secrets. After the build
the canary is byte-, stat- and atime-identical and its secret is in no blob, record or snapshot.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.buildlib import build, layer_files, make_busybox_image, validate_layout, write_ctx
from tests.security.hostile import Canary, store_contains

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


@pytest.fixture
def env(tmp_path: Path):
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    return root, Canary(tmp_path)


def _err(r) -> str:
    return r.stderr.decode(errors="replace")


def _top_layer(root: Path, ref: str) -> dict:
    img = validate_layout(root, ref)
    return layer_files(root, img["manifest"]["layers"][-1]["digest"])


@pytest.mark.parametrize("src", ["link", "dirlink", "rel*"])
def test_context_symlink_to_host_path_is_followed_inside_the_context_only(env, tmp_path: Path, src: str) -> None:
    """A named (or wildcard-matched) context symlink is followed as BuildKit does, with the
    context as its root: one aimed at a host path finds nothing there, and is an error."""
    root, canary = env
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": f"FROM busybox\nCOPY {src} /x/\n"})
    os.symlink(canary.file, ctx / "link")
    os.symlink(canary.dir, ctx / "dirlink")
    os.symlink("../" * 20 + str(canary.file).lstrip("/"), ctx / "relup")
    r = build(root, ctx, "-t", "t")
    assert r.returncode == 1 and "Traceback" not in _err(r), _err(r)
    assert "build context" in _err(r), _err(r)
    canary.assert_untouched(root)


def test_context_symlink_inside_the_context_copies_its_target(env, tmp_path: Path) -> None:
    root, canary = env
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nCOPY link /x\nCOPY d/ /d/\n",
                                       "real.txt": "inside\n", "d/keep": "k"})
    os.symlink("real.txt", ctx / "link")
    os.symlink(canary.file, ctx / "d" / "inner")  # inside a copied tree a symlink stays a symlink
    r = build(root, ctx, "-t", "t")
    assert r.returncode == 0, _err(r)
    layers = validate_layout(root, "t")["manifest"]["layers"]
    copied = layer_files(root, layers[-2]["digest"])
    assert copied["x"].isfile() and copied["x"].size == len("inside\n")
    tree = layer_files(root, layers[-1]["digest"])
    assert tree["d/inner"].issym() and tree["d/inner"].linkname == str(canary.file)
    canary.assert_untouched(root)


def test_copy_through_a_context_dir_symlink_does_not_leave_the_context(env, tmp_path: Path) -> None:
    root, canary = env
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nCOPY dirlink/canary.txt /x\n"})
    os.symlink(canary.dir, ctx / "dirlink")
    r = build(root, ctx)
    assert r.returncode == 1 and "Traceback" not in _err(r), _err(r)
    assert 'not found in build context' in _err(r)
    canary.assert_untouched(root)


@pytest.mark.parametrize("src", ["../host-canary/canary.txt", "../../host-canary/canary.txt", "/../host-canary/canary.txt"])
def test_copy_dotdot_outside_the_context_is_rejected(env, tmp_path: Path, src: str) -> None:
    root, canary = env
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": f"FROM busybox\nCOPY {src} /x\n"})
    r = build(root, ctx)
    assert r.returncode == 1 and "Traceback" not in _err(r), _err(r)
    assert "not found in build context" in _err(r)
    canary.assert_untouched(root)


def test_run_symlink_to_etc_then_copy_lands_in_the_images_etc(env, tmp_path: Path) -> None:
    root, canary = env
    ctx = write_ctx(tmp_path / "ctx", {
        "Dockerfile": f"FROM busybox\nRUN ln -s /etc /x && ln -s {canary.subdir} /h\n"
                      "COPY pybuild-f /x/\nCOPY pybuild-f /h/\nRUN cat /etc/pybuild-f\n",
        "pybuild-f": "in the image\n"})
    r = build(root, ctx, "-t", "t")
    assert r.returncode == 0, _err(r)
    assert not os.path.exists("/etc/pybuild-f")
    layers = [layer_files(root, x["digest"]) for x in validate_layout(root, "t")["manifest"]["layers"]]
    assert any("etc/pybuild-f" in files for files in layers)
    assert not any("x/pybuild-f" in files or "h/pybuild-f" in files for files in layers)
    assert all(files["x"].issym() for files in layers if "x" in files)  # /x stayed a link
    assert any(str(canary.subdir / "pybuild-f").lstrip("/") in files for files in layers)
    canary.assert_untouched(root)


def test_workdir_through_a_symlink_stays_in_the_rootfs(env, tmp_path: Path) -> None:
    root, canary = env
    ctx = write_ctx(tmp_path / "ctx", {
        "Dockerfile": f"FROM busybox\nRUN ln -s {canary.subdir} /w\nWORKDIR /w/sub\n"
                      "RUN touch made-here && pwd\nWORKDIR /w\nCOPY f.txt .\n", "f.txt": "x"})
    r = build(root, ctx, "-t", "t")
    assert r.returncode == 0, _err(r)
    inside = str(canary.subdir).lstrip("/")
    names: set[str] = set()
    for layer in validate_layout(root, "t")["manifest"]["layers"]:
        names |= set(layer_files(root, layer["digest"]))
    assert f"{inside}/sub" in names and f"{inside}/sub/made-here" in names and f"{inside}/f.txt" in names
    canary.assert_untouched(root)


@pytest.mark.parametrize("mount", [
    "type=bind,source=f.txt,target=/m/f.txt",
    "type=tmpfs,target=/m/tmpfs",
    "type=cache,target=/m/cache",
    "type=secret,id=s,target=/m/secret",
])
def test_run_mount_target_through_a_symlink_stays_in_the_rootfs(env, tmp_path: Path, mount: str) -> None:
    root, canary = env
    sec = tmp_path / "secret.txt"
    sec.write_text("s3")
    ctx = write_ctx(tmp_path / "ctx", {
        "Dockerfile": f"FROM busybox\nRUN ln -s {canary.subdir} /m\n"
                      f"RUN --mount={mount} ls -la /m/ {canary.subdir}/ && echo ok > /m/written\n",
        "f.txt": "x"})
    r = build(root, ctx, "-t", "t", "--secret", f"id=s,src={sec}")
    assert r.returncode == 0, _err(r)
    canary.assert_untouched(root)
    files = _top_layer(root, "t")
    assert f"{str(canary.subdir).lstrip('/')}/written" in files


def test_dockerignored_secret_is_in_no_layer_history_or_cache_key(env, tmp_path: Path) -> None:
    root, _ = env
    secret = b"IGNORED-SECRET-7f3a9c"
    ctx = write_ctx(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox\nCOPY . /app/\nRUN ls -laR /app > /listing\nADD . /add/\n",
        ".dockerignore": "secret.txt\n**/*.key\n",
        "secret.txt": secret, "sub/id.key": secret, "ok.txt": "fine"})
    r = build(root, ctx, "-t", "t")
    assert r.returncode == 0, _err(r)
    img = validate_layout(root, "t")
    assert not store_contains(root, secret)
    names: set[str] = set()
    for layer in img["manifest"]["layers"]:
        names |= set(layer_files(root, layer["digest"]))
    assert "app/ok.txt" in names and not {"app/secret.txt", "app/sub/id.key", "add/secret.txt", "add/sub/id.key"} & names
    assert "secret" not in json.dumps(img["config"]["history"])
    # The key does not depend on the ignored file: change it and everything stays cached.
    (ctx / "secret.txt").write_bytes(secret + b"-changed")
    (ctx / "sub" / "id.key").unlink()
    r = build(root, ctx, "-t", "t")
    assert r.returncode == 0, _err(r)
    assert validate_layout(root, "t")["digest"] == img["digest"]
    assert not store_contains(root, secret)
