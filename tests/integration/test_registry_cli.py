"""`pybuild push/pull/login/logout` through the real entry point against real registries."""
from __future__ import annotations

import base64
import json

import pytest

from builder.oci.layout import ImageStore
from tests.conftest import run_cli
from tests.fixtures.registry import docker_config, registry, registry_basic, registry_tls, start_registry  # noqa: F401
from tests.integration.test_registry_transfer import make_image

pytestmark = pytest.mark.registry


def _err(p) -> str:
    return p.stderr.decode()


def test_push_then_pull_into_an_empty_store(registry, docker_config, tmp_path, monkeypatch):
    monkeypatch.setenv("PYBUILD_ROOT", str(tmp_path / "a"))
    desc = make_image(ImageStore(tmp_path / "a"), "cliapp:v1", layers=2)
    dest = registry.ref("cli/app", "v1")
    p = run_cli("push", "--progress=plain", "cliapp:v1", dest, registry.ref("cli/app", "v2"))
    assert p.returncode == 0, _err(p)
    out = p.stdout.decode().splitlines()
    assert out == [f"{dest}: digest: {desc.digest} size: {desc.size}",
                   f"{registry.ref('cli/app', 'v2')}: digest: {desc.digest} size: {desc.size}"]
    assert "push " in _err(p) and "DONE" in _err(p)

    monkeypatch.setenv("PYBUILD_ROOT", str(tmp_path / "b"))
    p = run_cli("pull", "--progress=plain", dest)
    assert p.returncode == 0, _err(p)
    assert p.stdout.decode() == f"{dest}: pulled {desc.digest}\n"
    assert ImageStore(tmp_path / "b").resolve(dest).digest == desc.digest
    # quiet pull of what is already there
    p = run_cli("pull", "-q", dest)
    assert (p.returncode, p.stdout.decode(), p.stderr.decode()) == (0, f"{dest}\n", "")


def test_push_own_name_and_json_progress(registry, docker_config, tmp_path, monkeypatch):
    monkeypatch.setenv("PYBUILD_ROOT", str(tmp_path / "a"))
    name = registry.ref("cli/self", "1")
    desc = make_image(ImageStore(tmp_path / "a"), name, layers=1)
    p = run_cli("push", "--progress=json", "-j", "2", "--chunk-size", "64k", name)
    assert p.returncode == 0, _err(p)
    events = [json.loads(line) for line in _err(p).splitlines()]
    assert {e["event"] for e in events} >= {"StepStarted", "StepFinished", "BuildFinished"}
    p = run_cli("push", "-q", name)  # again: everything exists
    assert p.returncode == 0 and p.stdout.decode() == desc.digest + "\n"


@pytest.mark.parametrize("args, fragment", [
    (["pull", "Bad:Ref"], "error: invalid reference 'Bad:Ref'"),
    (["pull", "{host}/no/such:tag"], "error: {host}: manifest no/such:tag not found"),
    (["push", "not-here:1", "{host}/x/y:1"], "error: no image 'not-here:1' in the local store"),
    (["push", "--chunk-size", "zero", "a"], "invalid size 'zero'"),
])
def test_bad_input_is_one_line(registry, docker_config, pybuild_root, args, fragment):
    p = run_cli(*[a.format(host=registry.host) for a in args])
    err = _err(p)
    assert p.returncode in (1, 2), err
    assert fragment.format(host=registry.host) in err
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.startswith(("error", "pybuild: error"))]) == 1


def test_registry_down(docker_config, pybuild_root, tmp_path):
    with start_registry(tmp_path / "r") as reg:
        host = reg.host
    p = run_cli("pull", f"{host}/a/b:c")
    assert p.returncode == 1
    assert _err(p).startswith(f"error: cannot reach registry {host}") and "Traceback" not in _err(p)


def test_login_logout_with_basic_auth(registry_basic, docker_config, tmp_path, monkeypatch):
    host = registry_basic.host
    monkeypatch.setenv("PYBUILD_ROOT", str(tmp_path / "a"))
    make_image(ImageStore(tmp_path / "a"), "sec:1", layers=1)
    p = run_cli("push", "sec:1", f"{host}/sec/cli:1")
    assert p.returncode == 1 and f"error: {host}: " in _err(p) and "needs a login" in _err(p)

    p = run_cli("login", "-u", "tester", "--password-stdin", host, input=b"wrong\n")
    assert p.returncode == 1
    assert _err(p).startswith(f"error: {host}: authentication failed")
    assert not (docker_config / "config.json").exists()  # nothing saved on failure

    p = run_cli("login", "-u", "tester", "--password-stdin", f"http://{host}/v2/", input=b"s3cret-pw\n")
    assert p.returncode == 0, _err(p)
    assert p.stdout.decode().startswith(f"Login Succeeded ({host}")
    entry = json.loads((docker_config / "config.json").read_text())["auths"][host]
    assert base64.b64decode(entry["auth"]) == b"tester:s3cret-pw"

    p = run_cli("push", "sec:1", f"{host}/sec/cli:1")
    assert p.returncode == 0, _err(p)
    p = run_cli("logout", host)
    assert p.returncode == 0 and "Removing login credentials" in p.stdout.decode()
    assert host not in json.loads((docker_config / "config.json").read_text()).get("auths", {})
    p = run_cli("pull", f"{host}/sec/cli:1")
    assert p.returncode == 1 and "needs a login" in _err(p)


