"""The OCI Distribution API client: one registry host, its transport, auth and error mapping.

Owns: choosing the endpoint (docker.io → registry-1.docker.io; https with system CAs, a
`ca_cert`, or /etc/docker/certs.d/<host>/ca.crt; plain http for insecure registries —
localhost and 127.0.0.1 by default, others passed in as `insecure_registries` by the
caller, who read `builder.settings` — this package may not import it), authenticating (anonymous, Basic,
Bearer tokens from WWW-Authenticate realm/service/scope, refresh tokens), retrying idempotent
requests with backoff, and turning HTTP failures into one-line RegistryError/AuthError/NotFound
naming the registry and what failed. Endpoints: manifests, blobs, uploads, mounts, tags.
Must not: know about the content store or image layouts (transfer.py moves content), print,
or import requests at module level (start-up budget: it is imported when first used).
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Iterable
from urllib.parse import urlencode, urljoin

from builder.errors import AuthError, NotFound, RegistryError
from builder.registry import auth as _auth
from runtime.record import Record

# What we accept when fetching a manifest: both formats, single images and indexes.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)

MAX_MANIFEST = 4 << 20
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
_SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
_scheme_cache: dict[str, str] = {}  # host -> "https" | "http", learned per process
_RETRY_STATUS = {429, 500, 502, 503, 504}

BodyFactory = Callable[[], "bytes | IO[bytes] | Iterable[bytes]"]
_AUTO: Any = object()


class ManifestInfo(Record):
    """What HEAD/GET of a manifest tells: its media type, digest and size."""

    media_type: str
    digest: str
    size: int


def api_host(registry: str) -> str:
    return "registry-1.docker.io" if registry == "docker.io" else registry


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[: host.index("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_insecure(registry: str, extra: Iterable[str] = ()) -> bool:
    """Plain HTTP / unverified TLS allowed: loopback by default, plus configured hosts."""
    if _hostname(registry) in _LOCAL_HOSTS:
        return True
    extra = tuple(extra)
    return registry in extra or _hostname(registry) in extra


def scope(repo: str, push: bool = False) -> str:
    return f"repository:{repo}:{'pull,push' if push else 'pull'}"


def _short_reason(exc: Exception) -> str:
    text = str(exc)
    for needle in ("Connection refused", "Name or service not known", "timed out", "Connection reset",
                   "certificate verify failed", "No route to host", "Temporary failure in name resolution",
                   "Remote end closed connection", "wrong version number", "Connection aborted"):
        if needle in text:
            return needle.lower() if needle != "Connection refused" else "connection refused"
    return type(exc).__name__ + (f": {text.splitlines()[0][:160]}" if text else "")


class RegistryClient:
    """Talks to one registry host. Thread-safe for concurrent blob transfers."""

    def __init__(self, registry: str, *, insecure: bool | None = None, ca_cert: str | os.PathLike | None = None,
                 credentials: "_auth.Credentials | None" = _AUTO, timeout: float = 60.0,
                 retries: int = 3, pool: int = 16, insecure_registries: Iterable[str] = (),
                 backoff: float = 0.2) -> None:
        import requests  # lazy (start-up budget)
        from requests.adapters import HTTPAdapter

        self.registry = registry
        self.host = api_host(registry)
        self.insecure = is_insecure(registry, insecure_registries) if insecure is None else insecure
        self.credentials = _auth.lookup(registry) if credentials is _AUTO else credentials
        self.timeout = (min(10.0, timeout), timeout)
        self.retries = retries
        self.backoff = backoff  # first retry waits backoff*2 seconds, doubling
        self._requests = requests
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "pybuild/0.1"
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.verify: bool | str = self._pick_verify(ca_cert)
        self._explicit_tls = ca_cert is not None
        self._lock = threading.Lock()
        self._scheme_auth: str | None = None  # "basic" | "bearer" once the registry told us
        self._bearer: dict[str, str] = {}  # realm/service from the challenge
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}  # scopes -> (token, expiry)
        self._base: str | None = None

    # --- transport ----------------------------------------------------------------------------

    def _pick_verify(self, ca_cert) -> bool | str:
        if ca_cert is not None:
            p = Path(ca_cert)
            if not p.is_file():
                raise RegistryError(f"CA certificate {p} for {self.registry} not found")
            return str(p)
        certs_d = Path("/etc/docker/certs.d") / self.host / "ca.crt"
        if certs_d.is_file():
            return str(certs_d)
        if os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE"):
            return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ["SSL_CERT_FILE"]
        return _SYSTEM_CA if os.path.isfile(_SYSTEM_CA) else True

    @property
    def base_url(self) -> str:
        if self._base is None:
            self._base = f"{self._scheme()}://{self.host}"
        return self._base

    def _scheme(self) -> str:
        if not self.insecure or self._explicit_tls:
            return "https"
        cached = _scheme_cache.get(self.host)
        if cached:
            return cached
        # Insecure registries: https without verification if it answers TLS, else plain http
        # (what docker does for --insecure-registry and localhost).
        req = self._requests
        import urllib3  # the user chose an insecure registry: don't warn on every request

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        try:
            self.session.get(f"https://{self.host}/v2/", verify=False, timeout=(3, 10)).close()
            scheme = "https"
        except req.exceptions.SSLError:
            scheme = "http"
        except req.exceptions.ConnectionError as e:
            if "wrong version number" in str(e) or "SSL" in str(e):
                scheme = "http"
            else:
                raise RegistryError(f"cannot reach registry {self.registry}: {_short_reason(e)}") from None
        if scheme == "https":
            self.verify = False
        _scheme_cache[self.host] = scheme
        return scheme

    def url(self, path: str) -> str:
        return urljoin(self.base_url + "/", path.lstrip("/")) if not path.startswith("http") else path

    # --- auth ---------------------------------------------------------------------------------

    def _auth_header(self, scopes: tuple[str, ...]) -> str | None:
        if self._scheme_auth == "basic" and self.credentials:
            return _auth.basic_header(self.credentials)
        if self._scheme_auth == "bearer":
            with self._lock:
                tok = self._tokens.get(scopes)
            if tok and tok[1] > time.monotonic():
                return f"Bearer {tok[0]}"
            return f"Bearer {self._fetch_token(scopes)}"
        return None

    def _fetch_token(self, scopes: tuple[str, ...]) -> str:
        realm = self._bearer.get("realm")
        if not realm:
            raise AuthError(f"{self.registry}: Bearer challenge without a realm")
        params = [("service", self._bearer["service"])] if self._bearer.get("service") else []
        params += [("scope", s) for s in scopes]
        creds = self.credentials
        req = self._requests
        try:
            if creds and creds.identity_token:
                form = dict(params[:1], grant_type="refresh_token", refresh_token=creds.identity_token,
                            client_id="pybuild", scope=" ".join(scopes))
                r = self.session.post(realm, data=form, timeout=self.timeout, verify=self.verify)
            else:
                headers = {"Authorization": _auth.basic_header(creds)} if creds and creds.username else {}
                r = self.session.get(realm, params=params, headers=headers, timeout=self.timeout, verify=self.verify)
        except req.exceptions.RequestException as e:
            raise RegistryError(f"{self.registry}: cannot get a token from {realm}: {_short_reason(e)}") from None
        if r.status_code in (401, 403):
            raise _auth.auth_failed(self.registry, "a token", f"token server {realm} said HTTP {r.status_code}")
        if r.status_code != 200:
            raise RegistryError(f"{self.registry}: token server {realm} answered HTTP {r.status_code}")
        try:
            body = r.json()
            token = body.get("token") or body.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise RegistryError(f"{self.registry}: token server {realm} sent no token")
        life = float(body.get("expires_in") or 60)
        with self._lock:
            self._tokens[scopes] = (token, time.monotonic() + max(life - 10, 5))
        return token

    def _on_challenge(self, header: str, scopes: tuple[str, ...], what: str, sent: str | None) -> bool:
        """Learn the scheme from a 401; True when one retry with (fresh) credentials makes sense.

        Decided by what *this* request sent, not by shared state: parallel requests all see
        the first 401 before any of them has authenticated.
        """
        for ch in _auth.parse_www_authenticate(header):
            if ch.scheme == "bearer":
                with self._lock:
                    self._scheme_auth, self._bearer = "bearer", ch.params
                    cached = self._tokens.get(scopes)
                    if cached and sent == f"Bearer {cached[0]}":
                        del self._tokens[scopes]  # expired or revoked: fetch a new one
                return True
            if ch.scheme == "basic":
                if not self.credentials or not self.credentials.username:
                    raise AuthError(f"{self.registry}: {what} needs a login (Basic auth)",
                                    hint=f"pybuild login {self.registry}")
                self._scheme_auth = "basic"
                return sent is None or not sent.startswith("Basic ")
        return False

    # --- requests -----------------------------------------------------------------------------

    def request(self, method: str, path: str, *, scopes: tuple[str, ...], what: str,
                headers: dict | None = None, body: BodyFactory | bytes | None = None, stream: bool = False,
                ok: tuple[int, ...] = (200,), params: dict | None = None):
        """Send with auth and retries; return the response if its status is in `ok`, else raise.

        `body` is bytes or a factory returning a fresh body, so a 401 or a retry can resend it.
        """
        req = self._requests
        url = self.url(path)
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        # Only requests that can be repeated without changing server state are retried here;
        # uploads are restarted as a whole by transfer.py.
        idempotent = method in ("GET", "HEAD", "DELETE")
        attempt, auth_retried = 0, False
        while True:
            h = dict(headers or {})
            a = self._auth_header(scopes)
            if a:
                h["Authorization"] = a
            data = body() if callable(body) else body
            try:
                r = self.session.request(method, url, headers=h, data=data, stream=stream,
                                         timeout=self.timeout, verify=self.verify, allow_redirects=True)
            except req.exceptions.SSLError as e:
                raise RegistryError(f"{self.registry}: TLS failure for {what}: {_short_reason(e)}",
                                    hint="pass --ca-cert, or list the registry in insecure_registries") from None
            except (req.exceptions.ConnectionError, req.exceptions.Timeout) as e:
                if idempotent and attempt < self.retries:
                    attempt += 1
                    time.sleep(self.backoff * 2 ** attempt)
                    continue
                raise RegistryError(f"cannot reach registry {self.registry} ({what}): {_short_reason(e)}") from None
            if r.status_code == 401 and not auth_retried:
                auth_retried = True
                hdr = r.headers.get("WWW-Authenticate", "")
                r.close()
                if self._on_challenge(hdr, scopes, what, a):
                    continue
                raise self._error(r, what)
            if r.status_code in _RETRY_STATUS and idempotent and attempt < self.retries:
                attempt += 1
                r.close()
                time.sleep(self.backoff * 2 ** attempt)
                continue
            if r.status_code in ok:
                return r
            raise self._error(r, what)

    def _error(self, r, what: str) -> RegistryError:
        code, message = "", ""
        try:
            errs = r.json().get("errors") or []
            if errs:
                code, message = errs[0].get("code", ""), errs[0].get("message", "")
        except Exception:  # noqa: BLE001 - error bodies are best effort (HEAD has none)
            pass
        finally:
            r.close()
        detail = f"{code}: {message}" if code else f"HTTP {r.status_code}"
        if r.status_code == 401 or code == "UNAUTHORIZED":
            return _auth.auth_failed(self.registry, what, detail)
        if r.status_code == 403 or code == "DENIED":
            return AuthError(f"{self.registry}: access denied for {what} ({detail})",
                             hint=f"check the credentials (pybuild login {self.registry})")
        if r.status_code == 404 or code.endswith("_UNKNOWN"):
            return NotFound(f"{self.registry}: {what} not found ({detail})")
        return RegistryError(f"{self.registry}: {what} failed ({detail})")

    # --- endpoints ----------------------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/: checks reachability and credentials (used by login)."""
        self.request("GET", "/v2/", scopes=(), what="login")

    def get_manifest(self, repo: str, reference: str, accept: Iterable[str] = MANIFEST_TYPES) -> tuple[bytes, str]:
        """The raw manifest bytes and their media type."""
        r = self.request("GET", f"/v2/{repo}/manifests/{reference}", scopes=(scope(repo),),
                         what=f"manifest {repo}:{reference}" if ":" not in reference else f"manifest {repo}@{reference}",
                         headers={"Accept": ", ".join(accept)}, stream=True)
        # A manifest is small; a registry (or a man in the middle) sending more is refused
        # before it fills memory (containerd uses the same 4 MiB limit).
        try:
            data = r.raw.read(MAX_MANIFEST + 1, decode_content=True)
        finally:
            r.close()
        if len(data) > MAX_MANIFEST:
            raise RegistryError(f"{self.registry}: manifest {repo}:{reference} is larger than {MAX_MANIFEST} bytes")
        mt = r.headers.get("Content-Type", "").split(";")[0].strip()
        if mt in ("", "application/json", "text/plain"):
            mt = _sniff_media_type(data) or mt
        return data, mt

    def head_manifest(self, repo: str, reference: str, *, push: bool = False) -> ManifestInfo | None:
        r = self.request("HEAD", f"/v2/{repo}/manifests/{reference}", scopes=(scope(repo, push),),
                         what=f"manifest {repo}:{reference}", headers={"Accept": ", ".join(MANIFEST_TYPES)},
                         ok=(200, 404))
        r.close()
        if r.status_code == 404:
            return None
        return ManifestInfo(r.headers.get("Content-Type", "").split(";")[0], r.headers.get("Docker-Content-Digest", ""),
                            int(r.headers.get("Content-Length") or 0))

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        r = self.request("PUT", f"/v2/{repo}/manifests/{reference}", scopes=(scope(repo, True),),
                         what=f"manifest upload {repo}:{reference}", headers={"Content-Type": media_type},
                         body=data, ok=(201, 200))
        r.close()
        return r.headers.get("Docker-Content-Digest", "")

    def blob_size(self, repo: str, digest: str, *, push: bool = False) -> int | None:
        """HEAD a blob: its size, or None when the repository does not have it."""
        r = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=(scope(repo, push),),
                         what=f"blob {digest[:19]} in {repo}", ok=(200, 404))
        r.close()
        if r.status_code == 404:
            return None
        return int(r.headers.get("Content-Length") or 0)

    def open_blob(self, repo: str, digest: str, *, offset: int = 0):
        """A streaming response for a blob (from `offset` when the registry honours Range)."""
        headers = {"Range": f"bytes={offset}-"} if offset else None
        return self.request("GET", f"/v2/{repo}/blobs/{digest}", scopes=(scope(repo),), headers=headers,
                            what=f"blob {digest[:19]} of {repo}", stream=True, ok=(200, 206))

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; True when the registry mounted it (no upload needed)."""
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": from_repo},
                         scopes=(scope(repo, True), scope(from_repo)), what=f"mount of {digest[:19]} into {repo}",
                         ok=(201, 202))
        r.close()
        if r.status_code == 201:
            return True
        loc = r.headers.get("Location")
        if loc:  # the registry opened an upload instead: close it, we upload separately
            try:
                self.request("DELETE", loc, scopes=(scope(repo, True),), what="cancel upload", ok=(204, 404)).close()
            except RegistryError:
                pass
        return False

    def start_upload(self, repo: str) -> str:
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/", scopes=(scope(repo, True),),
                         what=f"upload to {repo}", ok=(202,))
        r.close()
        loc = r.headers.get("Location")
        if not loc:
            raise RegistryError(f"{self.registry}: upload to {repo} started without a Location")
        return self.url(loc)

    def upload_chunk(self, repo: str, location: str, chunk: bytes, start: int) -> str:
        r = self.request("PATCH", location, scopes=(scope(repo, True),), what=f"chunk upload to {repo}",
                         body=chunk, ok=(202,), headers={"Content-Type": "application/octet-stream",
                                                        "Content-Range": f"{start}-{start + len(chunk) - 1}",
                                                        "Content-Length": str(len(chunk))})
        r.close()
        return self.url(r.headers.get("Location") or location)

    def finish_upload(self, repo: str, location: str, digest: str, body: BodyFactory | bytes | None = None,
                      size: int = 0) -> None:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size if body is not None else 0)}
        r = self.request("PUT", location, params={"digest": digest}, scopes=(scope(repo, True),),
                         what=f"blob upload {digest[:19]} to {repo}", body=body if body is not None else b"",
                         headers=headers, ok=(201, 204))
        r.close()

    def list_tags(self, repo: str) -> list[str]:
        r = self.request("GET", f"/v2/{repo}/tags/list", scopes=(scope(repo),), what=f"tags of {repo}")
        return list(r.json().get("tags") or [])

    def close(self) -> None:
        self.session.close()


def _sniff_media_type(data: bytes) -> str | None:
    import json

    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if isinstance(doc, dict):
        if doc.get("mediaType"):
            return doc["mediaType"]
        if "manifests" in doc:
            return OCI_INDEX
        if "config" in doc and "layers" in doc:
            return OCI_MANIFEST
    return None
