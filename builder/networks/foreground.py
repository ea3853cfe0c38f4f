"""The network of a foreground `pybuild run`: private, and connected for the life of one run.

Owns: docker's default for `run` — a private network namespace with outbound connectivity —
when the command waits for its container: as root, a veth whose peer becomes the container's
`eth0` on the default `bridge` network (the one detached containers use), with an address
leased under `$PYBUILD_ROOT/networks/bridge.leases/` for as long as the run lives; rootless,
pasta (builder.networks.pasta). Where that cannot be had (no `ip`/`nft` as root, no pasta or
no usable /dev/net/tun rootless) the host's network, after a one-line warning: a default must
not make `run` fail. The namespace is the sandbox's own, never named: when the container ends
the kernel deletes it, and the veth with it, so a killed `pybuild run` leaves at most a lease
whose owner is gone, which the next allocation takes back. Must not: publish ports or join
user networks (those containers go through builder.containers and a monitor).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


class Attachment:
    """What the sandbox needs (interface, on_netns hook) and what to undo after the run."""

    def __init__(self, interface: tuple[str, int, str] | None, on_netns, lease: Path | None) -> None:
        self.interface, self.on_netns, self.lease = interface, on_netns, lease
        self.pasta = None  # rootless: the pasta process serving the namespace, ours to end

    def release(self) -> None:
        if self.pasta is not None:
            from builder.networks.pasta import detach_process
            detach_process(self.pasta)
        if self.lease is not None:
            try:
                os.unlink(self.lease)
            except FileNotFoundError:
                pass


def attach(root: Path, cid: str) -> Attachment | None:
    """Connect a foreground run's fresh namespace; None = use the host's network (rootless
    without a usable pasta, after a warning)."""
    if not _is_host_root():
        return _pasta()
    from runtime.netlink import Netlink

    from builder.networks import bridge, endpoint

    try:
        rec = bridge.ensure_default(root)
    except bridge.MissingTool as e:
        _warn(str(e).split(";")[0])
        return None
    with bridge.lock(root):
        ip, lease = endpoint.take_lease(root, rec, _detached_ips(root))
    prefix = int(rec["Subnet"].split("/")[1])
    veth, br = endpoint.veth_name(cid), rec["Bridge"]

    def on_netns(pid: int) -> None:
        import _socket
        try:
            master = _socket.if_nametoindex(br)
        except OSError:
            bridge.ensure_up(rec, root)  # deleted under us (a reboot keeps the record, not the bridge)
            master = _socket.if_nametoindex(br)
        with Netlink() as nl:
            nl.add_veth(veth, "eth0", pid, master=master)

    return Attachment((ip, prefix, rec["Gateway"]), on_netns, lease)


def _is_host_root() -> bool:
    from builder.rootless import host_root
    return host_root()


def _warn(why: str) -> None:
    sys.stderr.write(f"pybuild: warning: no private network for this container ({why}); it shares the "
                     "host's network (--network host says so and silences this)\n")


def _detached_ips(root: Path) -> set[str]:
    """Addresses of the live detached containers on the default bridge."""
    d = root / "containers"
    if not d.is_dir():
        return set()
    from builder.containers.state import all_containers
    out = set()
    for c in all_containers(root):
        if c.config.get("Network") == "bridge":
            ip = c.state().get("IPAddress")
            if ip and c.monitor_alive():
                out.add(ip)
    return out


def _pasta() -> Attachment | None:
    from builder.networks import pasta

    why = pasta.usable()
    if why:
        _warn(why)
        return None
    att = Attachment(None, None, None)

    def on_netns(pid: int) -> None:
        att.pasta = pasta.attach(pid, [])

    att.on_netns = on_netns
    return att
