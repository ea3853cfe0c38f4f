"""A minimal rtnetlink client: the few link, address and route requests a container's network needs.

Owns: creating a veth pair whose peer lands in another process's network namespace and
whose host end joins a bridge (one RTM_NEWLINK), and, inside a namespace, bringing a link
up, giving it an IPv4 address and a default route. Each request is acknowledged by the
kernel; a refusal raises OSError with the kernel's errno and what was asked. Replaces two
`ip` processes (~4 ms) on the start of every `pybuild run` on a bridge with a few
microseconds of socket I/O. Must not: decide addresses or names (builder.networks does),
or import anything but the standard library (the sandbox init uses it before pivot_root,
where only modules loaded already can be relied on: _socket and _struct are built in).
"""
from __future__ import annotations

import _socket
import _struct

AF_NETLINK, NETLINK_ROUTE, AF_INET, AF_UNSPEC = 16, 0, 2, 0
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 20, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_PID = 3, 4, 10, 18, 19
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_OIF, RTA_GATEWAY = 4, 5
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1


def _attr(kind: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return _struct.pack("=HH", n, kind) + data + b"\0" * (-n & 3)


def _name(s: str) -> bytes:
    return s.encode() + b"\0"


def _ifinfo(index: int = 0, up: bool = False) -> bytes:
    # family, pad, type, index, flags, change
    return _struct.pack("=BxHiII", AF_UNSPEC, 0, index, IFF_UP if up else 0, IFF_UP if up else 0)


def _ip4(addr: str) -> bytes:
    return _socket.inet_aton(addr)


class Netlink:
    """One NETLINK_ROUTE socket, in the network namespace of the thread that made it."""

    def __init__(self) -> None:
        self.sock = _socket.socket(AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Netlink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, kind: int, flags: int, payload: bytes, what: str) -> None:
        self.seq += 1
        msg = _struct.pack("=IHHII", 16 + len(payload), kind, NLM_F_REQUEST | NLM_F_ACK | flags, self.seq, 0) + payload
        self.sock.send(msg)
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, mtype, _flags, seq, _pid = _struct.unpack_from("=IHHII", data, off)
                if mtype == NLMSG_ERROR and seq == self.seq:
                    err = _struct.unpack_from("=i", data, off + 16)[0]
                    if err:
                        import os
                        raise OSError(-err, f"{what}: {os.strerror(-err)}")
                    return
                off += (length + 3) & ~3 if length else len(data)

    def add_veth(self, host_name: str, peer_name: str, peer_pid: int, master: int | None = None,
                 mtu: int | None = None) -> None:
        """A veth pair: `host_name` here (up, on bridge `master` if given), `peer_name` in the
        network namespace of process `peer_pid` (down: the namespace's owner configures it)."""
        peer = _ifinfo() + _attr(IFLA_IFNAME, _name(peer_name)) + _attr(IFLA_NET_NS_PID, _struct.pack("=I", peer_pid))
        if mtu:
            peer += _attr(IFLA_MTU, _struct.pack("=I", mtu))
        info = _attr(IFLA_INFO_KIND, b"veth\0") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer))
        body = _ifinfo(up=True) + _attr(IFLA_IFNAME, _name(host_name)) + _attr(IFLA_LINKINFO, info)
        if master is not None:
            body += _attr(IFLA_MASTER, _struct.pack("=I", master))
        if mtu:
            body += _attr(IFLA_MTU, _struct.pack("=I", mtu))
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"creating veth {host_name}")

    def link_up(self, index: int, what: str) -> None:
        self.request(RTM_NEWLINK, 0, _ifinfo(index, up=True), f"bringing {what} up")

    def add_address(self, index: int, address: str, prefix: int, what: str) -> None:
        a = _ip4(address)
        bits = (0xFFFFFFFF >> prefix) if prefix < 32 else 0
        bcast = _struct.pack("!I", _struct.unpack("!I", a)[0] | bits)
        body = (_struct.pack("=BBBBI", AF_INET, prefix, 0, RT_SCOPE_UNIVERSE, index)
                + _attr(IFA_LOCAL, a) + _attr(IFA_ADDRESS, a) + _attr(IFA_BROADCAST, bcast))
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, f"adding {address}/{prefix} to {what}")

    def add_default_route(self, gateway: str, index: int) -> None:
        body = (_struct.pack("=BBBBBBBBI", AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE,
                             RTN_UNICAST, 0)
                + _attr(RTA_GATEWAY, _ip4(gateway)) + _attr(RTA_OIF, _struct.pack("=I", index)))
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body, f"adding the default route via {gateway}")


def configure(name: str, address: str, prefix: int, gateway: str | None) -> None:
    """Inside a namespace: link `name` up with `address/prefix`, and a default route via `gateway`."""
    try:
        index = _socket.if_nametoindex(name)
    except OSError:
        raise OSError(19, f"no network interface {name} in the container's namespace") from None
    with Netlink() as nl:
        nl.add_address(index, address, prefix, name)
        nl.link_up(index, name)
        if gateway:
            nl.add_default_route(gateway, index)
