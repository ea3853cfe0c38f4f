"""The Dockerfile front end: text → typed instructions → stages (docs/design.md module map).

Public API (what the planner/engine call):
- `parse_dockerfile(text, filename="Dockerfile") -> Dockerfile` — raises DockerfileSyntaxError
  or InstructionError with a SourceSpan (`err.render()` prints `Dockerfile:LINE:COL: error: …`).
- `parse_dockerfile_cached(text, filename, cache_dir)` — the same, but a Dockerfile seen before
  (same text digest) is unpickled from `cache_dir` without importing Lark (no-op rebuilds).
- `Dockerfile.instructions`, `.directives` (escape, syntax, check), `.warnings`, `.stages()`.
- `builder.dockerfile.ast` (instruction classes), `.expand` (word expansion), `.stages`
  (split_stages, resolve_from, stage_dependencies, expanded_instructions), `.lint` (lint).
Module map: lexer.py (lines → tokens) · grammar.py + grammar/dockerfile.lark (LALR) ·
transform.py (→ nodes.Node) · build.py (→ ast.*) · expand.py · stages.py · directives.py ·
lint.py · cache.py.
Must not: import rich, zstandard, yaml, or anything outside builder.dockerfile/errors (+ lark,
lazily); no I/O except cache.py's own cache directory.
"""
from __future__ import annotations

from pathlib import Path

from builder.dockerfile.ast import Dockerfile


def parse_dockerfile(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Parse a whole Dockerfile into typed instructions."""
    from builder.dockerfile.build import build_all
    from builder.dockerfile.grammar import parse_nodes
    from builder.dockerfile.lint import parser_warnings

    r = parse_nodes(text, filename)
    instructions = build_all(r.nodes, filename, r.lines)
    return Dockerfile(filename=filename, directives=r.directives, instructions=instructions,
                      warnings=parser_warnings(r.warnings, filename, r.lines), lines=r.lines)


def parse_dockerfile_cached(text: str, filename: str = "Dockerfile", cache_dir: Path | None = None) -> Dockerfile:
    """`parse_dockerfile`, memoised on disk by the digest of (text, filename)."""
    if cache_dir is None:
        return parse_dockerfile(text, filename)
    from builder.dockerfile.cache import cached_parse

    return cached_parse(text, filename, Path(cache_dir), parse_dockerfile)


__all__ = ["Dockerfile", "parse_dockerfile", "parse_dockerfile_cached"]