def test_login_usage_errors(docker_config, pybuild_root):
    p = run_cli("login", "--password-stdin", "x.example", input=b"pw\n")
    assert p.returncode == 2 and "--password-stdin needs --username" in _err(p)
    p = run_cli("login", "-u", "u", "x.example", input=b"")
    assert p.returncode == 2 and "when stdin is not a terminal" in _err(p)


def test_tls_with_ca_cert(registry_tls, docker_config, tmp_path, monkeypatch):
    monkeypatch.setenv("PYBUILD_ROOT", str(tmp_path / "a"))
    desc = make_image(ImageStore(tmp_path / "a"), "t:1", layers=1)
    dest = f"{registry_tls.host}/tls/cli:1"
    p = run_cli("push", "--ca-cert", str(registry_tls.ca_cert), "t:1", dest)
    assert p.returncode == 0, _err(p)
    monkeypatch.setenv("PYBUILD_ROOT", str(tmp_path / "b"))
    p = run_cli("pull", "--ca-cert", str(registry_tls.ca_cert), dest)
    assert p.returncode == 0, _err(p)
    assert ImageStore(tmp_path / "b").resolve(dest).digest == desc.digest
    p = run_cli("pull", "--ca-cert", str(tmp_path / "missing.pem"), dest)
    assert p.returncode == 2 and "--ca-cert" in _err(p)


def test_pull_through_a_mirror_from_settings(registry, docker_config, tmp_path, monkeypatch):
    # docker.io is mirrored by our registry: `pull mirrored:1` never leaves the machine.
    monkeypatch.setenv("PYBUILD_ROOT", str(tmp_path / "a"))
    desc = make_image(ImageStore(tmp_path / "a"), "m:1", layers=1)
    assert run_cli("push", "m:1", registry.ref("library/mirrored", "1")).returncode == 0
    with start_registry(tmp_path / "down") as down:
        down_host = down.host  # a mirror that is down is skipped
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"mirrors:\n  docker.io: ['{down_host}', '{registry.host}']\n")
    p = run_cli("pull", "mirrored:1", env={"PYBUILD_ROOT": str(tmp_path / "b"), "PYBUILD_CONFIG": str(cfg)})
    assert p.returncode == 0, _err(p)
    assert p.stdout.decode() == f"mirrored:1: pulled {desc.digest}\n"
    assert ImageStore(tmp_path / "b").resolve("docker.io/library/mirrored:1").digest == desc.digest


def test_login_to_a_token_registry_then_push(docker_config, tmp_path, monkeypatch):
    from tests.fixtures.registry import start_registry as start

    with start(tmp_path / "tok", auth="token") as reg:
        p = run_cli("login", "-u", "tester", "--password-stdin", reg.host, input=b"bad\n")
        assert p.returncode == 1 and _err(p).startswith(f"error: {reg.host}: authentication failed for a token")
        p = run_cli("login", "-u", "tester", "--password-stdin", reg.host, input=b"s3cret-pw\n")
        assert p.returncode == 0, _err(p)
        monkeypatch.setenv("PYBUILD_ROOT", str(tmp_path / "a"))
        desc = make_image(ImageStore(tmp_path / "a"), "t:1", layers=1)
        p = run_cli("push", "-q", "t:1", f"{reg.host}/tok/cli:1")
        assert (p.returncode, p.stdout.decode()) == (0, desc.digest + "\n"), _err(p)
        assert any(r["scope"] == ["repository:tok/cli:pull,push"] for r in reg.token_server.requests)


def test_pybuild_import_push_pull_skopeo(registry, docker_config, tmp_path, monkeypatch):
    """Build-free round trip through the CLI only: import a rootfs tar, push, pull elsewhere."""
    import io
    import subprocess
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in {"etc/hello": b"hi\n", "bin/tool": b"#!/bin/sh\necho tool\n"}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "rootfs.tar").write_bytes(buf.getvalue())
    monkeypatch.setenv("PYBUILD_ROOT", str(tmp_path / "a"))
    p = run_cli("import", str(tmp_path / "rootfs.tar"), "imported:1")
    assert p.returncode == 0, _err(p)
    dest = registry.ref("cli/imported", "1")
    p = run_cli("push", "-q", "imported:1", dest)
    assert p.returncode == 0, _err(p)
    digest = p.stdout.decode().strip()
    raw = subprocess.run(["skopeo", "inspect", "--raw", *registry.skopeo_args(), f"docker://{dest}"],
                         capture_output=True, check=True).stdout
    import hashlib

    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    monkeypatch.setenv("PYBUILD_ROOT", str(tmp_path / "b"))
    p = run_cli("pull", "-q", dest)
    assert p.returncode == 0, _err(p)
    assert str(ImageStore(tmp_path / "b").resolve(dest).digest) == digest
