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
    assert err.count("\n") == 1 and "no private network for this container" in err and "networking needs the '" in err
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


def test_orphan_collection_never_touches_another_mount_namespaces_bridges(monkeypatch, tmp_path):
    """A chroot or container sharing the host's network namespace sees the host's bridges but
    not the host's files: a record path that is missing there says nothing, so only bridges
    made from our own mount namespace are collected."""
    import builtins
    import os as os_mod

    aliases = {"pbrmine": f"pybuild-network {bridge._mount_ns()} {tmp_path}/gone/networks/bridge.json",
               "pbrother": f"pybuild-network 1 {tmp_path}/gone/networks/bridge.json",
               "pbrlive": f"pybuild-network {bridge._mount_ns()} {tmp_path}/live.json",
               "pbrforeign": "someone else's alias"}
    (tmp_path / "live.json").write_text("{}")
    real_open, real_listdir = builtins.open, os_mod.listdir

    def fake_listdir(path="."):
        return list(aliases) if path == "/sys/class/net" else real_listdir(path)

    def fake_open(path, *a, **kw):
        if isinstance(path, str) and path.startswith("/sys/class/net/pbr"):
            import io
            return io.StringIO(aliases[path.split("/")[4]] + "\n")
        return real_open(path, *a, **kw)
    removed = []
    monkeypatch.setattr(bridge.os, "listdir", fake_listdir)
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(bridge, "_remove_kernel_objects", lambda rec: removed.append(rec["Bridge"]))
    assert bridge.collect_orphans() == ["pbrmine"] and removed == ["pbrmine"]
    removed.clear()
    assert sorted(bridge.collect_orphans(under=str(tmp_path))) == ["pbrlive", "pbrmine"]
