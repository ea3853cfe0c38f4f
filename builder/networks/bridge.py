"""User networks (and the default `bridge`): a Linux bridge, a /24 subnet and an nft table.

Owns: `$PYBUILD_ROOT/networks/<name>.json` records, the kernel objects behind each network
(as root: a bridge `pbr<hash>` holding the gateway address; an nft table `ip pybuild-<bridge>`
that masquerades the subnet's outbound traffic and drops anything routed from this bridge
to another pybuild bridge, so networks do not reach each other), choosing a free subnet, and
removing all of it again. Must not: touch containers (endpoint.py attaches them).

Tools: iproute2's `ip` and nftables' `nft` (Debian packages iproute2, nftables); a clear
error names the missing one. Outbound traffic needs net.ipv4.ip_forward=1, which creating
a network sets (as docker does).
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

from builder.containers.state import NAME_RE, _Lock, now_iso, read_json, write_json
from builder.errors import PybuildError
from builder.oci.digest import sha256  # (not hashlib: OpenSSL's load is ~2.5 ms of `run -d`)
from builder.rootless import host_root

DEFAULT = "bridge"
POOL = ipaddress.ip_network("10.89.0.0/16")  # /24 subnets are cut from here


class NetworkError(PybuildError):
    pass


class MissingTool(NetworkError):
    """A command networking needs is not installed."""


def networks_dir(root: Path) -> Path:
    return root / "networks"


def tool(name: str, package: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None)
    if not path:
        raise MissingTool(f"networking needs the {name!r} command (Debian package {package}); install it, "
                           "or use --network host|none")
    return path


def sh(argv: list[str], *, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, input=input, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise NetworkError(f"{' '.join(argv[:4])}…: {r.stderr.strip() or f'exit status {r.returncode}'}")
    return r


def lock(root: Path) -> _Lock:
    networks_dir(root).mkdir(parents=True, exist_ok=True)
    return _Lock(networks_dir(root) / ".lock")


def load(root: Path, name: str) -> dict | None:
    if not NAME_RE.match(name):
        return None
    return read_json(networks_dir(root) / f"{name}.json")


def all_networks(root: Path) -> list[dict]:
    d = networks_dir(root)
    out = [read_json(p) for p in sorted(d.glob("*.json"))] if d.is_dir() else []
    return [n for n in out if n]


def _bridge_name(root: Path, name: str) -> str:
    return "pbr" + sha256(f"{root}\0{name}".encode()).hexdigest()[:10]


def _used_subnets() -> list[ipaddress.IPv4Network]:
    r = sh([tool("ip", "iproute2"), "-j", "-4", "addr"], check=False)
    out = []
    try:
        for link in json.loads(r.stdout or "[]"):
            for a in link.get("addr_info", []):
                out.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    except (ValueError, KeyError):
        pass
    return out


def create(root: Path, name: str, subnet: str | None = None, labels: dict | None = None,
           internal: bool = False) -> dict:
    if not NAME_RE.match(name) or name in ("host", "none"):
        raise NetworkError(f"invalid network name {name!r}")
    if not host_root():
        raise NetworkError("bridge networks need root here (rootless: use --network host or none)")
    with lock(root):
        if load(root, name):
            raise NetworkError(f"network with name {name} already exists")
        collect_orphans()
        used = _used_subnets() + [ipaddress.ip_network(n["Subnet"]) for n in all_networks(root)]
        if subnet:
            try:
                net = ipaddress.ip_network(subnet)
            except ValueError as e:
                raise NetworkError(f"invalid subnet {subnet!r}: {e}") from None
            if net.version != 4 or net.prefixlen > 30:
                raise NetworkError(f"subnet {subnet}: an IPv4 network of /30 or larger is needed")
            if any(net.overlaps(u) for u in used):
                raise NetworkError(f"subnet {subnet} overlaps a network in use")
        else:
            net = next((s for s in POOL.subnets(new_prefix=24) if not any(s.overlaps(u) for u in used)), None)
            if net is None:
                raise NetworkError(f"no free /24 subnet left in {POOL}")
        rec = {"Name": name, "Id": os.urandom(32).hex(), "Created": now_iso(), "Driver": "bridge",
               "Subnet": str(net), "Gateway": str(next(net.hosts())), "Bridge": _bridge_name(root, name),
               "Internal": internal, "Labels": labels or {}}
        _make_kernel_objects(rec, root)
        try:
            write_json(networks_dir(root) / f"{name}.json", rec)
        except BaseException:
            _remove_kernel_objects(rec)
            raise
        return rec


def ensure_default(root: Path) -> dict:
    rec = load(root, DEFAULT)
    if rec is None:
        try:
            rec = create(root, DEFAULT)
        except NetworkError as e:
            if "already exists" not in str(e):
                raise
            rec = load(root, DEFAULT)
            assert rec is not None
    elif not os.path.exists(f"/sys/class/net/{rec['Bridge']}"):
        _make_kernel_objects(rec, root)  # after a reboot: the record outlives the bridge
    return rec


def ensure_up(rec: dict, root: Path | None = None) -> None:
    if not os.path.exists(f"/sys/class/net/{rec['Bridge']}"):
        _make_kernel_objects(rec, root)


ALIAS_PREFIX = "pybuild-network "


def _mount_ns() -> str:
    """Our mount namespace's id: a record path means something only inside the namespace
    that wrote it (a chroot or container sharing this network namespace sees other files)."""
    try:
        return str(os.stat("/proc/self/ns/mnt").st_ino)
    except OSError:
        return "0"


def collect_orphans(under: str | None = None) -> list[str]:
    """Remove the bridges (and nft tables) of networks whose record is gone — a store that
    was deleted with its networks still up — or, with `under`, of every network whose
    record lies below that directory. Each bridge names, in its alias
    (/sys/class/net/BR/ifalias), the mount namespace and path of its record; bridges made
    from another mount namespace are never touched. Returns the bridges removed."""
    gone = []
    mine = _mount_ns()
    try:
        links = [n for n in os.listdir("/sys/class/net") if n.startswith("pbr")]
    except OSError:
        return gone
    for br in links:
        try:
            with open(f"/sys/class/net/{br}/ifalias") as f:
                alias = f.read().strip()
        except OSError:
            continue
        if not alias.startswith(ALIAS_PREFIX):
            continue
        ns, _, record = alias[len(ALIAS_PREFIX):].partition(" ")
        if ns != mine or not record.startswith("/"):
            continue
        if (under is not None and record.startswith(under.rstrip("/") + "/")) or \
                (under is None and not os.path.exists(record)):
            _remove_kernel_objects({"Bridge": br})
            gone.append(br)
    return gone


def _nft_table(rec: dict) -> str:
    return f"pybuild-{rec['Bridge']}"


def _make_kernel_objects(rec: dict, root: Path | None = None) -> None:
    ip, nft = tool("ip", "iproute2"), tool("nft", "nftables")
    br, net = rec["Bridge"], ipaddress.ip_network(rec["Subnet"])
    sh([ip, "link", "add", br, "type", "bridge"], check=False)  # (exists after a crash: fine)
    if root is not None:  # for collect_orphans(): which record this bridge belongs to
        record = networks_dir(root).absolute() / (rec["Name"] + ".json")
        sh([ip, "link", "set", br, "alias", f"{ALIAS_PREFIX}{_mount_ns()} {record}"])
    sh([ip, "addr", "replace", f"{rec['Gateway']}/{net.prefixlen}", "dev", br])
    sh([ip, "link", "set", br, "up"])
    # published ports reached on 127.0.0.1 are DNATed to the bridge: loopback sources must
    # be routable there (this bridge only), as docker sets it on docker0
    try:
        with open(f"/proc/sys/net/ipv4/conf/{br}/route_localnet", "w") as f:
            f.write("1")
    except OSError as e:
        raise NetworkError(f"cannot set route_localnet on {br}: {e.strerror}") from None
    table = _nft_table(rec)
    rules = [f"table ip {table} {{}}", f"delete table ip {table}", f"table ip {table} {{",
             "  chain forward {", "    type filter hook forward priority 0; policy accept;",
             # containers on different pybuild networks do not reach each other
             f'    iifname "{br}" oifname "pbr*" oifname != "{br}" drop',
             f'    iifname "pbr*" iifname != "{br}" oifname "{br}" drop']
    if rec.get("Internal"):
        rules += [f'    iifname "{br}" oifname != "{br}" drop', f'    oifname "{br}" iifname != "{br}" drop']
    rules += ["  }", "  chain postrouting {", "    type nat hook postrouting priority 100; policy accept;",
              f'    ip saddr {net} oifname != "{br}" masquerade', "  }", "}"]
    sh([nft, "-f", "-"], input="\n".join(rules) + "\n")
    if not rec.get("Internal"):
        try:
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write("1")
        except OSError as e:
            raise NetworkError(f"cannot enable net.ipv4.ip_forward (outbound traffic needs it): {e.strerror}") from None


def _remove_kernel_objects(rec: dict) -> None:
    sh([tool("nft", "nftables"), "delete", "table", "ip", _nft_table(rec)], check=False)
    sh([tool("ip", "iproute2"), "link", "del", rec["Bridge"]], check=False)


def remove(root: Path, name: str, users: list[str]) -> None:
    """Remove network `name`; `users` are the containers still attached (then refuse)."""
    if name in (DEFAULT, "host", "none"):
        if name != DEFAULT or load(root, name) is None:
            raise NetworkError(f"{name} is a pre-defined network and cannot be removed")
    with lock(root):
        rec = load(root, name)
        if rec is None:
            raise NetworkError(f"network {name} not found")
        if users:
            raise NetworkError(f"network {name} has active endpoints ({', '.join(users)}): stop or remove them first")
        _remove_kernel_objects(rec)
        os.unlink(networks_dir(root) / f"{name}.json")
        shutil.rmtree(networks_dir(root) / f"{name}.leases", ignore_errors=True)
