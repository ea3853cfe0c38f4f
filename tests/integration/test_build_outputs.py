"""`-o/--output` and push as `docker buildx build` does them (issue 19 item 4): the shorthands,
the image exporters' options, BuildKit's naming of an OCI export, errors before the build,
gzip layers by default and conversion on export/push — checked with skopeo and, where it can
be had, by the reference docker pulling and running what pybuild pushed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.fixtures.reference import reference_env
from tests.fixtures.registry import registry  # noqa: F401  (fixture)
from tests.integration.buildlib import build, steps, validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    return write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo hi > /hi && touch /ran-$RANDOM\n"})


def _manifest(layout: Path, entry: dict) -> dict:
    return json.loads((layout / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_text())


@pytest.mark.parametrize("spec,msg", [
    ("type=oci,bogus=1", "unknown key 'bogus' for type=oci"),
    ("type=oci", "type=oci needs dest=PATH"),
    ("type=docker,name=x", "type=docker needs dest=PATH"),
    ("type=local", "type=local needs dest=PATH"),
    ("type=local,dest=d,compression=gzip", "unknown key 'compression' for type=local"),
    ("dest=x", "type is required"),
    ("type=nope,dest=x", "unknown type 'nope'"),
    ("type=oci,dest=x,compression=lz4", "compression must be gzip, zstd or uncompressed"),
    ("type=oci,dest=x,compression=zstd,compression-level=23", "compression-level for zstd must be 1-22"),
    ("type=oci,dest=x,tar=maybe", "tar must be true or false"),
    ("type=oci,dest=x,annotation-index.a=b", "unsupported annotation key"),
    ("type=oci,dest=-,tar=false", "tar=false writes a directory"),
])
def test_bad_output_is_a_usage_error_before_the_build(root: Path, ctx: Path, spec: str, msg: str) -> None:
    r = build(root, ctx, "-o", spec)
    err = r.stderr.decode()
    assert r.returncode == 2 and msg in err, err
    assert "RUN" not in err and "#1" not in err  # nothing was built
    assert not (root / "cache" / "records").exists() or not any((root / "cache" / "records").iterdir())


def test_dir_and_dash_shorthands(root: Path, ctx: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = build(root, ctx, "-o", str(out))  # -o DIR = type=local,dest=DIR
    assert r.returncode == 0, r.stderr.decode()
    assert (out / "hi").read_text() == "hi\n" and (out / "bin" / "busybox").exists()
    r = build(root, ctx, "-o", "-")  # -o - = type=tar,dest=- (the rootfs, as buildx)
    assert r.returncode == 0, r.stderr.decode()
    tar = tmp_path / "fs.tar"
    tar.write_bytes(r.stdout)
    with tarfile.open(tar) as t:
        names = t.getnames()
    assert "hi" in [n.lstrip("./") for n in names] and not any(n.startswith("blobs/") for n in names)


def _skopeo_copy(layout: Path, tag: str, dest: Path) -> dict:
    if not shutil.which("skopeo"):
        pytest.skip("skopeo not installed (tests/apt-packages.txt)")
    r = subprocess.run(["skopeo", "copy", f"oci:{layout}:{tag}", f"dir:{dest}"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    return json.loads((dest / "manifest.json").read_text())


def test_oci_export_named_from_tags_as_buildkit(root: Path, ctx: Path, tmp_path: Path) -> None:
    tar = tmp_path / "x.tar"
    r = build(root, ctx, "-t", "myname:tag1", "-t", "other/x:2", "-o",
              f"type=oci,dest={tar},annotation.org.example.k=v,annotation-manifest-descriptor.d=e")
    assert r.returncode == 0, r.stderr.decode()
    lay = tmp_path / "untarred"
    with tarfile.open(tar) as t:
        t.extractall(lay)
    index = json.loads((lay / "index.json").read_text())
    # as BuildKit's OCI exporter (containerd's archive writer): one entry per name
    anns = [m["annotations"] for m in index["manifests"]]
    assert anns == [{"io.containerd.image.name": "docker.io/library/myname:tag1",
                     "org.opencontainers.image.ref.name": "tag1", "d": "e"},
                    {"io.containerd.image.name": "docker.io/other/x:2",
                     "org.opencontainers.image.ref.name": "2", "d": "e"}]
    man = _manifest(lay, index["manifests"][0])
    assert man["annotations"] == {"org.example.k": "v"}
    assert {x["mediaType"] for x in man["layers"]} == {GZIP}  # gzip by default, as BuildKit
    got = _skopeo_copy(lay, "tag1", tmp_path / "sk1")
    assert got["layers"] == man["layers"]

    d = tmp_path / "layout"  # tar=false: the same as a directory
    r = build(root, ctx, "-t", "myname:tag1", "-o", f"type=oci,dest={d},tar=false,name=named:v9")
    assert r.returncode == 0, r.stderr.decode()
    entry, = json.loads((d / "index.json").read_text())["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "v9"
    _skopeo_copy(d, "v9", tmp_path / "sk2")


def test_compression_options_convert_layers(root: Path, ctx: Path, tmp_path: Path) -> None:
    d = tmp_path / "z"
    r = build(root, ctx, "-o", f"type=oci,dest={d},tar=false,compression=zstd,compression-level=5")
    assert r.returncode == 0, r.stderr.decode()
    entry, = json.loads((d / "index.json").read_text())["manifests"]
    man = _manifest(d, entry)
    assert {x["mediaType"] for x in man["layers"]} == {ZSTD}
    for x in man["layers"]:
        assert (d / "blobs" / "sha256" / x["digest"].split(":")[1]).read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    # same diff_ids: the config is the same blob
    img = validate_layout(root)
    assert img is not None
    u = tmp_path / "u"
    r = build(root, ctx, "-o", f"type=oci,dest={u},tar=false,compression=uncompressed")
    assert r.returncode == 0, r.stderr.decode()
    man_u = _manifest(u, json.loads((u / "index.json").read_text())["manifests"][0])
    assert {x["mediaType"] for x in man_u["layers"]} == {"application/vnd.oci.image.layer.v1.tar"}
    assert man_u["config"] == man["config"]
    # docker media types when asked; zstd is refused with them
    k = tmp_path / "k"
    r = build(root, ctx, "-o", f"type=oci,dest={k},tar=false,oci-mediatypes=false")
    assert r.returncode == 0, r.stderr.decode()
    man_k = _manifest(k, json.loads((k / "index.json").read_text())["manifests"][0])
    assert man_k["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert {x["mediaType"] for x in man_k["layers"]} == {"application/vnd.docker.image.rootfs.diff.tar.gzip"}



@pytest.mark.registry
def test_push_converts_to_gzip_and_docker_pulls_it(registry, root: Path, ctx: Path, tmp_path: Path) -> None:  # noqa: F811
    # an image stored with zstd layers (built before gzip became the default, or by choice) ...
    r = build(root, ctx, "-t", "zimg", env={"PYBUILD_COMPRESSION": "zstd"})
    assert r.returncode == 0, r.stderr.decode()
    stored = validate_layout(root, "zimg")
    assert stored["manifest"]["layers"][-1]["mediaType"] == ZSTD
    # ... pushed with default settings goes as gzip: what docker 20.10 and every client pull
    ref = registry.ref("t/zimg", "1")
    r = run_cli("push", "zimg", ref, env={"PYBUILD_ROOT": str(root)})
    assert r.returncode == 0, r.stderr.decode()
    r = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    pushed = json.loads(r.stdout)
    assert {x["mediaType"] for x in pushed["layers"]} == {GZIP}
    assert pushed["config"]["digest"] == stored["manifest"]["config"]["digest"]  # same image
    # --compression zstd keeps zstd
    ref2 = registry.ref("t/zimg", "2")
    r = run_cli("push", "--compression", "zstd", "zimg", ref2, env={"PYBUILD_ROOT": str(root)})
    assert r.returncode == 0, r.stderr.decode()
    r = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref2}"],
                       capture_output=True, timeout=60)
    assert {x["mediaType"] for x in json.loads(r.stdout)["layers"]} == {ZSTD}

    env = reference_env()
    if env is None:
        pytest.skip("the reference docker (../shared/tools/buildkit-reference) cannot be had here; "
                    "the gzip media types above are what docker 20.10 needs")
    try:
        r = subprocess.run([env["DOCKER"], "pull", ref], capture_output=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr.decode()
        r = subprocess.run([env["DOCKER"], "run", "--rm", "--network", "none", ref, "cat", "/hi"],
                           capture_output=True, env=env, timeout=300)
        assert r.returncode == 0 and r.stdout == b"hi\n", r.stderr.decode()
    finally:
        subprocess.run([env["DOCKER"], "rmi", "-f", ref], capture_output=True, env=env, timeout=120)


@pytest.mark.registry
def test_inline_cache_round_trip_through_a_registry(registry, root: Path, tmp_path: Path) -> None:  # noqa: F811
    ctx = write_ctx(tmp_path / "ictx", {"Dockerfile": "FROM busybox\nCOPY a /a\nRUN cat /a > /b\nCMD [\"sh\"]\n",
                                        "a": "inline\n"})
    ref = registry.ref("t/inline", "1")
    r = build(root, ctx, "-t", ref, "--cache-to", "type=inline", "--push")
    assert r.returncode == 0, r.stderr.decode()
    img = validate_layout(root, ref)
    assert "dev.pybuild.cache.inline.v1" in img["config"]  # in the config, as BuildKit's inline cache
    # a fresh machine: same base image, empty cache; --cache-from IMAGE (the shorthand) hits
    fresh = tmp_path / "fresh"
    from tests.integration.buildlib import make_busybox_image

    make_busybox_image(fresh, tmp_path / "fb")
    r = build(fresh, ctx, "--cache-from", ref, "-t", "again")
    assert r.returncode == 0, r.stderr.decode()
    res = dict(steps(r.stderr))
    assert res["COPY a /a"] == "CACHED" and res["RUN cat /a > /b"] == "CACHED", res
    again = validate_layout(fresh, "again")
    assert again["config"]["rootfs"] == img["config"]["rootfs"]
    # an image without an inline cache is a warning, not an error
    plain = registry.ref("t/plain", "1")
    assert run_cli("push", "busybox", plain, env={"PYBUILD_ROOT": str(root)}).returncode == 0
    r = build(tmp_path / "fresh", ctx, "--cache-from", plain, "--no-cache")
    assert r.returncode == 0 and b"without an inline cache" in r.stderr, r.stderr.decode()


def test_inline_cache_to_takes_no_options(root: Path, ctx: Path) -> None:
    r = build(root, ctx, "--cache-to", "type=inline,mode=max")
    assert r.returncode == 2 and b"type=inline takes no other option" in r.stderr, r.stderr.decode()


def test_image_output_with_compression_tags_the_converted_image(root: Path, ctx: Path) -> None:
    r = build(root, ctx, "-o", "type=image,name=conv:1,compression=zstd,annotation.a=b")
    assert r.returncode == 0, r.stderr.decode()
    img = validate_layout(root, "conv:1")
    assert {x["mediaType"] for x in img["manifest"]["layers"]} == {ZSTD}
    assert img["manifest"]["annotations"] == {"a": "b"}


def test_registry_output_without_a_name_is_refused_before_the_build(root: Path, ctx: Path) -> None:
    r = build(root, ctx, "-o", "type=registry")
    assert r.returncode == 2 and b"pushing needs a name" in r.stderr and b"RUN" not in r.stderr, r.stderr.decode()


DEBIAN_DOCKERD = Path("/usr/sbin/dockerd")


@pytest.mark.registry
def test_default_push_pulls_and_runs_in_docker_20_10(registry, root: Path, ctx: Path, tmp_path: Path) -> None:  # noqa: F811
    """Issue 19: an image pushed with default settings pulls and runs in Debian's docker.io
    (20.10, which cannot read zstd layers), from a private dockerd of its own."""
    from bench.harness import NotAvailable
    from bench.peers import Docker

    if not (DEBIAN_DOCKERD.exists() and Path("/usr/bin/docker").exists()):
        msg = "Debian's docker.io (docker 20.10) is not installed (tests/apt-packages.txt lists it)"
        pytest.fail(msg) if os.environ.get("CI") else pytest.skip(msg)
    r = build(root, ctx, "-t", "plain")
    assert r.returncode == 0, r.stderr.decode()
    ref = registry.ref("t/plain", "1")
    r = run_cli("push", "plain", ref, env={"PYBUILD_ROOT": str(root)})
    assert r.returncode == 0, r.stderr.decode()
    short = Path(tempfile.mkdtemp(prefix="pbd-", dir="/tmp"))  # unix socket paths are short
    d = Docker(tmp_path / "docker-state", short)
    try:
        try:
            d.start()
        except NotAvailable as e:
            pytest.fail(f"docker 20.10's dockerd did not start: {e}")
        v = subprocess.run([d.docker_bin, "version", "--format", "{{.Server.Version}}"], env=d.env,
                           capture_output=True, text=True, timeout=60)
        assert v.stdout.startswith("20.10"), v.stdout + v.stderr
        r = subprocess.run([d.docker_bin, "pull", ref], env=d.env, capture_output=True, timeout=300)
        assert r.returncode == 0, r.stderr.decode()
        r = subprocess.run([d.docker_bin, "run", "--rm", "--network", "none", ref, "cat", "/hi"],
                           env=d.env, capture_output=True, timeout=300)
        assert r.returncode == 0 and r.stdout == b"hi\n", r.stderr.decode()
    finally:
        d.stop()
        shutil.rmtree(short, ignore_errors=True)
