"""The `pasta` network: a user-mode network stack for one container (Debian package passt).

Owns: connecting a running container's network namespace to the outside through `pasta`
(from passt: a tap device in the namespace with the host's addresses and routes, traffic
relayed by an unprivileged process, so it works rootless), with the published ports
forwarded by pasta itself; choosing host ports for `-P`. This is the default network for
rootless `run -d` (bridges need root) and `--network pasta` as root. pasta runs as a
background process that quits when the namespace it serves is gone, so nothing is left
after the container ends. Outbound connections from the container to the host's own
loopback-bound ports are not forwarded (-T/-U none), as under docker's bridge.
Must not: touch bridges or nft (bridge.py, ports.py).
"""
from __future__ import annotations

import socket
import subprocess

from builder.networks.bridge import NetworkError, tool
from builder.rootless import host_root


def choose_ports(ports: list[dict]) -> list[dict]:
    """Ports with HostPort 0 (-P, -p CTR) get a port that is free now."""
    out = []
    for p in ports:
        if not p["HostPort"]:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if p["Proto"] == "tcp" else socket.SOCK_DGRAM)
            s.bind((p["HostIp"] if ":" not in p["HostIp"] else "0.0.0.0", 0))
            p = dict(p, HostPort=s.getsockname()[1])
            s.close()
        out.append(p)
    return out


def _spec(p: dict) -> str:
    addr = "" if p["HostIp"] in ("0.0.0.0", "::") else f"{p['HostIp']}/"
    return f"{addr}{p['HostPort']}:{p['ContainerPort']}"


def connect(pid: str | None, ports: list[dict], netns: str | None = None) -> None:
    """Give the network namespace of process `pid` (rootless: pasta joins its user namespace
    too), or the one bound at `netns` (as root), outbound connectivity and the published
    ports; returns once pasta is set up (it then runs in the background)."""
    pasta = tool("pasta", "passt")
    tcp = [_spec(p) for p in ports if p["Proto"] == "tcp"]
    udp = [_spec(p) for p in ports if p["Proto"] == "udp"]
    argv = [pasta, "--config-net", "--quiet"]
    if host_root():
        # as root, pasta would switch to nobody, who may not enter a root container's namespaces
        argv += ["--runas", "0:0"]
    for flag, specs in (("-t", tcp), ("-u", udp)):
        for spec in specs or ["none"]:
            argv += [flag, spec]
    argv += ["-T", "none", "-U", "none"]
    argv += ["--netns", netns] if netns else [str(pid)]
    r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        msg = " ".join(ln for ln in r.stderr.splitlines() if "syslog" not in ln).strip()
        raise NetworkError(f"pasta could not connect the container: {msg or f'exit status {r.returncode}'}")
