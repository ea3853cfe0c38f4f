"""The local store and our exports read by other tools: oci-image-tool, umoci, skopeo.

Images are built from a real tree with the real layer writer, then checked by the tools
Debian ships (tests/apt-packages.txt). Plus round trips through the CLI: save/load,
import/export, store verify, prune.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from builder.layers.tarball import write_layer
from builder.oci import mediatypes as mt
from builder.oci.config import ContainerConfig, History, ImageConfig
from builder.oci.image import Image, write_image
from builder.oci.layout import ImageStore
from builder.oci.model import Manifest
from tests.conformance.test_oci_schema import validate_document
from tests.conftest import run_cli


def tool(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed (tests/apt-packages.txt lists it)")
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def make_rootfs(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text("NAME=pybuild-test\n")
    (root / "bin").mkdir()
    (root / "bin" / "app").write_bytes(b"#!/bin/sh\necho hi\n" + os.urandom(100_000))
    os.chmod(root / "bin" / "app", 0o755)
    (root / "bin" / "app-link").symlink_to("app")
    os.link(root / "bin" / "app", root / "bin" / "app-hard")
    (root / "usr" / "share" / ("deep" * 30)).mkdir(parents=True)
    (root / "usr" / "share" / ("deep" * 30) / "naïve.txt").write_text("unicode + long path")
    return root


def build_image(store: ImageStore, src: Path, compression: str, *, tag: str, base: Image | None = None):
    info = write_layer(src, store.blobs, compression=compression, source_date_epoch=1_700_000_000)
    cfg = base.config if base else ImageConfig(
        "amd64", "linux", created="2024-01-01T00:00:00Z",
        config=ContainerConfig(env=("PATH=/bin",), cmd=("/bin/app",), working_dir="/", labels={"t": "1"}))
    cfg = cfg.with_layer(info.diff_id, History(created="2024-01-01T00:00:00Z", created_by=f"COPY {src.name}"))
    cfg = cfg.with_history(History(created="2024-01-01T00:00:00Z", created_by='CMD ["/bin/app"]'))
    layers = list(base.layers) if base else []
    desc = write_image(store.blobs, cfg, layers + [info.descriptor])
    store.tag(tag, desc)
    return desc, info


@pytest.fixture
def store(tmp_path, pybuild_root):
    return ImageStore(pybuild_root).ensure()


def tree_of(root: Path) -> dict:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        st = p.lstat()
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir", st.st_mode & 0o7777)
        else:
            out[rel] = ("file", st.st_mode & 0o7777, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_store_is_a_valid_oci_layout_for_oci_image_tool_and_skopeo(store, tmp_path, compression):
    src = make_rootfs(tmp_path / "rootfs")
    desc, info = build_image(store, src, compression, tag="app")
    build_image(store, src, compression, tag="ghcr.io/acme/tool:1.2")
    if compression != "zstd":
        # Debian 12's oci-image-tool predates the +zstd layer media type (image-spec 1.1) and
        # rejects it by name; zstd layouts are held to the schemas and skopeo instead.
        r = tool("oci-image-tool", "validate", "--type", "image", "--ref", "name=app", str(store.root))
        assert "Validation succeeded" in r.stdout + r.stderr
    inspect = json.loads(tool("skopeo", "inspect", f"oci:{store.root}:app").stdout)
    assert inspect["Digest"] == desc.digest
    assert inspect["Layers"] == [info.descriptor.digest]
    assert inspect["Env"] == ["PATH=/bin"] and inspect["Labels"] == {"t": "1"}
    raw = json.loads(tool("skopeo", "inspect", "--config", f"oci:{store.root}:ghcr.io/acme/tool:1.2").stdout)
    assert raw["rootfs"]["diff_ids"] == [info.diff_id]
    # every document in the store validates against the OCI schemas
    validate_document(mt.OCI_INDEX, (store.root / "index.json").read_bytes())
    validate_document(mt.OCI_LAYOUT_HEADER, (store.root / "oci-layout").read_bytes())
    man_bytes = store.blobs.read_bytes(desc.digest)
    validate_document(mt.OCI_MANIFEST, man_bytes)
    validate_document(mt.OCI_CONFIG, store.blobs.read_bytes(Manifest.from_json(man_bytes).config.digest))


@pytest.mark.root_only  # umoci unpack as root (it chowns the rootfs)
def test_umoci_unpacks_what_we_wrote(store, tmp_path):
    # umoci 0.4.7 (Debian 12) reads gzip layers only; zstd is checked by skopeo above.
    src = make_rootfs(tmp_path / "rootfs")
    base, _ = build_image(store, src, "gzip", tag="base")
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "extra").write_text("layer two")
    img = Image.load(store.blobs, base)
    build_image(store, upper, "gzip", tag="app:two", base=img)
    bundle = tmp_path / "bundle"
    tool("umoci", "unpack", "--image", f"{store.root}:app:two", str(bundle))
    got = tree_of(bundle / "rootfs")
    want = tree_of(src)
    want.update({"etc/extra": tree_of(upper)["etc/extra"]})
    assert {k: v for k, v in got.items() if k != "etc"} == {k: v for k, v in want.items() if k != "etc"}
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["/bin/app"]


def test_docker_archive_is_read_by_skopeo_and_loads_back(store, tmp_path):
    src = make_rootfs(tmp_path / "rootfs")
    desc, info = build_image(store, src, "zstd", tag="app:v1")
    out = tmp_path / "app.tar"
    r = run_cli("save", "-o", str(out), "app:v1")
    assert r.returncode == 0, r.stderr.decode()
    with tarfile.open(out) as t:
        manifest = json.load(t.extractfile("manifest.json"))
        layer = t.extractfile(f"{info.diff_id.hex}/layer.tar").read()
    assert manifest[0]["RepoTags"] == ["app:v1"]
    assert "sha256:" + hashlib.sha256(layer).hexdigest() == info.diff_id  # uncompressed, as docker writes
    inspect = json.loads(tool("skopeo", "inspect", f"docker-archive:{out}").stdout)
    assert inspect["Layers"] == [info.diff_id] and inspect["RepoTags"] == []
    cfg = json.loads(tool("skopeo", "inspect", "--config", f"docker-archive:{out}").stdout)
    assert cfg["config"]["Cmd"] == ["/bin/app"]
    # skopeo reads every byte of ours and writes its own docker-archive; loaded by us, it
    # gives the same image (skopeo cannot write zstd layers into a docker-archive itself)
    theirs = tmp_path / "theirs.tar"
    tool("skopeo", "copy", "-q", f"docker-archive:{out}", f"docker-archive:{theirs}:other/name:t")
    r = run_cli("load", "-i", str(theirs))
    assert r.returncode == 0 and b"Loaded image: other/name:t" in r.stdout, r.stderr.decode()
    img = Image.load(store.blobs, store.resolve("other/name:t"))
    assert img.id == Image.load(store.blobs, desc).id and img.diff_ids == (info.diff_id,)
    assert img.layers[0].media_type == mt.OCI_LAYER_GZIP  # plain layer.tar compressed (the default, gzip) on the way in
    # and our own archive round-trips through load (from stdin), under a new name
    r = run_cli("load", "--tag", "again:1", input=out.read_bytes())
    assert r.returncode == 0, r.stderr.decode()
    assert Image.load(store.blobs, store.resolve("again:1")).id == img.id


def test_oci_archive_and_dir_exports(store, tmp_path):
    src = make_rootfs(tmp_path / "rootfs")
    desc, info = build_image(store, src, "gzip", tag="app")
    tar = tmp_path / "app-oci.tar"
    assert run_cli("save", "--format", "oci", "-o", str(tar), "app").returncode == 0
    inspect = json.loads(tool("skopeo", "inspect", f"oci-archive:{tar}:app").stdout)
    assert inspect["Digest"] == desc.digest
    d = tmp_path / "app-oci"
    assert run_cli("save", "--format", "oci-dir", "-o", str(d), "app").returncode == 0
    tool("oci-image-tool", "validate", "--type", "image", "--ref", "name=app", str(d))
    assert sorted(os.listdir(d)) == ["blobs", "index.json", "oci-layout"]
    validate_document(mt.OCI_INDEX, (d / "index.json").read_bytes())
    validate_document(mt.OCI_LAYOUT_HEADER, (d / "oci-layout").read_bytes())
    with tarfile.open(tar) as t:
        validate_document(mt.OCI_INDEX, t.extractfile("index.json").read())
    # a second store loads the OCI tar and the dir
    other = tmp_path / "other-root"
    r = run_cli("load", "-i", str(tar), env={"PYBUILD_ROOT": str(other)})
    assert r.returncode == 0, r.stderr.decode()
    assert ImageStore(other).resolve("app").digest == desc.digest
    r = run_cli("load", "-i", str(d), "-t", "copy:1", env={"PYBUILD_ROOT": str(other)})
    assert r.returncode == 0 and ImageStore(other).resolve("copy:1").digest == desc.digest


def test_import_and_export_rootfs(store, tmp_path):
    src = make_rootfs(tmp_path / "rootfs")
    tgz = tmp_path / "rootfs.tgz"
    subprocess.run(["tar", "-C", str(src), "-czf", str(tgz), "."], check=True)
    r = run_cli("import", str(tgz), "imported:1", "-m", "from a tarball")
    assert r.returncode == 0, r.stderr.decode()
    img = Image.load(store.blobs, store.resolve("imported:1"))
    assert r.stdout.decode().strip() == img.id
    assert img.layers[0].media_type == mt.OCI_LAYER_GZIP and img.config.history[0].comment == "from a tarball"
    out = tmp_path / "flat.tar"
    r = run_cli("export", "imported:1", "-o", str(out))
    assert r.returncode == 0, r.stderr.decode()
    flat = tmp_path / "flat"
    flat.mkdir()
    subprocess.run(["tar", "-C", str(flat), "-xf", str(out)], check=True)
    assert tree_of(flat) == tree_of(src)
    r = run_cli("export", "imported:1", "--format", "dir", "-o", str(tmp_path / "flatdir"))
    assert r.returncode == 0 and tree_of(tmp_path / "flatdir") == tree_of(src)
    plain = subprocess.run(["tar", "-C", str(src), "-cf", "-", "."], check=True, capture_output=True).stdout
    r = run_cli("import", "-", "fromstdin", input=plain)
    assert r.returncode == 0, r.stderr.decode()
    img2 = Image.load(store.blobs, store.resolve("fromstdin"))
    assert img2.layers[0].media_type == mt.OCI_LAYER_GZIP and img2.diff_ids == img.diff_ids
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"this is not a tar archive" * 100)
    r = run_cli("import", str(bad), "bad:1")
    assert r.returncode == 1 and b"not a tar" in r.stderr and b"Traceback" not in r.stderr


def test_verify_and_prune(store, tmp_path):
    src = make_rootfs(tmp_path / "rootfs")
    desc, info = build_image(store, src, "zstd", tag="keep")
    stray = store.blobs.put_bytes(b"nobody points here", "application/octet-stream")
    r = run_cli("store", "verify")
    assert r.returncode == 0 and b"0 problems" in r.stdout, r.stdout + r.stderr
    r = run_cli("prune")  # default grace: the fresh stray blob stays
    assert r.returncode == 0 and store.blobs.has(stray.digest)
    r = run_cli("prune", "--grace", "0", "--dry-run")
    assert store.blobs.has(stray.digest) and stray.digest.encode() in r.stdout
    r = run_cli("prune", "--grace", "0")
    assert r.returncode == 0, r.stderr.decode()
    assert not store.blobs.has(stray.digest)
    assert all(store.blobs.has(d) for d in (desc.digest, info.descriptor.digest))
    # corrupt a layer: verify names it and fails
    p = store.blobs.path(info.descriptor.digest)
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF
    p.write_bytes(bytes(data))
    r = run_cli("store", "verify")
    assert r.returncode == 1 and info.descriptor.digest.encode() in r.stdout
