"""`pybuild network create|ls|rm|inspect|prune`.

Owns: flags and output of the network commands. Must not: make bridges or rules itself
(builder.networks.bridge does).
"""
from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser("network", help="manage networks (create, ls, rm, inspect, prune)")
    nsub = p.add_subparsers(dest="network_command", metavar="COMMAND", required=True)
    q = nsub.add_parser("create", help="create a bridge network")
    q.add_argument("-d", "--driver", default="bridge", help="bridge (the only driver)")
    q.add_argument("--subnet", metavar="CIDR", help="IPv4 subnet (default: a free /24 of 10.89.0.0/16)")
    q.add_argument("--internal", action="store_true", help="no traffic in or out of the network")
    q.add_argument("--label", action="append", default=[], metavar="K=V")
    q.add_argument("name", metavar="NAME")
    q = nsub.add_parser("ls", aliases=["list"], help="list networks")
    q.add_argument("-q", "--quiet", action="store_true")
    q.set_defaults(network_command="ls")
    q = nsub.add_parser("rm", aliases=["remove"], help="remove networks")
    q.add_argument("names", nargs="+", metavar="NETWORK")
    q.set_defaults(network_command="rm")
    q = nsub.add_parser("inspect", help="show networks as JSON")
    q.add_argument("names", nargs="+", metavar="NETWORK")
    q = nsub.add_parser("prune", help="remove networks no container uses")
    q.add_argument("-f", "--force", action="store_true")


def _root():
    from builder import settings as settings_mod
    return settings_mod.load().root


def _members(root, name: str) -> list:
    from builder.containers.state import all_containers
    return [c for c in all_containers(root) if c.config.get("Network") == name]


def run(args: argparse.Namespace) -> int:
    from builder.errors import PybuildError, UsageError
    from builder.networks import bridge

    root = _root()
    cmd = args.network_command
    if cmd == "create":
        if args.driver != "bridge":
            raise UsageError(f"network driver {args.driver!r} is not supported (bridge only)")
        labels = dict(x.partition("=")[::2] for x in args.label)
        rec = bridge.create(root, args.name, args.subnet, labels, internal=args.internal)
        print(rec["Id"])
        return 0
    if cmd == "ls":
        nets = bridge.all_networks(root)
        if args.quiet:
            for n in nets:
                print(n["Id"][:12])
            return 0
        rows = [("NETWORK ID", "NAME", "DRIVER", "SCOPE")] + [(n["Id"][:12], n["Name"], "bridge", "local") for n in nets]
        rows += [("-", "host", "host", "local"), ("-", "none", "null", "local")]
        w = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            print("   ".join(v.ljust(x) for v, x in zip(r, w)).rstrip())
        return 0
    if cmd == "rm":
        rc = 0
        for name in args.names:
            try:
                users = [c.name for c in _members(root, name) if c.monitor_alive()]
                bridge.remove(root, name, users)
                print(name)
            except PybuildError as e:
                import sys
                sys.stderr.write(f"error: {e}\n")
                rc = 1
        return rc
    if cmd == "inspect":
        out = []
        for name in args.names:
            rec = bridge.load(root, name)
            if rec is None:
                raise PybuildError(f"network {name} not found")
            containers = {}
            for c in _members(root, name):
                st = c.status()
                if st.get("Status") == "running" and st.get("IPAddress"):
                    containers[c.id] = {"Name": c.name, "IPv4Address": f"{st['IPAddress']}/{st.get('PrefixLen', 24)}"}
            out.append({"Name": rec["Name"], "Id": rec["Id"], "Created": rec["Created"], "Scope": "local",
                        "Driver": "bridge", "EnableIPv6": False, "Internal": rec.get("Internal", False),
                        "IPAM": {"Driver": "default", "Config": [{"Subnet": rec["Subnet"], "Gateway": rec["Gateway"]}]},
                        "Options": {"com.docker.network.bridge.name": rec["Bridge"]},
                        "Containers": containers, "Labels": rec.get("Labels", {})})
        print(json.dumps(out, indent=4))
        return 0
    if cmd == "prune":
        for rec in bridge.all_networks(root):
            if not _members(root, rec["Name"]):
                bridge.remove(root, rec["Name"], [])
                print(rec["Name"])
        return 0
    raise UsageError(f"unknown network command {cmd}")
