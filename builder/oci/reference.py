"""Docker-style image references: `alpine`, `ghcr.io/o/r:1.2`, `localhost:5000/x@sha256:…`.

Owns: parsing and validating a reference string into a `Reference(registry, repository, tag,
digest)` with docker's defaults (registry `docker.io`, `library/` for one-component names on
docker.io, tag `latest` when neither tag nor digest is given) and printing it back in full
(`str()`) or familiar (`familiar()`, as `docker images` shows it) form.
Must not: touch the network or the store; know how a registry host is reached (that is
builder.registry's business: docker.io → registry-1.docker.io, http vs https).

Grammar (distribution/reference): a domain is the first `/`-separated component when it
contains `.` or `:` or is `localhost`; path components are lowercase alphanumerics joined by
`.`, `_`, `__` or runs of `-`; a tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; a digest is
`algorithm:hex` (sha256 needs exactly 64 lowercase hex digits).
"""
from __future__ import annotations

import re

from builder.errors import InvalidReference
from runtime.record import Record, replace

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
# Names docker treats as the Hub; all normalise to DEFAULT_REGISTRY.
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
_MAX_NAME = 255

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*\Z")
_DOMAIN_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?\Z")
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z", re.ASCII)
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}\Z")
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}\Z")
_SHA512 = re.compile(r"sha512:[0-9a-f]{128}\Z")


class Reference(Record):
    """A parsed, normalised image reference. `tag` is None only when a digest pins the image."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """registry/repository, without tag or digest (the "repository" in docker's words)."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What the Distribution API calls the reference: the digest if pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def familiar(self) -> str:
        """The short form docker shows: no `docker.io/`, no `library/`."""
        repo = self.repository
        if self.registry == DEFAULT_REGISTRY:
            if repo.startswith("library/") and repo.count("/") == 1:
                repo = repo[len("library/"):]
            out = repo
        else:
            out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_tag(self, tag: str) -> "Reference":
        if not _TAG.match(tag):
            raise InvalidReference(f"invalid tag {tag!r} for {self.name}: tags are up to 128 of [A-Za-z0-9_.-], "
                                   "not starting with '.' or '-'")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> "Reference":
        _check_digest(digest, str(self))
        return replace(self, digest=digest)


def _check_digest(digest: str, whole: str) -> None:
    algo = digest.partition(":")[0]
    if algo == "sha256" and not _SHA256.match(digest):
        raise InvalidReference(f"invalid reference {whole!r}: a sha256 digest is 64 lowercase hex digits")
    if algo == "sha512" and not _SHA512.match(digest):
        raise InvalidReference(f"invalid reference {whole!r}: a sha512 digest is 128 lowercase hex digits")
    if not _DIGEST.match(digest):
        raise InvalidReference(f"invalid reference {whole!r}: digest {digest!r} is not algorithm:hex")


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return DEFAULT_REGISTRY, name


def parse_reference(s: str, *, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse and normalise `s`. Raises InvalidReference with one clear line on bad input.

    `default_tag=None` keeps the tag empty when none is written (for `pybuild pull -a`-like
    uses and for callers that need to know whether a tag was given).
    """
    if not isinstance(s, str) or not s:
        raise InvalidReference("invalid reference: empty image name")
    if s != s.strip() or any(c.isspace() for c in s):
        raise InvalidReference(f"invalid reference {s!r}: contains whitespace")
    rest, at, digest = s.partition("@")
    if at:
        _check_digest(digest, s)
    tag = None
    # A ':' after the last '/' is a tag separator; one before it belongs to a host:port.
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidReference(f"invalid reference {s!r}: tag {tag!r} must be up to 128 of [A-Za-z0-9_.-], "
                                   "not starting with '.' or '-'")
    if not rest:
        raise InvalidReference(f"invalid reference {s!r}: no repository name")
    domain, path = _split_domain(rest)
    if not _DOMAIN.match(domain):
        raise InvalidReference(f"invalid reference {s!r}: {domain!r} is not a valid registry host[:port]")
    if domain in _HUB_ALIASES:
        domain = DEFAULT_REGISTRY
    for comp in path.split("/"):
        if not comp:
            raise InvalidReference(f"invalid reference {s!r}: empty path component")
        if not _COMPONENT.match(comp):
            hint = " (repository names must be lowercase)" if comp.lower() != comp else ""
            raise InvalidReference(f"invalid reference {s!r}: {comp!r} is not a valid repository name "
                                   f"component{hint}")
    if domain == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if len(domain) + 1 + len(path) > _MAX_NAME:
        raise InvalidReference(f"invalid reference {s!r}: name longer than {_MAX_NAME} characters")
    if tag is None and not at:
        tag = default_tag
    return Reference(registry=domain, repository=path, tag=tag, digest=digest or None)


def is_reference(s: str) -> bool:
    """True when `s` parses (cheap check for CLI arguments that may be refs or ids)."""
    try:
        parse_reference(s)
    except InvalidReference:
        return False
    return True


def full_names(refs) -> tuple[str, ...]:
    """Names as BuildKit's `naming to` prints them (docker.io/library/app:1); one that does not
    parse is kept as given."""
    out = []
    for r in refs:
        try:
            out.append(str(parse_reference(r)))
        except InvalidReference:
            out.append(r)
    return tuple(out)
