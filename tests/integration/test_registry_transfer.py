"""Push and pull through a real docker-registry, build-free: images made with the oci library.

Round trips keep digests; skopeo reads what we pushed; indexes resolve to linux/amd64;
failures (unknown tag, bad credentials, registry down, corrupt or truncated blobs) leave
nothing half-written in the store.
"""
from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from builder.errors import AuthError, DigestMismatch, NotFound, RegistryError
from builder.oci import mediatypes as mt
from builder.oci.config import ImageConfig
from builder.oci.image import Image, write_image
from builder.oci.layout import ImageStore
from builder.oci.model import Descriptor, Index, Platform
from builder.registry.auth import Credentials
from builder.registry.transfer import BlobProgress, Options, pull, push, remote_digest
from tests.fixtures.registry import docker_config, registry, registry_basic, start_registry  # noqa: F401

pytestmark = pytest.mark.registry


def make_layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzip layer tar of `files` and its diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0), diff_id


def make_image(store: ImageStore, tag: str, *, layers: int = 2, size: int = 200_000, seed: str = "",
               arch: str = "amd64", media_type: str = mt.OCI_MANIFEST) -> Descriptor:
    """An image of `layers` random-content gzip layers in `store`, tagged `tag`."""
    store.ensure()
    docker = media_type == mt.DOCKER_MANIFEST
    cfg = ImageConfig(architecture=arch, os="linux", author=f"seed {seed}" if seed else None)
    descs = []
    for i in range(layers):
        blob, diff_id = make_layer({f"file-{seed}-{i}": os.urandom(size)})
        d = store.blobs.put_bytes(blob, mt.DOCKER_LAYER_GZIP if docker else mt.OCI_LAYER_GZIP)
        descs.append(d)
        cfg = cfg.with_layer(diff_id)
    desc = write_image(store.blobs, cfg, descs, media_type=media_type)
    store.tag(tag, desc)
    return desc


def all_blobs(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "blobs" / "sha256").iterdir()) if (root / "blobs").exists() else []


def leftovers(root: Path) -> list[str]:
    tmp = root / "tmp"
    return sorted(os.listdir(tmp)) if tmp.exists() else []


