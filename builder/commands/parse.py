"""`pybuild parse [-f Dockerfile] [--dump]`: parse a Dockerfile and print it.

--dump prints BuildKit's parse-tree dump (the golden `result` format), byte for byte;
without it, one line per typed instruction with its location. Errors render gcc-style.
"""
from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("parse", help="parse a Dockerfile and print its instructions")
    p.add_argument("-f", "--file", default="Dockerfile", help="the Dockerfile (- for stdin)")
    p.add_argument("--dump", action="store_true", help="print the parse tree in BuildKit's dump format")
    p.add_argument("context", nargs="?", help="ignored; accepted for symmetry with build")


def read_dockerfile(path: str) -> tuple[str, str]:
    """(text, display name); bytes that are not UTF-8 survive as surrogate escapes."""
    from builder.errors import ContextError

    if path == "-":
        return sys.stdin.buffer.read().decode("utf-8", "surrogateescape"), "Dockerfile"
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape"), path
    except FileNotFoundError:
        raise ContextError(f"Dockerfile not found: {path}", hint="pass its path with -f") from None
    except IsADirectoryError:
        raise ContextError(f"{path} is a directory, not a Dockerfile") from None


def run(args: argparse.Namespace) -> int:
    text, name = read_dockerfile(args.file)
    out = sys.stdout.buffer
    if args.dump:
        from builder.dockerfile.grammar import parse_nodes
        from builder.dockerfile.nodes import dump

        # The dump is the parser's tree, as BuildKit's parser produces it: instruction-level
        # checks (argument counts, flags) are not applied, so it matches the golden files.
        r = parse_nodes(text, name)
        out.write((dump(r.nodes) + "\n").encode("utf-8", "surrogateescape"))
        return 0
    from builder.dockerfile import parse_dockerfile

    df = parse_dockerfile(text, name)
    for ins in df.instructions:
        out.write(f"{ins.span.line:>4}  {ins.original}\n".encode("utf-8", "surrogateescape"))
    for w in df.warnings:
        sys.stderr.write(w.render() + "\n")
    return 0
