"""Lark transformer: the grammar's parse of lexer tokens → `Node` values (nodes.py).

Owns: mapping each grammar rule to a Node with arguments, flags, heredocs and positions.
Runs inline with the LALR parser (no intermediate tree), which keeps parsing fast.
Must not: validate instruction semantics (build.py) or do I/O.
"""
from __future__ import annotations

from lark import Token, Transformer

from builder.dockerfile.nodes import Node


def _pos(t: Token) -> tuple[int, int]:
    return (t.line, t.column)


class NodeBuilder(Transformer):
    """Each instruction rule returns a partial Node; `instruction` adds heredocs and end line."""

    def start(self, items):
        return items

    def flags(self, items):
        return items

    def heredocs(self, items):
        return items

    def instruction(self, items):
        fields, docs, eol = items
        return Node(**fields, heredocs=tuple(d.value for d in docs), end_line=eol.end_line)

    def _generic(self, items):
        kw, flags, *rest = items
        args: list[str] = []
        apos: list[tuple[int, int]] = []
        is_json = False
        child = None
        for t in rest:
            if isinstance(t, dict):
                child = Node(**t, end_line=kw.end_line)
            elif t.type == "JSON":
                is_json = True
                args.extend(t.value)
                apos.extend([_pos(t)] * len(t.value))
            elif t.type == "PAIR":
                args.extend(t.value)
                apos.extend([_pos(t)] * 3)
            else:
                args.append(t.value)
                apos.append(_pos(t))
        # A dict, not a Node: `instruction` adds heredocs and the end line in one construction.
        return dict(keyword=kw.value, flags=tuple(f.value for f in flags), args=tuple(args), json=is_json,
                    child=child, original=getattr(kw, "original", ""), line=kw.line, column=kw.column,
                    flag_positions=tuple(_pos(f) for f in flags), arg_positions=tuple(apos))

    from_ = run = cmd = entrypoint = shell = add = copy = volume = label = env = expose = arg = _generic
    user = workdir = stopsignal = maintainer = healthcheck = onbuild = unknown = _generic

