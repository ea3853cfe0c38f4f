"""Pure parts of the registry client and transfer: endpoints, insecure hosts, platforms, sizes."""
from __future__ import annotations

import pytest

from builder.errors import RegistryError
from builder.oci.model import Platform
from builder.registry.client import OCI_INDEX, OCI_MANIFEST, _sniff_media_type, api_host, is_insecure, scope
from builder.registry.transfer import Options, configure, default_options, parse_platform


def test_api_host():
    assert api_host("docker.io") == "registry-1.docker.io"
    assert api_host("ghcr.io") == "ghcr.io"
    assert api_host("localhost:5000") == "localhost:5000"


@pytest.mark.parametrize("host, extra, want", [
    ("localhost", (), True), ("localhost:5000", (), True), ("127.0.0.1:41000", (), True),
    ("[::1]:5000", (), True), ("ghcr.io", (), False), ("docker.io", (), False),
    ("reg.lan:5000", ("reg.lan:5000",), True), ("reg.lan:5000", ("reg.lan",), True),
    ("reg.lan:5001", ("reg.lan:5000",), False), ("localhost.evil.com", (), False),
])
def test_is_insecure(host, extra, want):
    assert is_insecure(host, extra) is want


def test_scope_strings():
    assert scope("library/alpine") == "repository:library/alpine:pull"
    assert scope("a/b", push=True) == "repository:a/b:pull,push"


def test_sniff_media_type_for_registries_that_send_application_json():
    assert _sniff_media_type(b'{"schemaVersion":2,"mediaType":"x/y"}') == "x/y"
    assert _sniff_media_type(b'{"schemaVersion":2,"manifests":[]}') == OCI_INDEX
    assert _sniff_media_type(b'{"schemaVersion":2,"config":{},"layers":[]}') == OCI_MANIFEST
    assert _sniff_media_type(b"not json") is None


def test_parse_platform():
    assert parse_platform("linux/amd64") == Platform("amd64", "linux")
    assert parse_platform("linux/arm/v7") == Platform("arm", "linux", variant="v7")
    for bad in ("linux", "linux/", "/amd64", "a/b/c/d"):
        with pytest.raises(RegistryError, match="expected os/arch"):
            parse_platform(bad)


def test_configure_sets_process_defaults():
    from builder.registry import transfer

    saved = dict(transfer._defaults)
    try:
        configure(insecure_registries=("reg.lan",), mirrors={"docker.io": ("m:5000",)})
        o = default_options()
        assert o.insecure_registries == ("reg.lan",) and o.mirrors == {"docker.io": ("m:5000",)}
        assert Options().insecure_registries == ()  # explicit Options are not affected
    finally:
        transfer._defaults.clear()
        transfer._defaults.update(saved)


def test_size_flag():
    from argparse import ArgumentTypeError

    from builder.commands.registry import _size

    assert _size("16M") == 16 << 20 and _size("64k") == 64 << 10 and _size("5MiB") == 5 << 20
    assert _size("1048576") == 1 << 20
    for bad in ("0", "x", "-1", "5T"):
        with pytest.raises(ArgumentTypeError):
            _size(bad)
