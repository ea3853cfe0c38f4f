"""builder.networks.foreground: the default network of a foreground `run` falls back to the
host's, with one warning line, where it cannot be had (a default must not make `run` fail)."""
from __future__ import annotations

import pytest

from builder.networks import bridge, foreground, pasta


def test_missing_ip_or_nft_as_root_is_a_warning_and_the_host_network(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(foreground, "_is_host_root", lambda: True)

    def missing(name, package):
        raise bridge.MissingTool(f"networking needs the {name!r} command (Debian package {package}); install it")
    monkeypatch.setattr(bridge, "tool", missing)
    assert foreground.attach(tmp_path, "ab" * 32) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no private network for this container" in err and "'ip'" in err
    assert not (tmp_path / "networks" / "bridge.json").exists()


def test_rootless_without_pasta_is_a_warning_and_the_host_network(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(foreground, "_is_host_root", lambda: False)
    monkeypatch.setattr(pasta, "usable", lambda: "pasta is not installed (Debian package passt)")
    assert foreground.attach(tmp_path, "cd" * 32) is None
    assert "pasta is not installed" in capsys.readouterr().err


def test_other_network_errors_are_not_swallowed(tmp_path, monkeypatch):
    monkeypatch.setattr(foreground, "_is_host_root", lambda: True)

    def broken(root):
        raise bridge.NetworkError("no free /24 subnet left in 10.89.0.0/16")
    monkeypatch.setattr(bridge, "ensure_default", broken)
    with pytest.raises(bridge.NetworkError, match="no free"):
        foreground.attach(tmp_path, "ef" * 32)
