"""More end-to-end behaviour: json progress, ADD from a URL, RUN --network, symlinked destinations."""
from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.buildlib import build, layer_files, ok, validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


def test_json_progress_is_one_event_per_line(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo json-out\n"})
    r = run_cli("build", "--progress=json", str(ctx), env={"PYBUILD_ROOT": str(root)})
    ok(r)
    events = [json.loads(ln) for ln in r.stderr.decode().splitlines() if ln.strip()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "BuildStarted" and kinds[-1] == "BuildFinished"
    assert "StepStarted" in kinds and "StepFinished" in kinds
    assert any(e["event"] == "StepLog" and "json-out" in e["data"] for e in events)


def test_quiet_prints_only_the_image_id(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN true\n"})
    r = run_cli("build", "-q", str(ctx), env={"PYBUILD_ROOT": str(root)})
    ok(r)
    assert r.stdout.decode().strip().startswith("sha256:") and r.stderr == b""


@pytest.fixture
def http_server(tmp_path: Path):
    d = tmp_path / "www"
    d.mkdir()
    (d / "payload.txt").write_text("downloaded-content\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(d), **kw)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_add_url_with_checksum(root: Path, tmp_path: Path, http_server: str) -> None:
    want = "sha256:" + hashlib.sha256(b"downloaded-content\n").hexdigest()
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": f"FROM busybox\nADD --checksum={want} {http_server}/payload.txt /dl/\n"
                                                     "RUN cat /dl/payload.txt\n"})
    r = build(root, ctx, "-t", "url")
    ok(r)
    assert b"downloaded-content" in r.stderr
    img = validate_layout(root, "url")
    files = layer_files(root, img["manifest"]["layers"][1]["digest"])
    assert files["dl/payload.txt"].mode & 0o777 == 0o600
    bad = write_ctx(tmp_path / "bad", {"Dockerfile": f"FROM busybox\nADD --checksum=sha256:{'0' * 64} "
                                                     f"{http_server}/payload.txt /dl/\n"})
    r = build(root, bad)
    assert r.returncode == 1 and b"checksum mismatch" in r.stderr


def test_run_network_none_has_only_loopback(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN --network=none ls /sys/class/net | tr '\\n' ' '"
                                                     " && echo\n"})
    r = build(root, ctx)
    ok(r)
    logs = [ln.split(" ", 2)[2].strip() for ln in r.stderr.decode().splitlines()
            if ln.startswith("#2 ") and ln.split(" ")[1][:1].isdigit() and "." in ln.split(" ")[1]]
    assert logs == ["lo"], r.stderr.decode()


def test_copy_follows_symlinked_directories_inside_the_rootfs_only(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": """FROM busybox
RUN mkdir -p /real && ln -s /real /link && ln -s ../../../../../etc /escape
COPY f.txt /link/
COPY g.txt /escape/
""", "f.txt": "F", "g.txt": "G"})
    r = build(root, ctx, "-t", "links")
    ok(r)
    img = validate_layout(root, "links")
    layers = img["manifest"]["layers"]
    assert "real/f.txt" in layer_files(root, layers[2]["digest"])
    assert "etc/g.txt" in layer_files(root, layers[3]["digest"])  # `..` stops at the image's root
    assert not Path("/etc/g.txt").exists()


@pytest.mark.root_only  # umoci unpack as root (it chowns the rootfs)
def test_from_oci_layout_and_external_tools_read_the_result(root: Path, tmp_path: Path) -> None:
    import subprocess

    layout = tmp_path / "layout"
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo layer > /layer.txt\n"})
    gz = {"PYBUILD_COMPRESSION": "gzip"}  # Debian's umoci cannot read zstd layers
    # the index entry's ref.name is the name's tag, as BuildKit writes it
    ok(build(root, ctx, "-t", "exported", "-o", f"type=oci,dest={layout},tar=false,name=exported:exported", env=gz))
    child = write_ctx(tmp_path / "child", {"Dockerfile": f"FROM oci-layout://{layout}:exported\nRUN cat /layer.txt && cp /layer.txt /copy.txt\n"})
    r = build(root, child, "-t", "child", env=gz)
    ok(r)
    assert b"layer" in r.stderr
    validate_layout(root, "child")
    # other tools read our store as it is
    r = subprocess.run(["skopeo", "inspect", f"oci:{root}:child"], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    assert len(json.loads(r.stdout)["Layers"]) == 3
    bundle = tmp_path / "bundle"
    r = subprocess.run(["umoci", "unpack", "--image", f"{root}:child", str(bundle)], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    assert (bundle / "rootfs" / "layer.txt").read_text() == "layer\n"
    r = subprocess.run(["oci-image-tool", "validate", "--type", "image", "--ref", "name=exported", str(layout)],
                       capture_output=True)
    assert r.returncode == 0 and b"Validation succeeded" in r.stdout + r.stderr, (r.stdout + r.stderr).decode()


def test_run_that_cannot_start_names_the_line(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nRUN true\n"})
    r = build(root, ctx)
    assert r.returncode == 1 and b"Traceback" not in r.stderr
    assert b"Dockerfile:2:1: error: RUN could not start" in r.stderr
    # RUN --mount from an image that is only referenced there, exec form on scratch
    ctx = write_ctx(tmp_path / "c2", {"Dockerfile": 'FROM scratch\nRUN --mount=type=bind,from=busybox,target=/bb '
                                                    '["/bb/bin/busybox", "echo", "exec-ok"]\n'})
    r = build(root, ctx)
    ok(r)
    assert b"exec-ok" in r.stderr


def test_an_image_deeper_than_one_page_of_overlay_options(root: Path, tmp_path: Path) -> None:
    # 61 layers: past what one mount(2) option page holds as snapshot paths (~45); RUN steps on
    # top of it and `pybuild run` mount it through the new mount API.
    lines = ["FROM busybox"] + [f"RUN echo {i} > /f{i}" for i in range(60)] + ['CMD ["sh", "-c", "cat /f0 /f59"]']
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "\n".join(lines) + "\n"})
    ok(build(root, ctx, "-t", "deep"))
    img = validate_layout(root, "deep")
    assert len(img["manifest"]["layers"]) == 61
    r = run_cli("run", "--rm", "deep", env={"PYBUILD_ROOT": str(root)})
    assert r.returncode == 0 and r.stdout == b"0\n59\n", r.stderr
