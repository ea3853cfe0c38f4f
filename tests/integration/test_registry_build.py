"""Builds meet the registry: build → push → empty store → pull → run; CI cache through a
registry (store A exports, clean store B imports: every step CACHED); RUN cache mounts travel
with mounts=true; FROM pulls a base image that is not local."""
from __future__ import annotations

from pathlib import Path

import pytest

from builder.oci.layout import ImageStore
from tests.conftest import run_cli
from tests.fixtures.registry import docker_config, registry  # noqa: F401
from tests.integration.buildlib import build, make_busybox_image, steps, validate_layout, write_ctx

pytestmark = [pytest.mark.registry, pytest.mark.needs_root, pytest.mark.needs_overlay]

DOCKERFILE = """FROM busybox
RUN echo base-step > /base
COPY a.txt /a.txt
RUN cat /base /a.txt > /ab
CMD ["cat", "/ab"]
"""


def results(r) -> list[str]:
    assert r.returncode == 0, r.stderr.decode()
    return [res for _, res in steps(r.stderr)][1:]  # without FROM


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    return write_ctx(tmp_path / "ctx", {"Dockerfile": DOCKERFILE, "a.txt": "A\n"})


def test_build_push_pull_run(registry, docker_config, tmp_path, ctx):
    a = tmp_path / "a"
    make_busybox_image(a, tmp_path)
    name = registry.ref("built/app", "v1")
    r = build(a, ctx, "-t", name, "--push")
    assert r.returncode == 0, r.stderr.decode()
    assert f"pushed {name}@sha256:" in r.stderr.decode()
    built = ImageStore(a).resolve(name)
    b = tmp_path / "b"
    p = run_cli("pull", name, env={"PYBUILD_ROOT": str(b)})
    assert p.returncode == 0, p.stderr.decode()
    assert ImageStore(b).resolve(name).digest == built.digest
    validate_layout(b, name)
    p = run_cli("run", "--rm", name, env={"PYBUILD_ROOT": str(b)})
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode() == "base-step\nA\n"


def test_output_image_push_true(registry, docker_config, tmp_path, ctx):
    a = tmp_path / "a"
    make_busybox_image(a, tmp_path)
    name = registry.ref("built/out", "1")
    r = build(a, ctx, "-o", f"type=image,name={name},push=true")
    assert r.returncode == 0, r.stderr.decode()
    from builder.registry.transfer import remote_digest

    assert remote_digest(name) == ImageStore(a).resolve(name).digest


def test_from_pulls_a_base_image_that_is_not_local(registry, docker_config, tmp_path, ctx):
    src = tmp_path / "src"
    make_busybox_image(src, tmp_path, ref="busybox")
    base = registry.ref("base/busybox", "1")
    p = run_cli("push", "busybox", base, env={"PYBUILD_ROOT": str(src)})
    assert p.returncode == 0, p.stderr.decode()
    (ctx / "Dockerfile").write_text(DOCKERFILE.replace("FROM busybox", f"FROM {base}"))
    empty = tmp_path / "empty"
    r = build(empty, ctx, "-t", "x")
    assert results(r) == ["DONE"] * 3
    assert ImageStore(empty).resolve(base).digest == ImageStore(src).resolve("busybox").digest
    validate_layout(empty, "x")


@pytest.mark.parametrize("mode", ["min", "max"])
def test_ci_cache_through_the_registry(registry, docker_config, tmp_path, ctx, mode):
    a, b = tmp_path / "a", tmp_path / "b"
    make_busybox_image(a, tmp_path / "ta")
    make_busybox_image(b, tmp_path / "tb")
    cache = registry.ref(f"ci/cache-{mode}", "main")
    r = build(a, ctx, "-t", "app", "--cache-to", f"type=registry,ref={cache},mode={mode}")
    assert results(r) == ["DONE"] * 3
    # a clean machine: nothing built yet, cache imported from the registry
    r = build(b, ctx, "-t", "app", "--cache-from", f"type=registry,ref={cache}")
    assert results(r) == ["CACHED"] * 3
    validate_layout(b, "app")
    assert ImageStore(b).resolve("app").digest == ImageStore(a).resolve("app").digest
    # no tmp leftovers on either side
    for root in (a, b):
        assert [n for n in (root / "tmp").iterdir() if n.name.startswith("registry-cache-")] == []


def test_cache_from_a_missing_ref_warns_and_builds(registry, docker_config, tmp_path, ctx):
    a = tmp_path / "a"
    make_busybox_image(a, tmp_path)
    r = build(a, ctx, "-t", "app", "--cache-from", f"type=registry,ref={registry.ref('ci/never', 'x')}")
    assert results(r) == ["DONE"] * 3
    assert "no cache there yet" in r.stderr.decode()


def test_cache_mounts_travel_with_mounts_true(registry, docker_config, tmp_path):
    df = """FROM busybox
RUN --mount=type=cache,target=/cache,id=dl sh -c 'echo fetched-once >> /cache/log; cp /cache/log /seen'
"""
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": df})
    a, b = tmp_path / "a", tmp_path / "b"
    make_busybox_image(a, tmp_path / "ta")
    make_busybox_image(b, tmp_path / "tb")
    cache = registry.ref("ci/mounts", "main")
    r = build(a, ctx, "-t", "m", "--cache-to", f"type=registry,ref={cache},mode=max,mounts=true")
    assert r.returncode == 0, r.stderr.decode()
    r = build(b, ctx, "-t", "m", "--cache-from", f"type=registry,ref={cache}")
    assert r.returncode == 0, r.stderr.decode()
    logs = list((b / "cache" / "mounts").glob("*/data/log"))
    assert [p.read_text() for p in logs] == ["fetched-once\n"]
    # and a changed step on B runs with the imported mount contents
    ctx.joinpath("Dockerfile").write_text(df.replace("cp /cache/log /seen", "cp /cache/log /seen2"))
    r = build(b, ctx, "-t", "m2", "--cache-from", f"type=registry,ref={cache}")
    assert r.returncode == 0, r.stderr.decode()
    assert logs[0].read_text() == "fetched-once\nfetched-once\n"


def test_push_after_a_no_op_rebuild_still_pushes(registry, docker_config, tmp_path, ctx):
    a = tmp_path / "a"
    make_busybox_image(a, tmp_path)
    name = registry.ref("built/noop", "1")
    r = build(a, ctx, "-t", name)  # builds (and remembers a no-op fingerprint)
    assert results(r) == ["DONE"] * 3
    r = build(a, ctx, "-t", name, "--push")  # nothing changed, but the push is asked for
    assert results(r) == ["CACHED"] * 3
    from builder.registry.transfer import remote_digest

    assert remote_digest(name) == ImageStore(a).resolve(name).digest
