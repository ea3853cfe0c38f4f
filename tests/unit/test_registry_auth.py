"""Credentials the docker way: config.json auths, credHelpers/credsStore (a real helper
executable speaking the docker-credential protocol), and WWW-Authenticate parsing."""
from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from builder.errors import RegistryError
from builder.registry import auth
from builder.registry.auth import Challenge, Credentials, parse_www_authenticate
from tests.fixtures.registry import docker_config_env


@pytest.fixture
def cfgdir(tmp_path, monkeypatch) -> Path:
    return docker_config_env(tmp_path, monkeypatch)


def test_parse_bearer_challenge():
    h = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'
    assert parse_www_authenticate(h) == [Challenge("bearer", {
        "realm": "https://auth.docker.io/token", "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull"})]


def test_parse_basic_and_multiple_challenges_and_escapes():
    assert parse_www_authenticate('Basic realm="Registry Realm"') == [Challenge("basic", {"realm": "Registry Realm"})]
    got = parse_www_authenticate('Basic realm="a\\"b", Bearer realm="r",scope="x y"')
    assert got == [Challenge("basic", {"realm": 'a"b'}), Challenge("bearer", {"realm": "r", "scope": "x y"})]
    assert parse_www_authenticate('bearer realm=tok,service=s') == [Challenge("bearer", {"realm": "tok", "service": "s"})]
    assert parse_www_authenticate("") == []


def test_store_lookup_erase_in_config_json(cfgdir):
    assert auth.lookup("127.0.0.1:5000") is None
    where = auth.store("127.0.0.1:5000", Credentials("u", "p:w"))
    assert where == str(cfgdir / "config.json")
    data = json.loads((cfgdir / "config.json").read_text())
    # docker's own format: base64("user:password") under the host key
    assert base64.b64decode(data["auths"]["127.0.0.1:5000"]["auth"]) == b"u:p:w"
    assert stat.S_IMODE(os.stat(cfgdir / "config.json").st_mode) == 0o600
    c = auth.lookup("127.0.0.1:5000")
    assert (c.username, c.password) == ("u", "p:w")
    assert "p:w" not in repr(c)
    assert auth.erase("127.0.0.1:5000") is True
    assert auth.lookup("127.0.0.1:5000") is None
    assert auth.erase("127.0.0.1:5000") is False


def test_store_keeps_other_keys_and_hub_uses_docker_key(cfgdir):
    (cfgdir / "config.json").write_text(json.dumps({"auths": {"other.io": {"auth": "eDp5"}}, "psFormat": "x"}))
    auth.store("docker.io", Credentials("hub", "pw"))
    data = json.loads((cfgdir / "config.json").read_text())
    assert set(data["auths"]) == {"other.io", "https://index.docker.io/v1/"}
    assert data["psFormat"] == "x"
    assert auth.lookup("docker.io").username == "hub"
    assert auth.lookup("other.io") == Credentials("x", "y")


def test_lookup_matches_url_style_keys_and_username_fields(cfgdir):
    (cfgdir / "config.json").write_text(json.dumps({"auths": {
        "https://reg.example:5000/v2/": {"username": "a", "password": "b"},
        "tok.example": {"identitytoken": "refresh-me"}}}))
    assert auth.lookup("reg.example:5000") == Credentials("a", "b")
    assert auth.lookup("tok.example").identity_token == "refresh-me"


def test_malformed_config_is_a_one_line_error(cfgdir):
    (cfgdir / "config.json").write_text("{not json")
    with pytest.raises(RegistryError, match="not valid JSON"):
        auth.lookup("x.io")
    (cfgdir / "config.json").write_text(json.dumps({"auths": {"x.io": {"auth": "bm9jb2xvbg=="}}}))
    with pytest.raises(RegistryError, match="not base64 of user:password"):
        auth.lookup("x.io")


HELPER = """#!/bin/sh
# A docker-credential helper keeping one JSON file per server (the real protocol: stdin/stdout).
dir="$HELPER_STORE"
read -r input || true
case "$1" in
  get)   f="$dir/$(printf %s "$input" | md5sum | cut -c1-32)"
         if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  store) server=$(printf %s "$input" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ServerURL"])')
         printf %s "$input" > "$dir/$(printf %s "$server" | md5sum | cut -c1-32)" ;;
  erase) f="$dir/$(printf %s "$input" | md5sum | cut -c1-32)"; [ -f "$f" ] && rm "$f" ;;
  *) exit 2 ;;
esac
"""


@pytest.fixture
def helper(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "docker-credential-pbtest"
    exe.write_text(HELPER)
    exe.chmod(0o755)
    store = tmp_path / "helper-store"
    store.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("HELPER_STORE", str(store))
    return store


@pytest.mark.parametrize("key", ["credsStore", "credHelpers"])
def test_credential_helper_round_trip(cfgdir, helper, key):
    conf = {"credsStore": "pbtest"} if key == "credsStore" else {"credHelpers": {"h.example:1": "pbtest"}}
    (cfgdir / "config.json").write_text(json.dumps(conf))
    assert auth.lookup("h.example:1") is None  # helper says "not found": anonymous
    assert auth.store("h.example:1", Credentials("hu", "hp")) == "docker-credential-pbtest"
    assert len(list(helper.iterdir())) == 1
    assert "auths" not in json.loads((cfgdir / "config.json").read_text())  # secret not in the file
    assert auth.lookup("h.example:1") == Credentials("hu", "hp")
    assert auth.erase("h.example:1") is True
    assert auth.lookup("h.example:1") is None


def test_helper_identity_token_and_missing_helper(cfgdir, helper, tmp_path):
    (cfgdir / "config.json").write_text(json.dumps({"credsStore": "pbtest"}))
    auth.store("t.example", Credentials("<token>", "refresh-token-value"))
    c = auth.lookup("t.example")
    assert c.identity_token == "refresh-token-value" and c.username == ""
    (cfgdir / "config.json").write_text(json.dumps({"credHelpers": {"t.example": "nosuchhelper"}}))
    with pytest.raises(RegistryError, match="docker-credential-nosuchhelper not found"):
        auth.lookup("t.example")
