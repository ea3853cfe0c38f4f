"""`pybuild setup emulation [ARCH…]`: host set-up that needs root and is never done silently.

Owns: the command-line face of builder.platforms.setup_emulation (register Debian's
qemu-user-static binfmt_misc handlers with the F flag, mounting binfmt_misc when needed) and
`--check` (report, per architecture, whether foreign binaries can run; exit 1 when one cannot).
Must not: hold the binfmt logic (builder.platforms does).
"""
from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("setup", help="host set-up: register QEMU emulation for foreign platforms")
    what = p.add_subparsers(dest="what", metavar="WHAT")
    e = what.add_parser("emulation", help="register qemu-user-static binfmt_misc handlers (F flag; root)")
    e.add_argument("arches", nargs="*", metavar="ARCH", help="e.g. arm64 arm riscv64 (default: every one Debian ships)")
    e.add_argument("--check", action="store_true", help="only report whether each ARCH (default arm64) can run")


def run(args: argparse.Namespace) -> int:
    from builder.errors import UsageError
    from builder import platforms

    if args.what != "emulation":
        raise UsageError("usage: pybuild setup emulation [ARCH…] [--check]")
    if args.check:
        bad = 0
        for a in args.arches or ["arm64"]:
            st = platforms.emulation_status(a)
            print(f"{st.arch}: {'ready' if st.ready else 'not ready'}"
                  + (f" ({st.handler})" if st.handler and st.ready else "") + (f": {st.reason}" if not st.ready else ""))
            bad += not st.ready
        return 1 if bad else 0
    for line in platforms.setup_emulation(tuple(args.arches)):
        print(line)
    sys.stdout.flush()
    return 0
