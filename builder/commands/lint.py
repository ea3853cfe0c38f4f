"""`pybuild lint [-f Dockerfile] [--build-arg K=V] [--check] [--format text|json]`.

Prints BuildKit-named lint warnings (see builder.dockerfile.lint); exit 0 when clean or only
warnings, 1 when `--check` (or `# check=error=true`) turns findings into errors.
"""
from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("lint", help="check a Dockerfile for common mistakes")
    p.add_argument("-f", "--file", default="Dockerfile", help="the Dockerfile (- for stdin)")
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--check", action="store_true", help="treat warnings as errors (exit 1)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("context", nargs="?", help="ignored; accepted for symmetry with build")


def run(args: argparse.Namespace) -> int:
    from builder.commands.parse import read_dockerfile
    from builder.dockerfile import parse_dockerfile
    from builder.dockerfile.lint import enforce, lint

    text, name = read_dockerfile(args.file)
    df = parse_dockerfile(text, name)
    build_args = dict(a.partition("=")[::2] for a in args.build_arg)
    warnings = lint(df, build_args=build_args)
    if args.format == "json":
        import json

        for w in warnings:
            sys.stdout.write(json.dumps({"rule": w.rule, "message": w.message, "url": w.url,
                                         "file": w.span.file if w.span else None,
                                         "line": w.span.line if w.span else None}) + "\n")
    else:
        for w in warnings:
            sys.stderr.write(w.render() + "\n")
        if not warnings:
            sys.stderr.write("no lint warnings\n")
    enforce(warnings, df, force=args.check)
    return 0
