"""Multi-platform images end to end: per-arch busybox bases (Debian's busybox-static:ARCH,
`import --platform`), foreign RUN through binfmt_misc emulation, the automatic platform ARGs,
`build --platform P1,P2` (one index, shared BUILDPLATFORM stages), the local store holding
indexes (images/inspect/run/bundle/save/load/push/pull/rmi/tag), `manifest create|add|push`,
and differential cases against the reference BuildKit.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.fixtures.multiarch import elf_machine, emulation_ready, import_busybox
from tests.fixtures.registry import docker_config, registry  # noqa: F401  (fixtures)
from tests.integration.buildlib import steps, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]
ON_CI = os.environ.get("CI") == "true"


def cli(root: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return run_cli(*args, env={"PYBUILD_ROOT": str(root), **kw.pop("env", {})}, **kw)


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    return r.stdout.decode()


@pytest.fixture(scope="module")
def emulation() -> None:
    """arm64 binaries run here: the test machine is set up with the documented command (never
    silently by pybuild itself); without qemu-user-static the tests skip (fail on CI)."""
    if not emulation_ready("arm64"):
        if os.geteuid() == 0 and shutil.which("qemu-aarch64-static"):
            run_cli("setup", "emulation", "arm64")
        if not emulation_ready("arm64"):
            msg = "no arm64 emulation (apt-get install qemu-user-static; pybuild setup emulation)"
            pytest.fail(msg) if ON_CI else pytest.skip(msg)


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> Path:
    """A store holding bb-amd64 and bb-arm64 (imported with --platform) and the index `busybox` of both."""
    tmp = tmp_path_factory.mktemp("mp")
    root = tmp / "root"
    try:
        for arch in ("amd64", "arm64"):
            import_busybox(root, arch, f"bb-{arch}", tmp)
    except (OSError, subprocess.CalledProcessError, RuntimeError) as e:
        pytest.fail(f"cannot make the busybox bases: {e}") if ON_CI else pytest.skip(f"no busybox-static debs: {e}")
    ok(cli(root, "manifest", "create", "busybox", "bb-amd64", "bb-arm64"))
    return root


@pytest.fixture
def root(bases: Path, tmp_path: Path) -> Path:
    """A private copy of the bases store (tests tag and remove freely)."""
    r = tmp_path / "root"
    shutil.copytree(bases, r, symlinks=True)
    return r


def build(root: Path, ctx: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return cli(root, "build", "--progress=plain", *args, str(ctx), **kw)


def blob(root: Path, digest: str) -> bytes:
    return (root / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def stored(root: Path, name: str) -> dict:
    """The index.json entry for `name`."""
    for m in json.loads((root / "index.json").read_text())["manifests"]:
        if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == name:
            return m
    raise AssertionError(f"{name} not in the store")


def platforms_of(root: Path, index_digest: str) -> dict[str, dict]:
    """platform string -> (manifest, config) of each index entry."""
    idx = json.loads(blob(root, index_digest))
    out = {}
    for m in idx["manifests"]:
        p = m["platform"]
        man = json.loads(blob(root, m["digest"]))
        cfg = json.loads(blob(root, man["config"]["digest"]))
        assert (cfg["os"], cfg["architecture"]) == (p["os"], p["architecture"])
        out[f"{p['os']}/{p['architecture']}" + (f"/{p['variant']}" if p.get("variant") else "")] = \
            {"manifest": man, "config": cfg, "digest": m["digest"]}
    return out


# -- bases ---------------------------------------------------------------------------------

def test_import_platform_records_the_architecture(bases: Path, tmp_path: Path) -> None:
    info = json.loads(ok(cli(bases, "inspect", "bb-arm64")))[0]
    assert info["Architecture"] == "arm64" and info["Os"] == "linux"
    out = tmp_path / "rootfs"
    ok(cli(bases, "export", "--format", "dir", "-o", str(out), "bb-arm64"))
    assert elf_machine(out / "bin" / "busybox") == 183  # EM_AARCH64: the arm64 package's binary


# -- single-platform builds ----------------------------------------------------------------

ARGS_DF = """FROM bb-$TARGETARCH
ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT
LABEL t="$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$TARGETVARIANT" b="$BUILDPLATFORM|$BUILDOS|$BUILDARCH|$BUILDVARIANT"
"""


def test_platform_args_in_a_foreign_single_platform_build(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": ARGS_DF})
    ok(build(root, ctx, "--platform", "linux/arm64/v8", "-t", "a"))
    man = json.loads(blob(root, stored(root, "a")["digest"]))
    cfg = json.loads(blob(root, man["config"]["digest"]))
    assert cfg["architecture"] == "arm64" and cfg["os"] == "linux"
    assert cfg["config"]["Labels"] == {"t": "linux/arm64|linux|arm64|", "b": "linux/amd64|linux|amd64|"}


def test_foreign_run_goes_through_emulation(root: Path, tmp_path: Path, emulation) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM bb-arm64\nRUN uname -m > /m && cat /m\n"})
    r = build(root, ctx, "--platform", "linux/arm64", "-t", "a")
    ok(r)
    assert "aarch64" in r.stderr.decode()
    assert ok(cli(root, "run", "--rm", "--platform", "linux/arm64", "a", "cat", "/m")).strip() == "aarch64"


def test_missing_emulation_is_one_clear_line(root: Path, tmp_path: Path) -> None:
    from builder.platforms import emulation_status

    arch = next((a for a in ("riscv64", "s390x", "ppc64le", "mips64le", "loong64") if not emulation_status(a).ready), None)
    if arch is None:
        pytest.skip("every emulator is registered here")
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nCOPY Dockerfile /\nRUN true\n"})
    r = build(root, ctx, "--platform", f"linux/{arch}")
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert err.startswith(f"error: cannot run linux/{arch} binaries: ") and "`pybuild setup emulation`" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "#" not in err  # said before any step ran


def test_cache_keys_include_the_platform(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": "x"})
    ok(build(root, ctx, "--platform", "linux/arm64"))
    r = build(root, ctx, "--platform", "linux/amd64")
    assert ("COPY f /f", "DONE") in steps(r.stderr)
    r = build(root, ctx, "--platform", "linux/arm64")
    assert ("COPY f /f", "CACHED") in steps(r.stderr)


# -- multi-platform builds -----------------------------------------------------------------

APP_DF = """FROM bb-$TARGETARCH
ARG TARGETPLATFORM
RUN echo "$TARGETPLATFORM $(uname -m)" > /info
CMD ["cat", "/info"]
"""


def test_two_platforms_make_one_index(root: Path, tmp_path: Path, emulation) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": APP_DF})
    ok(build(root, ctx, "--platform", "linux/amd64,linux/arm64", "-t", "app"))
    entry = stored(root, "app")
    assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json"
    plats = platforms_of(root, entry["digest"])
    assert sorted(plats) == ["linux/amd64", "linux/arm64"]
    assert ok(cli(root, "run", "--rm", "--platform", "linux/arm64", "app")).strip() == "linux/arm64 aarch64"
    assert ok(cli(root, "run", "--rm", "--platform", "linux/amd64", "app")).strip() == "linux/amd64 x86_64"
    assert ok(cli(root, "run", "--rm", "app")).strip() == "linux/amd64 x86_64"  # default: this machine's


CROSS_DF = """FROM --platform=$BUILDPLATFORM bb-$BUILDARCH AS build
RUN echo "built on $(uname -m) at $(cat /proc/uptime)" > /out
FROM bb-$TARGETARCH
ARG TARGETARCH
COPY --from=build /out /out
RUN echo "$TARGETARCH" >> /out
"""


def test_cross_compile_shape_runs_its_build_stage_once(root: Path, tmp_path: Path, emulation) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": CROSS_DF})
    r = build(root, ctx, "--platform", "linux/amd64,linux/arm64", "-t", "cross")
    ok(r)
    runs = [res for name, res in steps(r.stderr) if "built on" in name]
    assert sorted(runs) == ["CACHED", "DONE"], r.stderr.decode()  # executed once, the other platform reused it
    plats = platforms_of(root, stored(root, "cross")["digest"])
    # the same build-stage output in both images (it ran once, on the build platform)
    outs = {}
    for p in ("linux/amd64", "linux/arm64"):
        outs[p] = ok(cli(root, "run", "--rm", "--platform", p, "cross", "cat", "/out")).splitlines()
    assert outs["linux/amd64"][0] == outs["linux/arm64"][0] and outs["linux/amd64"][0].startswith("built on x86_64")
    assert outs["linux/amd64"][1] == "amd64" and outs["linux/arm64"][1] == "arm64"
    assert plats["linux/arm64"]["config"]["architecture"] == "arm64"


# -- the local store and registries -----------------------------------------------------------

@pytest.fixture
def app(root: Path, tmp_path: Path, emulation) -> Path:
    """`app`: a two-platform image in `root`."""
    ctx = write_ctx(tmp_path / "app-ctx", {"Dockerfile": APP_DF})
    ok(build(root, ctx, "--platform", "linux/amd64,linux/arm64", "-t", "app"))
    return root


def test_images_shows_an_index_once_and_inspect_lists_platforms(app: Path) -> None:
    rows = [ln for ln in ok(cli(app, "images")).splitlines() if ln.startswith("app ")]
    assert len(rows) == 1
    digest = stored(app, "app")["digest"]
    assert digest.split(":")[1][:12] in rows[0]  # the id of a multi-platform image is its index digest
    js = [x for x in json.loads(ok(cli(app, "images", "--format", "json"))) if x["Repository"] == "app"]
    assert js[0]["Platforms"] == ["linux/amd64", "linux/arm64"]
    info = json.loads(ok(cli(app, "inspect", "app")))[0]
    assert [p["Platform"] for p in info["Platforms"]] == ["linux/amd64", "linux/arm64"]
    assert info["Architecture"] == "amd64"
    assert ok(cli(app, "inspect", "--platform", "linux/arm64", "-f", ".Architecture", "app")).strip() == "arm64"


def test_tag_and_rmi_act_on_the_index(app: Path) -> None:
    ok(cli(app, "tag", "app", "app2:v1"))
    assert stored(app, "app2:v1")["digest"] == stored(app, "app")["digest"]
    ok(cli(app, "rmi", "app"))
    with pytest.raises(AssertionError):
        stored(app, "app")
    assert ok(cli(app, "run", "--rm", "--platform", "linux/arm64", "app2:v1")).strip() == "linux/arm64 aarch64"


def test_save_load_oci_and_output_oci_carry_the_index(app: Path, tmp_path: Path) -> None:
    tar = tmp_path / "app.tar"
    ok(cli(app, "save", "--format", "oci", "-o", str(tar), "app"))
    other = tmp_path / "other"
    ok(cli(other, "load", "-i", str(tar)))
    entries = json.loads((other / "index.json").read_text())["manifests"]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["digest"] == stored(app, "app")["digest"]  # the same index, named
    assert entry["annotations"]["org.opencontainers.image.ref.name"]
    assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert sorted(platforms_of(other, entry["digest"])) == ["linux/amd64", "linux/arm64"]
    assert ok(cli(other, "run", "--rm", "--platform", "linux/arm64", entry["digest"])).strip() == "linux/arm64 aarch64"
    # -o type=oci of a multi-platform build writes the index
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": APP_DF})
    lay = tmp_path / "layout"
    ok(build(app, ctx, "--platform", "linux/amd64,linux/arm64", "-o", f"type=oci,dest={lay},tar=false"))
    top = json.loads((lay / "index.json").read_text())["manifests"]
    assert len(top) == 1 and top[0]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert sorted(platforms_of(lay, top[0]["digest"])) == ["linux/amd64", "linux/arm64"]
    if shutil.which("skopeo"):
        r = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{lay}"], capture_output=True)
        assert r.returncode == 0 and len(json.loads(r.stdout)["manifests"]) == 2



@pytest.mark.registry
def test_build_push_two_platforms_then_pull_per_platform(root: Path, tmp_path: Path, emulation, registry,
                                                          docker_config) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": APP_DF})
    name = registry.ref("mp/app", "1")
    r = build(root, ctx, "--platform", "linux/amd64,linux/arm64", "-t", name, "--push")
    ok(r)
    assert f"pushed {name}@sha256:" in r.stderr.decode()
    if shutil.which("skopeo"):
        raw = subprocess.run(["skopeo", "inspect", "--raw", *registry.skopeo_args(), f"docker://{name}"],
                             capture_output=True)
        assert raw.returncode == 0, raw.stderr
        idx = json.loads(raw.stdout)
        assert idx["mediaType"] == "application/vnd.oci.image.index.v1+json"
        assert sorted((m["platform"]["os"], m["platform"]["architecture"]) for m in idx["manifests"]) == \
            [("linux", "amd64"), ("linux", "arm64")]
    # pull --platform keeps the index and that platform only
    one = tmp_path / "one"
    out = ok(cli(one, "pull", "--platform", "linux/arm64", name))
    assert out.strip().endswith(f"pulled {stored(root, name)['digest']}")  # the index's digest
    info = json.loads(ok(cli(one, "inspect", "--platform", "linux/arm64", name)))[0]
    assert {p["Platform"]: p["Stored"] for p in info["Platforms"]} == {"linux/amd64": False, "linux/arm64": True}
    assert ok(cli(one, "run", "--rm", "--platform", "linux/arm64", name, "uname", "-m")).strip() == "aarch64"
    ok(cli(one, "store", "verify"))  # an index whose other platforms are not stored is a valid store
    # --all-platforms: both, and a build for either platform then finds the base locally
    every = tmp_path / "every"
    ok(cli(every, "pull", "--all-platforms", name))
    assert ok(cli(every, "run", "--rm", "--platform", "linux/amd64", name, "uname", "-m")).strip() == "x86_64"
    ctx2 = write_ctx(tmp_path / "ctx2", {"Dockerfile": f"FROM {name}\nRUN uname -m > /m\n"})
    r = build(every, ctx2, "--platform", "linux/arm64,linux/amd64", "-t", "derived")
    ok(r)
    assert "pulling" not in r.stderr.decode()
    assert ok(cli(every, "run", "--rm", "--platform", "linux/arm64", "derived", "cat", "/m")).strip() == "aarch64"


# -- manifest create | add | inspect | push --------------------------------------------------

def test_manifest_create_makes_a_multi_platform_base(root: Path, tmp_path: Path, emulation) -> None:
    idx = json.loads(ok(cli(root, "manifest", "inspect", "busybox")))
    assert [(m["platform"]["architecture"]) for m in idx["manifests"]] == ["amd64", "arm64"]
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN uname -m > /m\n"})
    ok(build(root, ctx, "--platform", "linux/arm64,linux/amd64", "-t", "x"))
    assert ok(cli(root, "run", "--rm", "--platform", "linux/arm64", "x", "cat", "/m")).strip() == "aarch64"
    assert ok(cli(root, "run", "--rm", "x", "cat", "/m")).strip() == "x86_64"


def test_manifest_add_replaces_the_same_platform_and_create_refuses_two(root: Path) -> None:
    ok(cli(root, "manifest", "create", "only-amd", "bb-amd64"))
    ok(cli(root, "manifest", "add", "only-amd", "bb-arm64"))
    idx = json.loads(ok(cli(root, "manifest", "inspect", "only-amd")))
    assert sorted(m["platform"]["architecture"] for m in idx["manifests"]) == ["amd64", "arm64"]
    ok(cli(root, "manifest", "add", "only-amd", "bb-arm64"))  # again: still one arm64 entry
    assert len(json.loads(ok(cli(root, "manifest", "inspect", "only-amd")))["manifests"]) == 2
    r = cli(root, "manifest", "create", "dup", "bb-amd64", "busybox")
    assert r.returncode == 1 and r.stderr.decode().startswith("error: two images for linux/amd64")
    r = cli(root, "manifest", "add", "bb-amd64", "bb-arm64")
    assert r.returncode == 1 and "not an index" in r.stderr.decode()


@pytest.mark.registry
def test_manifest_push(root: Path, registry, docker_config) -> None:
    name = registry.ref("mp/busybox", "multi")
    out = ok(cli(root, "manifest", "push", "busybox", name))
    assert out.startswith(f"pushed {name}@{stored(root, 'busybox')['digest']}")
    if shutil.which("skopeo"):
        raw = subprocess.run(["skopeo", "inspect", "--raw", *registry.skopeo_args(), f"docker://{name}"],
                             capture_output=True)
        assert raw.returncode == 0 and len(json.loads(raw.stdout)["manifests"]) == 2


# -- differential: the platform ARGs against the reference BuildKit ---------------------------

TOOL = Path(__file__).resolve().parents[3] / "shared" / "tools" / "buildkit-reference"
DIFF_DF = """ARG TARGETARCH
ARG BUILDARCH=bogus
FROM --platform=$BUILDPLATFORM scratch AS build
ARG TARGETARCH
LABEL inbuild="$TARGETARCH|$BUILDARCH"
FROM scratch AS all
ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT
LABEL t="$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$TARGETVARIANT" b="$BUILDPLATFORM|$BUILDOS|$BUILDARCH|$BUILDVARIANT"
FROM scratch AS undeclared
LABEL u="[$TARGETARCH][$BUILDPLATFORM][$TARGETPLATFORM]"
FROM scratch AS defaulted
ARG TARGETARCH=bogus
ARG BUILDARCH
LABEL d="$TARGETARCH|$BUILDARCH"
FROM scratch AS final
ARG TARGETVARIANT
COPY --from=build / /
LABEL v="[$TARGETVARIANT]"
"""
DIFF_TARGETS = ("build", "all", "undeclared", "defaulted", "final")
DIFF_PLATFORMS = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7")


@pytest.fixture(scope="module")
def reference() -> dict:
    """The reference docker (BuildKit) environment: {"DOCKER": path, "DOCKER_HOST": socket}."""
    if os.geteuid() != 0 or not TOOL.exists():
        pytest.skip("the reference BuildKit needs root and ../shared/tools/buildkit-reference")
    r = subprocess.run([str(TOOL), "start"], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.skip(f"the reference BuildKit did not start: {r.stderr.strip()[-300:]}")
    env = subprocess.run([str(TOOL), "env"], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w+)=(\S+)", env))


def docker(ref: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([ref["DOCKER"], *args], env={**os.environ, "DOCKER_HOST": ref["DOCKER_HOST"]},
                          capture_output=True, text=True, timeout=timeout)


def _verdict(labels, os_: str, arch: str, variant) -> dict:
    return {"labels": labels or {}, "platform": f"{os_}/{arch}" + (f"/{variant}" if variant else "")}


def test_platform_args_match_the_reference(root: Path, tmp_path: Path, reference: dict) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": DIFF_DF})
    theirs, ours_single, ours_multi = {}, {}, {}
    try:
        for t in DIFF_TARGETS:
            for p in DIFF_PLATFORMS:
                r = docker(reference, "buildx", "build", "-q", "--network", "host", "--platform", p, "--target", t,
                           "--load", "-t", "pbmp-diff", str(ctx))
                assert r.returncode == 0, r.stderr[-2000:]
                info = json.loads(docker(reference, "image", "inspect", "pbmp-diff").stdout)[0]
                theirs[t, p] = _verdict(info["Config"]["Labels"], info["Os"], info["Architecture"], info.get("Variant"))
    finally:
        docker(reference, "rmi", "-f", "pbmp-diff")
    for t in DIFF_TARGETS:
        # multi-platform: one build, an index entry per platform
        ok(build(root, ctx, "--platform", ",".join(DIFF_PLATFORMS), "--target", t, "-t", f"m-{t}"))
        for p in DIFF_PLATFORMS:
            info = json.loads(ok(cli(root, "inspect", "--platform", p, f"m-{t}")))[0]
            ours_multi[t, p] = _verdict(info["Config"].get("Labels"), info["Os"], info["Architecture"], info["Variant"])
            ok(build(root, ctx, "--platform", p, "--target", t, "-t", f"s-{t}"))
            info = json.loads(ok(cli(root, "inspect", f"s-{t}")))[0]
            ours_single[t, p] = _verdict(info["Config"].get("Labels"), info["Os"], info["Architecture"], info["Variant"])
    assert ours_single == theirs
    assert ours_multi == theirs
    assert theirs["all", "linux/arm/v7"]["labels"]["t"] == "linux/arm/v7|linux|arm|v7"  # the suite tests something


@pytest.mark.registry
def test_reference_docker_pulls_our_index_and_runs_arm64(root: Path, tmp_path: Path, emulation, registry,
                                                         docker_config, reference: dict) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": APP_DF})
    name = registry.ref("mp/refapp", "1")
    ok(build(root, ctx, "--platform", "linux/amd64,linux/arm64", "-t", name, "--push"))
    try:
        for p, want in (("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")):
            r = docker(reference, "pull", "--platform", p, name)
            assert r.returncode == 0, r.stderr
            r = docker(reference, "run", "--rm", "--network", "host", "--platform", p, name, "uname", "-m")
            assert r.returncode == 0, r.stderr
            assert r.stdout.strip() == want
            r = docker(reference, "run", "--rm", "--network", "host", "--platform", p, name)
            assert r.stdout.strip() == f"{p} {want}"
    finally:
        docker(reference, "rmi", "-f", name)


@pytest.mark.registry
def test_registry_cache_keeps_each_platforms_records(bases: Path, tmp_path: Path, emulation, registry,
                                                     docker_config) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": APP_DF})
    cache = registry.ref("mp/cache", "c")
    a = tmp_path / "a"
    shutil.copytree(bases, a, symlinks=True)
    ok(build(a, ctx, "--platform", "linux/amd64,linux/arm64", "--cache-to", f"type=registry,ref={cache}"))
    b = tmp_path / "b"
    shutil.copytree(bases, b, symlinks=True)
    r = build(b, ctx, "--platform", "linux/amd64,linux/arm64", "--cache-from", f"type=registry,ref={cache}")
    ok(r)
    runs = [res for name, res in steps(r.stderr) if "RUN echo" in name]
    assert runs == ["CACHED", "CACHED"], r.stderr.decode()


def test_bundle_platform_picks_that_image_and_a_mismatch_is_one_line(app: Path, tmp_path: Path) -> None:
    dest = tmp_path / "bundle"
    ok(cli(app, "bundle", "--platform", "linux/arm64", "--dest", str(dest), "app"))
    assert elf_machine(dest / "rootfs" / "bin" / "busybox") == 183
    r = cli(app, "run", "--rm", "--platform", "linux/arm64", "bb-amd64", "true")
    assert r.returncode == 1 and r.stderr.decode() == "error: image bb-amd64 is linux/amd64, not linux/arm64\n"
    r = cli(app, "run", "--rm", "--platform", "linux/s390x", "app", "true")
    assert r.returncode == 1 and "no image for platform linux/s390x in the index" in r.stderr.decode()


def test_prune_keeps_every_stored_platforms_snapshots(app: Path) -> None:
    ok(cli(app, "run", "--rm", "--platform", "linux/arm64", "app", "true"))
    ok(cli(app, "run", "--rm", "--platform", "linux/amd64", "app", "true"))
    snaps = lambda: sorted(p.name for p in (app / "snapshots").iterdir() if not p.name.startswith("."))  # noqa: E731
    before = snaps()
    ok(cli(app, "prune", "--grace", "0"))
    from builder.oci.image import chain_ids

    for p in ("linux/amd64", "linux/arm64"):
        info = json.loads(ok(cli(app, "inspect", "--platform", p, "app")))[0]
        top = str(chain_ids(info["RootFS"]["Layers"])[-1]).split(":")[1]
        assert top in before and top in snaps(), p


def test_one_platform_failing_stops_the_build_with_its_own_error(root: Path, tmp_path: Path, emulation) -> None:
    df = 'FROM bb-$TARGETARCH\nARG TARGETARCH\nRUN if [ "$TARGETARCH" = arm64 ]; then exit 7; fi; sleep 30\n'
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": df})
    import time

    t0 = time.monotonic()
    r = build(root, ctx, "--platform", "linux/amd64,linux/arm64", "-t", "fails")
    assert time.monotonic() - t0 < 20  # the amd64 RUN (sleep 30) was stopped, not waited for
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "error: [linux/arm64] RUN " in err and "exited with status 7" in err and "Traceback" not in err
    assert b"fails" not in (root / "index.json").read_bytes()


def test_missing_emulation_in_a_multi_platform_build(root: Path, tmp_path: Path) -> None:
    from builder.platforms import emulation_status

    arch = next((a for a in ("riscv64", "s390x", "ppc64le", "mips64le", "loong64") if not emulation_status(a).ready), None)
    if arch is None:
        pytest.skip("every emulator is registered here")
    # amd64 alone would build: the foreign platform's missing emulator is the error
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nCOPY --from=bb-amd64 / /\nRUN true\n"})
    r = build(root, ctx, "--platform", f"linux/amd64,linux/{arch}", "-t", "nope")
    err = r.stderr.decode()
    assert r.returncode == 1
    line = next(ln for ln in err.splitlines() if ln.startswith("error: "))
    assert line.startswith(f"error: cannot run linux/{arch} binaries: ") and "`pybuild setup emulation`" in line
    assert b"nope" not in (root / "index.json").read_bytes()


def test_noop_rebuild_from_an_index_base_takes_the_fast_path(root: Path, tmp_path: Path) -> None:
    """The no-op memo checks what the base's name points at (here an index), so a rebuild from a
    multi-platform base, for a foreign platform too, never loads the solver."""
    import sys

    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nCOPY f /f\n", "f": "x"})
    env = {**os.environ, "PYBUILD_ROOT": str(root)}
    for plat in ("linux/arm64", "linux/amd64"):
        runs = [subprocess.run([sys.executable, "-X", "importtime", "-m", "builder.cli", "build", "--progress=plain",
                                "--platform", plat, "-t", f"m-{plat[6:]}", str(ctx)], env=env, capture_output=True)
                for _ in range(2)]
        assert all(r.returncode == 0 for r in runs), runs[-1].stderr.decode()
        assert b"builder.engine.solver" in runs[0].stderr, plat  # the first build solves
        assert b"builder.engine.solver" not in runs[1].stderr, plat  # the rebuild is answered by the memo


def test_save_docker_archive_picks_one_platform(app: Path, tmp_path: Path) -> None:
    import tarfile

    for plat, arch in (("linux/arm64", "arm64"), (None, "amd64")):
        out = tmp_path / f"{arch}.tar"
        ok(cli(app, "save", "-o", str(out), *(["--platform", plat] if plat else []), "app"))
        with tarfile.open(out) as t:
            man = json.loads(t.extractfile("manifest.json").read())
            assert len(man) == 1
            cfg = json.loads(t.extractfile(man[0]["Config"]).read())
        assert cfg["architecture"] == arch
