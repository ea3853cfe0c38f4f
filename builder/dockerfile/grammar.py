"""Loading the LALR grammar (grammar/dockerfile.lark) and running it over a Dockerfile text.

Owns: the one Lark instance (built once per process, with Lark's grammar cache on so later
processes skip grammar analysis), and `parse_nodes(text, filename) -> ParseResult`.
Lark is imported here and only here, lazily, so `import builder.dockerfile` stays cheap and a
cached parse (cache.py) never imports it.
Must not: build typed instructions (build.py) or touch files other than Lark's cache.
"""
from __future__ import annotations

import os
import tempfile
from importlib import resources

from builder.dockerfile.directives import Directives
from builder.dockerfile.nodes import Node
from builder.errors import DockerfileSyntaxError, SourceSpan
from runtime.record import Record

_PARSER = None


class ParseResult(Record):
    nodes: tuple[Node, ...]
    directives: Directives
    warnings: tuple  # lexer.Warning values (empty continuation lines)
    lines: tuple[str, ...]  # physical lines, for error spans


def _cache_path() -> str | bool:
    # Lark's default cache file lives in the temp dir keyed by grammar hash; keep that, but
    # fall back to no cache if the temp dir is not writable.
    d = tempfile.gettempdir()
    return True if os.access(d, os.W_OK) else False


def parser():
    global _PARSER
    if _PARSER is None:
        from lark import Lark

        from builder.dockerfile.lexer import DockerfileLexer
        from builder.dockerfile.transform import NodeBuilder

        text = resources.files("grammar").joinpath("dockerfile.lark").read_text(encoding="utf-8")
        _PARSER = Lark(text, parser="lalr", lexer=DockerfileLexer, transformer=NodeBuilder(),
                       cache=_cache_path(), maybe_placeholders=False)
    return _PARSER


def parse_nodes(text: str, filename: str = "Dockerfile") -> ParseResult:
    from lark.exceptions import UnexpectedInput, VisitError

    from builder.dockerfile.lexer import Source

    src = Source(text, filename)
    try:
        nodes = parser().parse(src)
    except DockerfileSyntaxError:
        raise
    except VisitError as e:
        if isinstance(e.orig_exc, DockerfileSyntaxError):
            raise e.orig_exc from None
        raise
    except UnexpectedInput as e:
        line = getattr(e, "line", 0) or 0
        col = getattr(e, "column", 1) or 1
        lines = src.lines or []
        tok = getattr(e, "token", None)
        what = f"unexpected {tok.type.lower()} {str(tok.value)!r}" if tok is not None else "unexpected input"
        raise DockerfileSyntaxError(
            f"syntax error: {what}",
            SourceSpan(filename, line, col, None, lines[line - 1] if 0 < line <= len(lines) else "")) from None
    return ParseResult(tuple(nodes), src.directives, tuple(src.warnings or ()), tuple(src.lines or ()))