def test_push_pull_round_trip_keeps_digests_and_skopeo_agrees(registry, docker_config, tmp_path):
    a = ImageStore(tmp_path / "a")
    desc = make_image(a, "app:v1", layers=3)
    events: list[BlobProgress] = []
    pushed = push(a, "app:v1", [registry.ref("rt/app", "v1"), registry.ref("rt/app", "latest")],
                  progress=events.append)
    assert pushed.digest == desc.digest
    assert {e.status for e in events} >= {"uploading", "done"}
    # the second tag found every blob already there
    assert sum(e.status == "exists" for e in events) == 4

    out = subprocess.run(["skopeo", "inspect", *registry.skopeo_args(), f"docker://{registry.ref('rt/app', 'v1')}"],
                         capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["Digest"] == desc.digest
    assert len(info["Layers"]) == 3 and info["Architecture"] == "amd64"

    b = ImageStore(tmp_path / "b")
    pevents: list[BlobProgress] = []
    got = pull(registry.ref("rt/app", "latest"), b, progress=pevents.append)
    assert got.digest == desc.digest
    assert all_blobs(tmp_path / "a") == all_blobs(tmp_path / "b")
    assert b.resolve(registry.ref("rt/app", "latest")).digest == desc.digest
    img = Image.load(b.blobs, got)
    assert len(img.layers) == 3
    for dg in all_blobs(tmp_path / "b"):  # every blob verifies
        assert b.blobs.verify("sha256:" + dg) is None
    done = [e for e in pevents if e.status == "done"]
    assert len(done) == 4 and all(e.done == e.total for e in done)
    assert leftovers(tmp_path / "b") == []
    # pulling again downloads nothing
    again: list[BlobProgress] = []
    pull(registry.ref("rt/app", "latest"), b, progress=again.append)
    assert {e.status for e in again} == {"exists"}


def test_cross_repository_mount_and_chunked_upload(registry, docker_config, tmp_path):
    a = ImageStore(tmp_path / "a")
    desc = make_image(a, "m:1", layers=2, size=300_000, seed="mount")
    events: list[BlobProgress] = []
    opts = Options(chunk_size=64 * 1024)
    push(a, "m:1", [registry.ref("mnt/one", "1"), registry.ref("mnt/two", "1")], progress=events.append,
         options=opts)
    statuses = [e.status for e in events if e.status in ("done", "mounted", "exists")]
    assert statuses.count("done") == 3  # config + 2 layers uploaded once...
    assert statuses.count("mounted") == 3  # ...and mounted into the second repository
    chunked = [e for e in events if e.status == "uploading" and e.total > 64 * 1024]
    assert len({e.done for e in chunked}) > 4  # several PATCH chunks per big layer
    b = ImageStore(tmp_path / "b")
    assert pull(registry.ref("mnt/two", "1"), b).digest == desc.digest
    assert remote_digest(registry.ref("mnt/one", "1")) == desc.digest


def test_docker_schema2_and_index_selects_linux_amd64(registry, docker_config, tmp_path):
    a = ImageStore(tmp_path / "a")
    amd = make_image(a, "multi:amd64", layers=1, seed="amd", media_type=mt.DOCKER_MANIFEST)
    arm = make_image(a, "multi:arm64", layers=1, seed="arm", arch="arm64", media_type=mt.DOCKER_MANIFEST)
    index = Index(manifests=(
        Descriptor(mt.DOCKER_MANIFEST, arm.digest, arm.size, platform=Platform("arm64", "linux")),
        Descriptor(mt.DOCKER_MANIFEST, amd.digest, amd.size, platform=Platform("amd64", "linux"))),
        media_type=mt.DOCKER_MANIFEST_LIST)
    idesc = a.blobs.put_bytes(index.to_json(), mt.DOCKER_MANIFEST_LIST)
    a.tag("multi:all", idesc)
    assert push(a, "multi:all", registry.ref("idx/multi", "all")).digest == idesc.digest
    b = ImageStore(tmp_path / "b")
    got = pull(registry.ref("idx/multi", "all"), b)
    assert got.digest == amd.digest and got.media_type == mt.DOCKER_MANIFEST
    assert got.platform == Platform("amd64", "linux")
    # only the selected platform's blobs came down
    assert not b.blobs.has(Image.load(a.blobs, arm).layers[0].digest)
    got_arm = pull(registry.ref("idx/multi", "all"), ImageStore(tmp_path / "c"), platform="linux/arm64")
    assert got_arm.digest == arm.digest
    with pytest.raises(RegistryError, match=r"no image for platform linux/s390x in the index \(has: linux/arm64, linux/amd64\)"):
        pull(registry.ref("idx/multi", "all"), ImageStore(tmp_path / "d"), platform="linux/s390x")
    # by digest: index digest pins, and is verified
    got = pull(f"{registry.host}/idx/multi@{idesc.digest}", ImageStore(tmp_path / "e"))
    assert got.digest == amd.digest


def test_basic_auth_push_pull_from_docker_config(registry_basic, docker_config, tmp_path):
    from builder.registry import auth

    a = ImageStore(tmp_path / "a")
    desc = make_image(a, "sec:1", layers=1)
    with pytest.raises(AuthError, match=rf"^{registry_basic.host}: .* needs a login"):
        push(a, "sec:1", registry_basic.ref("sec/app", "1"))
    wrong = Options(credentials=Credentials("tester", "nope"))
    with pytest.raises(AuthError, match=rf"^{registry_basic.host}: authentication failed"):
        push(a, "sec:1", registry_basic.ref("sec/app", "1"), options=wrong)
    auth.store(registry_basic.host, Credentials(registry_basic.username, registry_basic.password))
    push(a, "sec:1", registry_basic.ref("sec/app", "1"))
    assert pull(registry_basic.ref("sec/app", "1"), ImageStore(tmp_path / "b")).digest == desc.digest


def test_unknown_repo_and_tag(registry, docker_config, tmp_path):
    b = ImageStore(tmp_path / "b")
    with pytest.raises(NotFound, match=rf"^{registry.host}: manifest nosuch/repo:v9 not found"):
        pull(registry.ref("nosuch/repo", "v9"), b)
    assert all_blobs(tmp_path / "b") == []


def test_registry_down(docker_config, tmp_path):
    with start_registry(tmp_path / "r") as reg:
        host = reg.host
    with pytest.raises(RegistryError, match=rf"^cannot reach registry {host}"):
        pull(f"{host}/a/b:c", ImageStore(tmp_path / "b"), options=Options(backoff=0.01))
    assert all_blobs(tmp_path / "b") == []


def test_corrupt_blob_on_the_registry_is_refused(registry, docker_config, tmp_path):
    a = ImageStore(tmp_path / "a")
    desc = make_image(a, "bad:1", layers=1, seed="corrupt")
    push(a, "bad:1", registry.ref("corrupt/app", "1"))
    layer = Image.load(a.blobs, desc).layers[0]
    # flip bytes in the registry's own storage (same size): the registry serves it unchanged
    data_path = (registry.storage / "docker/registry/v2/blobs/sha256" / layer.digest.hex[:2] / layer.digest.hex / "data")
    raw = bytearray(data_path.read_bytes())
    raw[100:110] = b"X" * 10
    data_path.write_bytes(bytes(raw))
    b = ImageStore(tmp_path / "b")
    with pytest.raises(DigestMismatch, match=rf"^{registry.host}: blob {layer.digest} of corrupt/app failed verification"):
        pull(registry.ref("corrupt/app", "1"), b)
    assert not b.blobs.has(layer.digest)
    assert leftovers(tmp_path / "b") == []
    with pytest.raises(Exception):
        b.resolve(registry.ref("corrupt/app", "1"))  # not tagged


class _FlakyProxy:
    """An HTTP proxy to the registry that cuts every blob response after `cut` bytes
    `failures` times, then behaves (to exercise resume with Range + retry)."""

    def __init__(self, upstream: str, cut: int, failures: int) -> None:
        import urllib.request

        self.failures, self.ranges = failures, []
        proxy = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _relay(self, method):
                req = urllib.request.Request(f"http://{upstream}{self.path}", method=method,
                                             headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                try:
                    resp = urllib.request.urlopen(req)
                except urllib.error.HTTPError as e:
                    resp = e
                body = resp.read()
                is_blob = "/blobs/sha256:" in self.path and method == "GET"
                if is_blob:
                    proxy.ranges.append(self.headers.get("Range"))
                self.send_response(resp.status if hasattr(resp, "status") else resp.code)
                for k, v in resp.headers.items():
                    if k.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.end_headers()
                if is_blob and proxy.failures > 0 and len(body) > cut:
                    proxy.failures -= 1
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

            def do_GET(self):
                self._relay("GET")

            def do_HEAD(self):
                self._relay("HEAD")

        import urllib.error  # noqa: F401

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_interrupted_download_resumes_and_retries(registry, docker_config, tmp_path):
    a = ImageStore(tmp_path / "a")
    desc = make_image(a, "flaky:1", layers=1, size=400_000, seed="flaky")
    push(a, "flaky:1", registry.ref("flaky/app", "1"))
    proxy = _FlakyProxy(registry.host, cut=50_000, failures=2)
    try:
        b = ImageStore(tmp_path / "b")
        fast = Options(backoff=0.01)
        got = pull(f"{proxy.host}/flaky/app:1", b, options=fast)
        assert got.digest == desc.digest
        assert any(r and r.startswith("bytes=") for r in proxy.ranges)  # resumed, not restarted
        assert leftovers(tmp_path / "b") == []
        # more cuts than attempts: a one-line error and nothing stored for that blob
        proxy.failures = 10
        c = ImageStore(tmp_path / "c")
        with pytest.raises(RegistryError, match=rf"^{proxy.host}: download of blob .* failed after 4 attempts"):
            pull(f"{proxy.host}/flaky/app:1", c, options=Options(backoff=0.01))
        assert leftovers(tmp_path / "c") == []
        layer = Image.load(a.blobs, desc).layers[0]
        assert not c.blobs.has(layer.digest)
    finally:
        proxy.stop()


def test_push_of_unknown_local_image(registry, docker_config, tmp_path):
    from builder.errors import ImageNotFound

    with pytest.raises(ImageNotFound):
        push(ImageStore(tmp_path / "a"), "nothing:here", registry.ref("x/y", "1"))


def test_push_mounts_layers_of_a_base_pulled_from_the_same_registry(registry, docker_config, tmp_path):
    # someone published a base image; we pulled it, built on top, and push under another name
    pub = ImageStore(tmp_path / "pub")
    make_image(pub, "base:1", layers=2, size=150_000, seed="base")
    push(pub, "base:1", registry.ref("shared/base", "1"))
    mine = ImageStore(tmp_path / "mine")
    base = pull(registry.ref("shared/base", "1"), mine)
    img = Image.load(mine.blobs, base)
    blob, diff_id = make_layer({"app": b"my app"})
    top = mine.blobs.put_bytes(blob, mt.OCI_LAYER_GZIP)
    desc = write_image(mine.blobs, img.config.with_layer(diff_id), [*img.layers, top])
    mine.tag("app:1", desc)
    events: list[BlobProgress] = []
    push(mine, "app:1", registry.ref("team/app", "1"), progress=events.append)
    final = {e.digest: e.status for e in events if e.status in ("done", "mounted", "exists")}
    assert [final[d.digest] for d in img.layers] == ["mounted", "mounted"]
    assert final[top.digest] == "done"
    assert pull(registry.ref("team/app", "1"), ImageStore(tmp_path / "check")).digest == desc.digest


def test_push_by_short_tag_never_picks_an_image_by_id_prefix(registry, docker_config, tmp_path):
    # "app:1" also matches the digest grammar (algorithm "app", hex "1"); the store once resolved
    # it to any image whose id started with "1" and push sent that image.
    store = ImageStore(tmp_path / "s")
    other = None
    for i in range(200):  # an image whose config digest (its id) starts with "1"
        d = make_image(store, f"other{i}:x", layers=0, seed=str(i))
        cfg = json.loads(store.blobs.read_bytes(d.digest))["config"]["digest"]
        if cfg.startswith("sha256:1"):
            other = d
            break
        store.untag(f"other{i}:x")
    assert other is not None
    mine = make_image(store, "app:1", layers=1, seed="mine")
    assert store.resolve("app:1").digest == mine.digest
    assert push(store, "app:1", registry.ref("short/app", "1")).digest == mine.digest


def test_a_failing_blob_cancels_its_siblings(registry, docker_config, tmp_path):
    """One blob fails: the others stop at their next chunk (temp files removed), not run to the end."""
    import time

    a = ImageStore(tmp_path / "a")
    desc = make_image(a, "cancel:1", layers=3, size=12_000_000, seed="cancel")
    push(a, "cancel:1", registry.ref("cancel/app", "1"))
    layers = Image.load(a.blobs, desc).layers
    victim = layers[0].digest

    def progress(e: BlobProgress) -> None:
        if e.status == "downloading":
            if e.digest == victim:
                raise RuntimeError("disk on fire")
            time.sleep(0.2)  # the others are slow: ~12 chunks each, 2.4 s to the end

    b = ImageStore(tmp_path / "b")
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="disk on fire"):
        pull(registry.ref("cancel/app", "1"), b, progress=progress, options=Options(jobs=3))
    assert time.monotonic() - t0 < 2.0  # the siblings did not run their 2.4 s to the end
    assert not any(b.blobs.has(layer.digest) for layer in layers)
    assert leftovers(tmp_path / "b") == []
