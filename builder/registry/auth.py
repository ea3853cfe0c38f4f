"""Registry credentials: docker's config.json, credential helpers, WWW-Authenticate challenges.

Owns: finding credentials for a registry the way docker does (`credHelpers[host]`, then
`auths[host]`, then `credsStore`), storing and erasing them for `pybuild login/logout` in
docker's own format (so `docker` and `skopeo` see the same logins), running
`docker-credential-<name>` helpers, and parsing `WWW-Authenticate` headers.
Must not: make HTTP requests (client.py does), print, or log secrets.

The config lives at `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. Docker Hub's
key is the historical `https://index.docker.io/v1/`.
"""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

from builder.errors import AuthError, RegistryError
from runtime.record import Record

HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


class Credentials(Record):
    """A username and secret. `identity_token` is an OAuth2 refresh token (docker's "<token>" user)."""

    username: str
    password: str
    identity_token: str | None = None

    def __repr__(self) -> str:  # never show the secret in a traceback or log
        return f"Credentials(username={self.username!r}, password=***)"


class Challenge(Record):
    """One auth challenge: scheme lowercased ("basic", "bearer"), params (realm, service, scope...)."""

    scheme: str
    params: dict[str, str]


def config_dir() -> Path:
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path(os.path.expanduser("~")) / ".docker"


def config_file() -> Path:
    return config_dir() / "config.json"


def config_key(registry: str) -> str:
    """The key docker uses in config.json for `registry` (a host[:port] from a Reference)."""
    return HUB_KEY if registry in _HUB_NAMES else registry


def _normalize_key(key: str) -> str:
    """`https://host:5000/v2/` and `host:5000` name the same registry in `auths`."""
    k = re.sub(r"^[a-z]+://", "", key.strip())
    k = k.split("/", 1)[0]
    return "docker.io" if k in _HUB_NAMES else k


def load_config(path: Path | None = None) -> dict:
    path = path or config_file()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise RegistryError(f"cannot read docker config {path}: {e.strerror}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise RegistryError(f"docker config {path} is not valid JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"docker config {path}: expected a JSON object")
    return data


def _write_config(data: dict, path: Path | None = None) -> None:
    """Atomic, 0600 (it holds secrets): temp → fsync → rename."""
    path = path or config_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            json.dump(data, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _helper_for(cfg: dict, registry: str) -> str | None:
    helpers = cfg.get("credHelpers") or {}
    for key in (registry, config_key(registry)):
        if key in helpers:
            return helpers[key]
    for key, helper in helpers.items():
        if _normalize_key(key) == _normalize_key(registry):
            return helper
    return None


def _run_helper(helper: str, action: str, payload: str) -> subprocess.CompletedProcess:
    exe = f"docker-credential-{helper}"
    try:
        return subprocess.run([exe, action], input=payload.encode(), capture_output=True, timeout=60)
    except FileNotFoundError:
        raise RegistryError(f"credential helper {exe} not found in PATH") from None
    except subprocess.TimeoutExpired:
        raise RegistryError(f"credential helper {exe} {action} timed out") from None


def helper_get(helper: str, server: str) -> Credentials | None:
    r = _run_helper(helper, "get", server)
    if r.returncode != 0:
        out = (r.stdout + r.stderr).decode(errors="replace").strip()
        if "not found" in out.lower():
            return None
        raise RegistryError(f"credential helper docker-credential-{helper} get failed for {server}: "
                            f"{out.splitlines()[0] if out else 'exit ' + str(r.returncode)}")
    try:
        data = json.loads(r.stdout)
        user, secret = data["Username"], data["Secret"]
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"credential helper docker-credential-{helper} returned malformed JSON") from None
    if user == "<token>":
        return Credentials(username="", password="", identity_token=secret)
    return Credentials(username=user, password=secret)


def _from_auth_entry(entry: dict, key: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken") or None
    if entry.get("auth"):
        try:
            user, sep, pw = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise RegistryError(f"docker config: auths[{key!r}].auth is not base64 of user:password") from None
        if not sep:
            raise RegistryError(f"docker config: auths[{key!r}].auth is not base64 of user:password")
        return Credentials(user, pw, token)
    if entry.get("username"):
        return Credentials(entry["username"], entry.get("password", ""), token)
    if token:
        return Credentials("", "", token)
    return None


def lookup(registry: str, path: Path | None = None) -> Credentials | None:
    """Credentials for `registry` (host[:port]) or None for anonymous access."""
    cfg = load_config(path)
    helper = _helper_for(cfg, registry)
    if helper:
        return helper_get(helper, config_key(registry))
    auths = cfg.get("auths") or {}
    want = _normalize_key(registry)
    for key, entry in auths.items():
        if _normalize_key(key) == want:
            creds = _from_auth_entry(entry, key)
            if creds:
                return creds
    if cfg.get("credsStore"):
        return helper_get(cfg["credsStore"], config_key(registry))
    return None


def store(registry: str, creds: Credentials, path: Path | None = None) -> str:
    """Save a login the way docker does; returns where it went ("config.json" or the helper name)."""
    cfg = load_config(path)
    helper = _helper_for(cfg, registry) or cfg.get("credsStore")
    key = config_key(registry)
    if helper:
        payload = json.dumps({"ServerURL": key, "Username": creds.username, "Secret": creds.password})
        r = _run_helper(helper, "store", payload)
        if r.returncode != 0:
            msg = (r.stdout + r.stderr).decode(errors="replace").strip().splitlines()
            raise RegistryError(f"credential helper docker-credential-{helper} store failed for {registry}: "
                                f"{msg[0] if msg else 'exit ' + str(r.returncode)}")
        return f"docker-credential-{helper}"
    auths = cfg.setdefault("auths", {})
    for k in [k for k in auths if _normalize_key(k) == _normalize_key(registry) and k != key]:
        del auths[k]  # one entry per registry, as docker leaves it
    auths[key] = {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()}
    _write_config(cfg, path)
    return str(path or config_file())


def erase(registry: str, path: Path | None = None) -> bool:
    """Forget the login for `registry`; False when there was none."""
    cfg = load_config(path)
    helper = _helper_for(cfg, registry) or cfg.get("credsStore")
    removed = False
    auths = cfg.get("auths") or {}
    for k in [k for k in auths if _normalize_key(k) == _normalize_key(registry)]:
        del auths[k]
        removed = True
    if removed:
        _write_config(cfg, path)
    if helper:
        r = _run_helper(helper, "erase", config_key(registry))
        removed = removed or r.returncode == 0
    return removed


# --- WWW-Authenticate --------------------------------------------------------------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rf"\s*({_TOKEN})\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|({_TOKEN}))\s*,?")


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse `Bearer realm="…",service="…",scope="…"` (RFC 7235; several challenges allowed)."""
    out: list[Challenge] = []
    s = header.strip()
    while s:
        m = re.match(rf"({_TOKEN})\s*", s)
        if not m:
            break
        scheme = m.group(1).lower()
        s = s[m.end():]
        params: dict[str, str] = {}
        while True:
            pm = _PARAM.match(s)
            # a token followed by another token (not '=') starts the next challenge
            if not pm:
                break
            val = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", val)
            s = s[pm.end():]
        out.append(Challenge(scheme, params))
        s = s.lstrip(", ")
    return out


def basic_header(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def auth_failed(registry: str, what: str, detail: str = "") -> AuthError:
    msg = f"{registry}: authentication failed for {what}"
    if detail:
        msg += f": {detail}"
    return AuthError(msg, hint=f"check the credentials (pybuild login {registry})")
