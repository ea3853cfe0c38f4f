"""The low-level parse tree: one Node per instruction, as BuildKit's parser builds it.

Owns: the Node value (keyword as written, flags, arguments, JSON-form marker, ONBUILD child,
heredocs, the logical line, line/column positions) and `dump()`, the golden-file format of
BuildKit's `Node.Dump()` that `pybuild parse --dump` prints byte for byte.
Must not: interpret arguments (ast.py/build.py do that) or expand variables.
"""
from __future__ import annotations

from builder.dockerfile.lineparse import Heredoc, go_trim, goquote
from runtime.record import Record


class Node(Record):
    keyword: str  # as written, e.g. "copy" or "COPY"
    flags: tuple[str, ...] = ()
    args: tuple[str, ...] = ()  # ENV/LABEL: flattened (key, value, sep) triples
    json: bool = False  # arguments came from a JSON array (exec form)
    child: "Node | None" = None  # ONBUILD's inner instruction
    heredocs: tuple[Heredoc, ...] = ()
    original: str = ""  # the logical line (continuations joined)
    line: int = 0  # first physical line (1-based)
    column: int = 1  # column of the keyword
    end_line: int = 0  # last physical line consumed (continuations, heredoc bodies)
    flag_positions: tuple[tuple[int, int], ...] = ()  # (line, column) of each flag
    arg_positions: tuple[tuple[int, int], ...] = ()  # (line, column) of each argument token

    @property
    def name(self) -> str:
        return self.keyword.lower()

    def dump(self) -> str:
        s = self.keyword.lower()
        if self.flags:
            s += " [" + " ".join(goquote(f) for f in self.flags) + "]"
        if self.child is not None:
            s += " (" + self.child.dump() + ")"
        for a in self.args:
            s += " " + goquote(a)
        return go_trim(s)


def dump(nodes: tuple[Node, ...] | list[Node]) -> str:
    """The whole tree as BuildKit dumps it (no final newline)."""
    return go_trim("".join("(" + n.dump() + ")\n" for n in nodes))
