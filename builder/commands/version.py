"""`pybuild version`: print the version of pybuild and of Python."""
from __future__ import annotations

import argparse
import platform
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("version", help="show version information")
    p.add_argument("--format", choices=["text", "json"], default="text")


def run(args: argparse.Namespace) -> int:
    from builder import __version__

    info = {"version": __version__, "python": platform.python_version(), "os": sys.platform,
            "arch": platform.machine()}
    if args.format == "json":
        import json

        print(json.dumps(info, indent=2))
    else:
        print(f"pybuild {info['version']} (python {info['python']}, {info['os']}/{info['arch']})")
    return 0
