"""Published ports: `-p [IP:][HOST:]CTR[/tcp|udp]` and `-P`.

Owns: parsing docker's -p syntax; reserving the host ports (the monitor binds each one, so
a taken port is a clear error before the container starts and nobody takes it while the
container runs); forwarding them in the kernel: one nft table per container
(`ip pybuild-c<id12>`: DNAT in prerouting and output to the container's address, masquerade
of connections from 127.0.0.1, which needs route_localnet on the network's bridge, as
docker without its userland proxy does), made when the container starts and deleted when it
stops (by `rm` if its monitor was killed). `Proxy`, a userland relay inside the monitor, is
the fallback for containers without an address (--network host needs none: the ports are
the host's already). Must not: touch the networks' own tables (bridge.py).
"""
from __future__ import annotations

import re
import socket
import threading

from builder.errors import UsageError

_PORT = re.compile(r"^(?:(?P<ip>\[[0-9a-fA-F:.]+\]|[0-9.]+|):)??(?:(?P<host>\d*(?:-\d+)?):)?(?P<ctr>\d+(?:-\d+)?)(?:/(?P<proto>tcp|udp))?$")


def parse(spec: str) -> list[dict]:
    """One -p value → [{"HostIp", "HostPort" (0 = any free), "ContainerPort", "Proto"}]."""
    m = _PORT.match(spec.strip())
    if not m:
        raise UsageError(f"invalid -p {spec!r}: expected [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]")
    ip = (m.group("ip") or "").strip("[]") or "0.0.0.0"
    proto = m.group("proto") or "tcp"

    def rng(text: str) -> list[int]:
        a, _, b = text.partition("-")
        lo, hi = int(a), int(b or a)
        if not (0 < lo <= hi <= 65535):
            raise UsageError(f"invalid -p {spec!r}: ports are 1-65535")
        return list(range(lo, hi + 1))
    ctr = rng(m.group("ctr"))
    host = rng(m.group("host")) if m.group("host") else [0] * len(ctr)
    if len(host) != len(ctr):
        raise UsageError(f"invalid -p {spec!r}: the host and container ranges differ in length")
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    except OSError:
        raise UsageError(f"invalid -p {spec!r}: {ip!r} is not an IP address") from None
    return [{"HostIp": ip, "HostPort": h, "ContainerPort": c, "Proto": proto} for h, c in zip(host, ctr)]


def exposed(exposed_ports: dict | None) -> list[dict]:
    """-P: every EXPOSEd port on a free host port."""
    out = []
    for key in sorted(exposed_ports or {}):
        port, _, proto = key.partition("/")
        if port.isdigit():
            out.append({"HostIp": "0.0.0.0", "HostPort": 0, "ContainerPort": int(port), "Proto": proto or "tcp"})
    return out


def bind(ports: list[dict]) -> list[socket.socket]:
    """Listening sockets for every port (HostPort 0 is filled in with the port the kernel
    chose). A port in use raises UsageError naming it; nothing stays bound then."""
    socks: list[socket.socket] = []
    try:
        for p in ports:
            fam = socket.AF_INET6 if ":" in p["HostIp"] else socket.AF_INET
            kind = socket.SOCK_STREAM if p["Proto"] == "tcp" else socket.SOCK_DGRAM
            s = socket.socket(fam, kind)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((p["HostIp"], p["HostPort"]))
            except OSError as e:
                raise UsageError(f"cannot publish port {p['HostIp']}:{p['HostPort']}/{p['Proto']}: {e.strerror}") from None
            p["HostPort"] = s.getsockname()[1]
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


class Proxy:
    """Relays the bound sockets to `target_ip` (set before the container starts, updated on
    a restart, since the address may change)."""

    def __init__(self, ports: list[dict], socks: list[socket.socket]) -> None:
        self.ports, self.socks = ports, socks
        self.target_ip: str | None = None

    def start(self) -> None:
        for p, s in zip(self.ports, self.socks):
            if p["Proto"] == "tcp":
                s.listen(512)
            fn = self._tcp_accept if p["Proto"] == "tcp" else self._udp
            threading.Thread(target=fn, args=(s, p["ContainerPort"]), daemon=True).start()

    def _tcp_accept(self, ls: socket.socket, cport: int) -> None:
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=self._tcp_conn, args=(c, cport), daemon=True).start()

    def _tcp_conn(self, c: socket.socket, cport: int) -> None:
        if not self.target_ip:
            c.close()
            return
        try:
            u = socket.create_connection((self.target_ip, cport), timeout=5)
            u.settimeout(None)
        except OSError:
            c.close()
            return
        for s in (c, u):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = threading.Thread(target=_pump, args=(u, c), daemon=True)
        t.start()
        _pump(c, u)
        t.join()
        c.close()
        u.close()

    def _udp(self, s: socket.socket, cport: int) -> None:
        # one upstream socket per client address, replies relayed back by a thread each
        peers: dict = {}
        while True:
            try:
                data, addr = s.recvfrom(65535)
            except OSError:
                return
            if not self.target_ip:
                continue
            u = peers.get(addr)
            if u is None:
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                u.connect((self.target_ip, cport))
                peers[addr] = u
                threading.Thread(target=_udp_back, args=(u, s, addr), daemon=True).start()
            try:
                u.send(data)
            except OSError:
                pass


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(262144)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _udp_back(u: socket.socket, s: socket.socket, addr) -> None:
    u.settimeout(180)
    try:
        while True:
            s.sendto(u.recv(65535), addr)
    except OSError:
        u.close()


def nft_table(cid: str) -> str:
    return f"pybuild-c{cid[:12]}"


def publish(cid: str, ports: list[dict], addr: str) -> None:
    """Forward the host ports to `addr` (the container's address) in the kernel."""
    from builder.networks.bridge import sh, tool

    t = nft_table(cid)
    rules = []
    for p in ports:
        dst = "fib daddr type local" if p["HostIp"] in ("0.0.0.0", "::") else f"ip daddr {p['HostIp']}"
        if ":" in p["HostIp"]:
            continue  # IPv6 host addresses: not forwarded (the bridge is IPv4 only)
        rules.append(f"{dst} {p['Proto']} dport {p['HostPort']} dnat to {addr}:{p['ContainerPort']}")
    script = [f"table ip {t} {{}}", f"delete table ip {t}", f"table ip {t} {{",
              "  chain prerouting {", "    type nat hook prerouting priority -100; policy accept;",
              *(f"    {r}" for r in rules), "  }",
              "  chain output {", "    type nat hook output priority -100; policy accept;",
              *(f"    {r}" for r in rules), "  }",
              "  chain postrouting {", "    type nat hook postrouting priority 100; policy accept;",
              f"    ip saddr 127.0.0.0/8 ip daddr {addr} masquerade", "  }", "}"]
    sh([tool("nft", "nftables"), "-f", "-"], input="\n".join(script) + "\n")


def unpublish(cid: str) -> None:
    import os
    from builder.networks.bridge import sh, tool

    if os.path.exists("/usr/sbin/nft") or os.path.exists("/sbin/nft"):
        sh([tool("nft", "nftables"), "delete", "table", "ip", nft_table(cid)], check=False)
