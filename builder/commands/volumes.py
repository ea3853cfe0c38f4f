"""`pybuild volume create|ls|rm|inspect|prune`.

Owns: flags and output of the volume commands. Must not: manage volume directories
itself (builder.volumes.store does).
"""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("volume", help="manage volumes (create, ls, rm, inspect, prune)")
    vsub = p.add_subparsers(dest="volume_command", metavar="COMMAND", required=True)
    q = vsub.add_parser("create", help="create a volume")
    q.add_argument("--label", action="append", default=[], metavar="K=V")
    q.add_argument("-d", "--driver", default="local")
    q.add_argument("name", nargs="?", metavar="NAME")
    q = vsub.add_parser("ls", aliases=["list"], help="list volumes")
    q.add_argument("-q", "--quiet", action="store_true")
    q.set_defaults(volume_command="ls")
    q = vsub.add_parser("rm", aliases=["remove"], help="remove volumes")
    q.add_argument("-f", "--force", action="store_true")
    q.add_argument("names", nargs="+", metavar="VOLUME")
    q.set_defaults(volume_command="rm")
    q = vsub.add_parser("inspect", help="show volumes as JSON")
    q.add_argument("names", nargs="+", metavar="VOLUME")
    q = vsub.add_parser("prune", help="remove unused anonymous volumes (-a: every unused volume)")
    q.add_argument("-a", "--all", action="store_true")
    q.add_argument("-f", "--force", action="store_true")


def run(args: argparse.Namespace) -> int:
    from builder import settings as settings_mod
    from builder.errors import PybuildError, UsageError
    from builder.volumes import store

    root = settings_mod.load().root
    cmd = args.volume_command
    if cmd == "create":
        if args.driver != "local":
            raise UsageError(f"volume driver {args.driver!r} is not supported (local only)")
        rec = store.create(root, args.name, dict(x.partition("=")[::2] for x in args.label))
        print(rec["Name"])
        return 0
    if cmd == "ls":
        vols = store.all_volumes(root)
        if args.quiet:
            for v in vols:
                print(v["Name"])
            return 0
        print(f"{'DRIVER':<10}VOLUME NAME")
        for v in vols:
            print(f"{'local':<10}{v['Name']}")
        return 0
    if cmd == "rm":
        rc = 0
        for name in args.names:
            try:
                store.remove(root, name, force=args.force)
                print(name)
            except PybuildError as e:
                sys.stderr.write(f"error: {e}\n")
                rc = 1
        return rc
    if cmd == "inspect":
        out = []
        for name in args.names:
            rec = store.load(root, name)
            if rec is None:
                raise PybuildError(f"no such volume: {name}")
            out.append({k: rec[k] for k in ("CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Scope")}
                       | {"Options": None})
        print(json.dumps(out, indent=4))
        return 0
    if cmd == "prune":
        gone = store.prune(root, all_=args.all)
        for n in gone:
            print(n)
        print(f"Total reclaimed: {len(gone)} volumes")
        return 0
    raise UsageError(f"unknown volume command {cmd}")
