"""Docker-style references: normalisation, printing, and one-line errors on bad input.

Expected values follow distribution/reference's normalisation (ParseNormalizedNamed) as
docker and BuildKit apply it.
"""
from __future__ import annotations

import pytest

from builder.errors import InvalidReference, PybuildError
from builder.oci.reference import Reference, is_reference, parse_reference

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, registry, repo, tag, digest", [
    ("alpine", "docker.io", "library/alpine", "latest", None),
    ("alpine:3.19", "docker.io", "library/alpine", "3.19", None),
    ("library/alpine", "docker.io", "library/alpine", "latest", None),
    ("docker.io/alpine", "docker.io", "library/alpine", "latest", None),
    ("index.docker.io/library/alpine:edge", "docker.io", "library/alpine", "edge", None),
    ("registry-1.docker.io/foo/bar", "docker.io", "foo/bar", "latest", None),
    ("user/app", "docker.io", "user/app", "latest", None),
    ("localhost/app", "localhost", "app", "latest", None),
    ("localhost:5000/x", "localhost:5000", "x", "latest", None),
    ("localhost:5000/x:v1", "localhost:5000", "x", "v1", None),
    ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000", "a/b/c", "t", None),
    ("ghcr.io/owner/repo:1.2.3", "ghcr.io", "owner/repo", "1.2.3", None),
    ("quay.io/a-b/c__d.e_f:T_1-x.", "quay.io", "a-b/c__d.e_f", "T_1-x.", None),
    (f"alpine@{D}", "docker.io", "library/alpine", None, D),
    (f"alpine:3@{D}", "docker.io", "library/alpine", "3", D),
    (f"localhost:5000/x@{D}", "localhost:5000", "x", None, D),
    ("[::1]:5000/x", "[::1]:5000", "x", "latest", None),
    ("a---b/c", "docker.io", "a---b/c", "latest", None),
])
def test_parse_normalises(text, registry, repo, tag, digest):
    r = parse_reference(text)
    assert (r.registry, r.repository, r.tag, r.digest) == (registry, repo, tag, digest)


@pytest.mark.parametrize("text, full, familiar", [
    ("alpine", "docker.io/library/alpine:latest", "alpine:latest"),
    ("user/app:1", "docker.io/user/app:1", "user/app:1"),
    ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
    (f"alpine@{D}", f"docker.io/library/alpine@{D}", f"alpine@{D}"),
    (f"ghcr.io/o/r:t@{D}", f"ghcr.io/o/r:t@{D}", f"ghcr.io/o/r:t@{D}"),
    # library/ is only dropped for the Hub's one-level official images
    ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
])
def test_str_and_familiar_round_trip(text, full, familiar):
    r = parse_reference(text)
    assert str(r) == full
    assert r.familiar() == familiar
    assert parse_reference(str(r)) == r
    assert parse_reference(r.familiar()) == r


def test_default_tag_none_keeps_tag_empty():
    r = parse_reference("alpine", default_tag=None)
    assert r.tag is None and r.reference == "latest"
    assert str(r) == "docker.io/library/alpine"


def test_reference_property_prefers_digest():
    assert parse_reference(f"a:1@{D}").reference == D
    assert parse_reference("a:1").reference == "1"


def test_with_tag_and_digest():
    r = parse_reference(f"a@{D}").with_tag("v2")
    assert (r.tag, r.digest) == ("v2", None)
    r2 = r.with_digest(D)
    assert str(r2) == f"docker.io/library/a:v2@{D}"
    with pytest.raises(InvalidReference):
        r.with_tag("-bad")
    with pytest.raises(InvalidReference):
        r.with_digest("sha256:123")


def test_is_frozen_value():
    r = parse_reference("a")
    with pytest.raises(AttributeError):
        r.tag = "x"  # type: ignore[misc]
    assert r == Reference("docker.io", "library/a", "latest", None)
    assert hash(r) == hash(Reference("docker.io", "library/a", "latest", None))


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("Alpine", "lowercase"),
    ("alpine:", "tag ''"),
    ("alpine:-x", "tag '-x'"),
    ("alpine:" + "x" * 129, "tag"),
    ("alpine@sha256:abc", "64 lowercase hex"),
    ("alpine@sha256:" + "AB" * 32, "64 lowercase hex"),
    ("alpine@md5", "algorithm:hex"),
    ("a//b", "empty path component"),
    ("a/", "empty path component"),
    ("/a", "empty path component"),
    ("a b", "whitespace"),
    (" a", "whitespace"),
    ("a_/b", "not a valid repository name"),
    ("-a", "not a valid repository name"),
    ("a..b", "not a valid repository name"),
    ("exa mple.com/x", "whitespace"),
    ("-bad.com/x", "not a valid registry"),
    ("host:port/x", "not a valid registry"),
    (":tag", "no repository"),
    ("example.com/" + "a" * 260, "longer than 255"),
])
def test_invalid_references_fail_with_one_line(text, fragment):
    with pytest.raises(InvalidReference) as ei:
        parse_reference(text)
    msg = str(ei.value)
    assert fragment in msg
    assert "\n" not in msg
    assert isinstance(ei.value, PybuildError)
    assert not is_reference(text)


def test_is_reference_true_for_good_refs():
    assert is_reference("localhost:5000/x:1")
