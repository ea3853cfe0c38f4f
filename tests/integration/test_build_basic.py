"""End-to-end `pybuild build` on a busybox base: layers, config, history, no-op rebuild all CACHED."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.buildlib import build, layer_files, make_busybox_image, steps, validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    make_busybox_image(root, tmp_path)
    return root


def test_build_then_noop_rebuild_is_all_cached(base: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox\nWORKDIR /app\nCOPY hello.txt .\n"
                      "RUN echo built > /app/built && cat /app/hello.txt\nENV GREETING=hi\n"
                      'CMD ["cat", "/app/built"]\nLABEL a=b\nEXPOSE 8080\nUSER app\n',
        "hello.txt": "hello\n"})
    r = build(base, ctx, "-t", "app")
    assert r.returncode == 0, r.stderr.decode()
    assert b"#4 0." in r.stderr and b"hello" in r.stderr  # RUN output streamed with its step number
    img = validate_layout(base, "app")
    cfg = img["config"]
    assert cfg["config"]["Env"][-1] == "GREETING=hi"
    assert cfg["config"]["Cmd"] == ["cat", "/app/built"]
    assert cfg["config"]["WorkingDir"] == "/app"
    assert cfg["config"]["Labels"] == {"a": "b"}
    assert cfg["config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert cfg["config"]["User"] == "app"
    assert len(cfg["rootfs"]["diff_ids"]) == 4  # base + WORKDIR + COPY + RUN
    by = [h.get("created_by", "") for h in cfg["history"]]
    assert "COPY hello.txt . # buildkit" in by and "ENV GREETING=hi" in by
    assert any(b.startswith("RUN /bin/sh -c echo built") for b in by)
    layers = img["manifest"]["layers"]
    copied = layer_files(base, layers[2]["digest"])
    assert copied["app/hello.txt"].uid == 0 and copied["app/hello.txt"].mode & 0o777 == 0o644
    ran = layer_files(base, layers[3]["digest"])
    assert "app/built" in ran and "app/hello.txt" not in ran

    r2 = build(base, ctx, "-t", "app")
    assert r2.returncode == 0, r2.stderr.decode()
    assert all(res == "CACHED" for _, res in steps(r2.stderr)), r2.stderr.decode()
    img2 = validate_layout(base, "app")
    assert img2["digest"] == img["digest"]  # a no-op rebuild gives the same image


def test_scratch_copy_and_iidfile(base: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nCOPY a b /data/\n", "a": "A", "b": "B"})
    iid = tmp_path / "iid"
    meta = tmp_path / "meta.json"
    r = build(base, ctx, "-t", "data", "--iidfile", str(iid), "--metadata-file", str(meta))
    assert r.returncode == 0, r.stderr.decode()
    img = validate_layout(base, "data")
    assert iid.read_text() == img["manifest"]["config"]["digest"]
    assert json.loads(meta.read_text())["containerimage.digest"] == img["digest"]
    files = layer_files(base, img["manifest"]["layers"][0]["digest"])
    assert {"data", "data/a", "data/b"} <= set(files)


def test_failing_run_reports_line_status_and_output(base: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo one\nRUN echo oops-output; exit 3\n"})
    r = build(base, ctx, "-t", "bad")
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "Traceback" not in err
    assert "Dockerfile:3:" in err and "exited with status 3" in err and "oops-output" in err
    # the store stays consistent and the good step is cached for next time
    validate_layout(base)
    r2 = build(base, ctx, "-t", "bad")
    assert ("RUN echo one", "CACHED") in steps(r2.stderr)


def test_missing_copy_source_is_a_clear_error(base: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nCOPY src/ /app/\n", "src/x": "x",
                                       ".dockerignore": "src\n"})
    r = build(base, ctx)
    err = r.stderr.decode()
    assert r.returncode == 1 and "Traceback" not in err
    assert "Dockerfile:2:" in err and "not found in build context" in err and ".dockerignore" in err


def test_malformed_platform_is_a_usage_error(base: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM scratch\n"})
    r = build(base, ctx, "--platform", "linux/")
    assert r.returncode == 2 and b"invalid platform" in r.stderr
