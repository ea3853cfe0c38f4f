"""docker's list output: `table …` (a header line from the command's column names, then columns
aligned like Go's text/tabwriter with docker's settings), `json` (one object a line), or a
template per row. Must not: read the store (rows come from the command)."""
from __future__ import annotations

from builder.gotemplate.execute import parse
from builder.gotemplate.funcs import _json, _json_escaped
from builder.gotemplate.values import MISSING, gostr


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter (AlignLeft, padchar ' '): tab-terminated cells aligned per column
    block (consecutive lines that have that column); a line's last cell is not aligned."""
    lines = [ln.split("\t") for ln in text.split("\n")]
    trailing_nl = text.endswith("\n")
    if trailing_nl:
        lines = lines[:-1]
    widths: list[int] = []
    out: list[str] = []

    def write(line0: int, line1: int) -> None:
        for cells in lines[line0:line1]:
            parts = []
            for j, c in enumerate(cells):
                if j < len(cells) - 1 and j < len(widths):
                    parts.append(c.ljust(widths[j]))
                else:
                    parts.append(c)
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, _width(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write(line0, line1)

    fmt(0, len(lines))
    return "\n".join(out) + ("\n" if trailing_nl else "")


def _width(s: str) -> int:
    return len(s)  # tabwriter counts runes (code points), as Python's len does


def format_rows(fmt: str | None, rows: list[dict], headers: dict[str, str], default_table: str) -> str:
    """docker's formatting of a list command's rows: `table …` (header + aligned columns),
    `json` (one JSON object a line), or a template applied to each row. `fmt` None or "table"
    is the command's default table. Parse errors come before any row is rendered."""
    if fmt is None or fmt.strip() == "table":
        fields = _plain_table_fields(default_table)
        if fields is not None:  # the default table: no template to run (start-up time)
            lines = ["\t".join(headers.get(f, f.upper()) for f in fields)]
            lines += ["\t".join(gostr(r.get(f, MISSING)) for f in fields) for r in rows]
            return tabwrite("\n".join(lines) + "\n")
        fmt = default_table
    if fmt.strip() == "json":
        return "".join(_json_escaped(r) + "\n" for r in rows)
    table = fmt.lstrip().startswith("table")
    body = fmt.lstrip()[5:] if table else fmt
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    tpl = parse(body)
    out: list[str] = []
    if table:
        head = tpl.execute(_Header(headers), json_fn=lambda v: _json(v))
        out.append(head + "\n")
    for r in rows:
        out.append(tpl.execute(r, json_fn=_json_escaped) + "\n")
    text = "".join(out)
    return tabwrite(text) if table else text


def _plain_table_fields(fmt: str) -> list[str] | None:
    """["A", "B"] for exactly `table {{.A}}\t{{.B}}`, else None."""
    body = fmt.strip()
    if not body.startswith("table "):
        return None
    fields = []
    for cell in body[6:].strip().replace("\\t", "\t").split("\t"):
        name = cell[3:-2] if cell.startswith("{{.") and cell.endswith("}}") else ""
        if not name.isidentifier():
            return None
        fields.append(name)
    return fields


class _Header(dict):
    """What `table` renders its first line from: each field names its column's header."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__(headers)

    def get(self, key, default=None):  # type: ignore[override]
        return super().get(key, key.upper())
