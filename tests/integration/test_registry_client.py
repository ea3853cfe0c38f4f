"""The Distribution API client against a real docker-registry: plain, Basic, TLS, Bearer token."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from builder.errors import AuthError, NotFound, RegistryError
from builder.registry.auth import Credentials
from builder.registry.client import OCI_MANIFEST, RegistryClient
from tests.fixtures.registry import (docker_config, registry, registry_basic, registry_tls,  # noqa: F401
                                     registry_token, start_registry)

pytestmark = pytest.mark.registry


def _digest(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def _push_tiny_image(c: RegistryClient, repo: str, tag: str = "v1") -> tuple[str, bytes, str]:
    """Chunked layer upload + monolithic config upload + manifest PUT; returns (layer digest, layer, manifest digest)."""
    layer = os.urandom(70_000)
    ld = _digest(layer)
    assert c.blob_size(repo, ld, push=True) is None
    loc = c.start_upload(repo)
    loc = c.upload_chunk(repo, loc, layer[:50_000], 0)
    loc = c.upload_chunk(repo, loc, layer[50_000:], 50_000)
    c.finish_upload(repo, loc, ld)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [ld]}}).encode()
    c.finish_upload(repo, c.start_upload(repo), _digest(cfg), body=cfg, size=len(cfg))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": _digest(cfg), "size": len(cfg)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": ld, "size": len(layer)}]}).encode()
    md = c.put_manifest(repo, tag, manifest, OCI_MANIFEST)
    assert md == _digest(manifest)
    return ld, layer, md


def _round_trip(c: RegistryClient, repo: str) -> None:
    ld, layer, md = _push_tiny_image(c, repo)
    assert c.blob_size(repo, ld) == len(layer)
    data, mt = c.get_manifest(repo, "v1")
    assert mt == OCI_MANIFEST and _digest(data) == md
    info = c.head_manifest(repo, "v1")
    assert (info.digest, info.media_type, info.size) == (md, OCI_MANIFEST, len(data))
    r = c.open_blob(repo, ld)
    assert r.content == layer
    r = c.open_blob(repo, ld, offset=1000)  # resume from an offset (Range)
    assert r.content == layer[1000:]
    assert c.list_tags(repo) == ["v1"]
    # cross-repository mount: no upload, and the blob is there afterwards
    assert c.mount_blob("mounted/here", ld, repo) is True
    assert c.blob_size("mounted/here", ld) == len(layer)


def test_plain_http_round_trip(registry, docker_config):
    c = RegistryClient(registry.host)
    assert c.base_url == f"http://{registry.host}"
    _round_trip(c, "plain/app")


def test_basic_auth_round_trip_and_failures(registry_basic, docker_config):
    good = Credentials(registry_basic.username, registry_basic.password)
    _round_trip(RegistryClient(registry_basic.host, credentials=good), "basic/app")
    with pytest.raises(AuthError, match=rf"{registry_basic.host}: manifest basic/app:v1 needs a login"):
        RegistryClient(registry_basic.host, credentials=None).get_manifest("basic/app", "v1")
    with pytest.raises(AuthError, match=rf"^{registry_basic.host}: authentication failed for manifest basic/app:v1"):
        RegistryClient(registry_basic.host, credentials=Credentials("tester", "wrong")).get_manifest("basic/app", "v1")


def test_tls_with_ca_cert(registry_tls, docker_config):
    c = RegistryClient(registry_tls.host, ca_cert=registry_tls.ca_cert)
    assert c.base_url.startswith("https://")
    _round_trip(c, "tls/app")


def test_tls_without_the_ca_fails_verification(registry_tls, docker_config):
    # As if the host were not insecure: verification against the system CAs must fail cleanly.
    c = RegistryClient(registry_tls.host, insecure=False)
    with pytest.raises(RegistryError, match=rf"{registry_tls.host}: TLS failure .*certificate verify failed") as ei:
        c.get_manifest("tls/app", "v1")
    assert "--ca-cert" in ei.value.hint


def test_insecure_loopback_tls_is_used_unverified(registry_tls, docker_config):
    # Loopback is insecure by default: https is tried first and used without verification.
    c = RegistryClient(registry_tls.host)
    assert c.base_url.startswith("https://")
    with pytest.raises(NotFound):
        c.get_manifest("nope/nope", "v1")


def test_bearer_token_flow(registry_token, docker_config):
    ts = registry_token.token_server
    ts.requests.clear()
    c = RegistryClient(registry_token.host, credentials=Credentials(registry_token.username, registry_token.password))
    _round_trip(c, "tok/app")
    asked = [r for r in ts.requests]
    assert asked and all(r["service"] == ts.service and r["user"] == "tester" for r in asked)
    scopes = {s for r in asked for s in r["scope"]}
    assert "repository:tok/app:pull,push" in scopes
    assert "repository:tok/app:pull" in scopes
    # the mount asked for push on the target and pull on the source in one token
    assert any(set(r["scope"]) == {"repository:mounted/here:pull,push", "repository:tok/app:pull"} for r in asked)
    # tokens are reused: far fewer token requests than registry requests
    assert len(asked) <= 6


def test_bearer_wrong_password_and_anonymous(registry_token, docker_config):
    with pytest.raises(AuthError, match=rf"^{registry_token.host}: authentication failed for a token"):
        RegistryClient(registry_token.host, credentials=Credentials("tester", "bad")).get_manifest("tok/app", "v1")
    # anonymous gets a token without rights; the registry then refuses
    with pytest.raises(AuthError, match=rf"^{registry_token.host}: authentication failed for manifest tok/app:v1"):
        RegistryClient(registry_token.host, credentials=None).get_manifest("tok/app", "v1")


def test_credentials_come_from_docker_config(registry_basic, docker_config):
    from builder.registry import auth

    auth.store(registry_basic.host, Credentials(registry_basic.username, registry_basic.password))
    c = RegistryClient(registry_basic.host)  # credentials looked up from $DOCKER_CONFIG
    c.ping()


def test_unknown_repo_tag_and_blob(registry, docker_config):
    c = RegistryClient(registry.host)
    with pytest.raises(NotFound, match=rf"^{registry.host}: manifest no/such:tag not found \(NAME_UNKNOWN|MANIFEST_UNKNOWN"):
        c.get_manifest("no/such", "tag")
    assert c.blob_size("no/such", "sha256:" + "0" * 64) is None
    assert c.head_manifest("no/such", "tag") is None


def test_registry_down_is_one_line(tmp_path, docker_config):
    with start_registry(tmp_path / "r") as reg:
        host = reg.host
    c = RegistryClient(host, retries=2, backoff=0.01)
    with pytest.raises(RegistryError, match=rf"^cannot reach registry {host}( \(manifest a:b\))?: connection refused$"):
        c.get_manifest("a", "b")


def test_identity_token_from_docker_config(registry_token, docker_config):
    ts = registry_token.token_server
    (docker_config / "config.json").write_text(json.dumps(
        {"auths": {registry_token.host: {"auth": "", "identitytoken": ts.refresh_token}}}))
    ts.requests.clear()
    c = RegistryClient(registry_token.host)  # credentials from $DOCKER_CONFIG
    assert c.credentials.identity_token == ts.refresh_token
    _push_tiny_image(c, "tok/refresh")
    assert ts.requests and all(r["user"] == "refresh" and r["client_id"] == "pybuild" for r in ts.requests)
    (docker_config / "config.json").write_text(json.dumps({"auths": {registry_token.host: {"identitytoken": "stale"}}}))
    with pytest.raises(AuthError, match=rf"^{registry_token.host}: authentication failed for a token"):
        RegistryClient(registry_token.host).get_manifest("tok/refresh", "v1")


def test_oversized_manifest_is_refused(docker_config):
    """A hostile endpoint streaming an endless 'manifest' is cut off at 4 MiB, not read into memory."""
    import http.server
    import threading

    class Endless(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", OCI_MANIFEST)
            self.end_headers()
            try:
                for _ in range(64):  # 64 MiB if nobody stops reading
                    self.wfile.write(b" " * (1 << 20))
            except (BrokenPipeError, ConnectionResetError):
                pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{srv.server_address[1]}"
        with pytest.raises(RegistryError, match=rf"^{host}: manifest a/b:c is larger than 4194304 bytes"):
            RegistryClient(host).get_manifest("a/b", "c")
    finally:
        srv.shutdown()
        srv.server_close()
