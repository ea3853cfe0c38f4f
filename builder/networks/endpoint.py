"""One container's place on a network: its network namespace, veth pair, address and names.

Owns: making the named network namespace `/run/netns/pb-<id12>` before the container starts
(the sandbox joins it: SandboxConfig.netns_path), the veth pair (host end `pbv<hash>` on the
network's bridge, `eth0` inside), the container's address (the lowest free one of the
subnet among live containers), and the /etc/hosts lines that let containers on one network
reach each other by name and alias; tearing all of it down again. Must not: decide when a
container starts (the monitor does).
"""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from builder.networks.bridge import NetworkError, ensure_up, lock, sh, tool
from builder.oci.digest import sha256  # (not hashlib: OpenSSL's load is ~2.5 ms of `run -d`)

HOSTS_HEAD = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]


def netns_name(cid: str) -> str:
    return f"pb-{cid[:12]}"


def netns_path(cid: str) -> str:
    return f"/run/netns/{netns_name(cid)}"


def veth_name(cid: str) -> str:
    return "pbv" + sha256(cid.encode()).hexdigest()[:10]


def attach(root: Path, rec: dict, cid: str, used_ips: set[str]) -> str:
    """Make the container's namespace and link it to network `rec`; return its address.
    Called under bridge.lock(root) by the caller, which passes the addresses in use."""
    ip = tool("ip", "iproute2")
    ensure_up(rec, root)
    net = ipaddress.ip_network(rec["Subnet"])
    taken = used_ips | {rec["Gateway"]}
    addr = next((str(h) for h in net.hosts() if str(h) not in taken), None)
    if addr is None:
        raise NetworkError(f"network {rec['Name']} has no free address left in {net}")
    ns, veth = netns_name(cid), veth_name(cid)
    detach(cid)  # leftovers of a monitor that was killed
    try:
        sh([ip, "-b", "-"], input=(f"netns add {ns}\n"
                                   f"link add {veth} type veth peer name eth0 netns {ns}\n"
                                   f"link set {veth} master {rec['Bridge']} up\n"))
        sh([ip, "-n", ns, "-b", "-"], input=(f"addr add {addr}/{net.prefixlen} dev eth0\n"
                                           "link set lo up\nlink set eth0 up\n"
                                           f"route add default via {rec['Gateway']}\n"))
    except BaseException:
        detach(cid)
        raise
    return addr


def leases_dir(root: Path, rec: dict) -> Path:
    return root / "networks" / f"{rec['Name']}.leases"


def leased_ips(root: Path, rec: dict) -> set[str]:
    """Addresses held by foreground runs (builder.networks.foreground) that still live; the
    leases of runs that are gone (killed) are removed. Called under bridge.lock(root)."""
    from builder.containers.state import proc_start

    d = leases_dir(root, rec)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return set()
    out = set()
    for name in names:
        try:
            pid_s, _, start_s = (d / name).read_text().partition(" ")
            alive = proc_start(int(pid_s)) == int(start_s)
        except (OSError, ValueError):
            alive = False
        if alive:
            out.add(name)
        else:
            try:
                os.unlink(d / name)
            except FileNotFoundError:
                pass
    return out


def take_lease(root: Path, rec: dict, taken: set[str]) -> tuple[str, Path]:
    """The lowest address of network `rec` not in `taken` nor leased, leased to this process
    (a file named after the address holding our pid and start time). Under bridge.lock(root)."""
    from builder.containers.state import proc_start

    net = ipaddress.ip_network(rec["Subnet"])
    busy = taken | leased_ips(root, rec) | {rec["Gateway"]}
    addr = next((str(h) for h in net.hosts() if str(h) not in busy), None)
    if addr is None:
        raise NetworkError(f"network {rec['Name']} has no free address left in {net}")
    d = leases_dir(root, rec)
    d.mkdir(mode=0o700, exist_ok=True)
    path = d / addr
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, f"{os.getpid()} {proc_start(os.getpid())}".encode())
    finally:
        os.close(fd)
    return addr, path


def make_netns(cid: str) -> None:
    """Just the named namespace (for pasta), with loopback up."""
    ip = tool("ip", "iproute2")
    detach(cid)
    sh([ip, "netns", "add", netns_name(cid)])
    sh([ip, "-n", netns_name(cid), "link", "set", "lo", "up"])


def detach(cid: str) -> None:
    """Remove the namespace and the veth (deleting either end deletes the pair)."""
    ip = tool("ip", "iproute2")
    if os.path.exists(f"/sys/class/net/{veth_name(cid)}"):
        sh([ip, "link", "del", veth_name(cid)], check=False)
    if os.path.exists(netns_path(cid)):
        sh([ip, "netns", "del", netns_name(cid)], check=False)


def hosts_text(hostname: str, own_ip: str | None, peers: list[tuple[str, list[str]]],
               extra: list[tuple[str, str]]) -> str:
    lines = list(HOSTS_HEAD)
    own = [hostname] + [n for addr, names in peers if addr == own_ip for n in names if n != hostname]
    lines.append(f"{own_ip or '127.0.1.1'}\t{' '.join(own)}")
    lines += [f"{addr}\t{' '.join(names)}" for addr, names in peers if addr != own_ip]
    lines += [f"{addr}\t{name}" for name, addr in extra]
    return "\n".join(lines) + "\n"


def write_in_place(path: Path, text: str) -> None:
    """Rewrite a bind-mounted file: a rename would leave the container looking at the old
    inode, so the content is replaced in place (O_NOFOLLOW: never through a link)."""
    data = text.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        # over the old content, then cut to length: no O_TRUNC, which on ext4 (auto_da_alloc)
        # flushes the file at close (~1 ms each, and a start rewrites every peer's file), and
        # which left a reader an empty file for a moment
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


__all__ = ["attach", "detach", "hosts_text", "lock", "netns_path", "write_in_place"]
