"""Parsing --format text into a tree (Go's text/template syntax): actions between `{{ }}` with
`{{- -}}` trim markers and comments, pipelines, declarations, if/else if/else, range, with,
break/continue. Malformed text is a TemplateParseError (a usage error). Must not: execute."""
from __future__ import annotations

import re

from builder.gotemplate.funcs import FUNCS
from builder.gotemplate.values import TemplateParseError, _rx

_ACTION_TOKEN_RE = r"""
    (?P<space>\s+)
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<pipe>\|)
  | (?P<comma>,)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\\n]|\\.)+')
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?))
  | (?P<variable>\$[A-Za-z0-9_]*)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<dot>\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
"""
class _Tok:
    __slots__ = ("kind", "text", "pos", "line", "field")

    def __init__(self, kind: str, text: str, pos: int, line: int) -> None:
        self.kind, self.text, self.pos, self.line = kind, text, pos, line
        self.field = ""  # a `.A.B` tail right after a variable, `)` or literal


def _split(text: str) -> list:
    """Text pieces and action token lists, with trim markers applied."""
    out: list = []
    i = 0
    while True:
        j = text.find("{{", i)
        if j < 0:
            out.append(("text", text[i:]))
            return out
        chunk = text[i:j]
        trim_left = text.startswith("{{- ", j) or text.startswith("{{-\t", j) or text.startswith("{{-\n", j)
        if trim_left:
            chunk = chunk.rstrip(" \t\r\n")
        out.append(("text", chunk))
        start = j + (3 if trim_left else 2)
        line = text.count("\n", 0, j) + 1
        if trim_left:
            while start < len(text) and text[start] in " \t\r\n":
                start += 1
        if text.startswith("/*", start):
            end = text.find("*/", start + 2)
            if end < 0:
                raise TemplateParseError(line, "unclosed comment")
            k = end + 2
            if text.startswith(" -}}", k):
                i = k + 4
                while i < len(text) and text[i] in " \t\r\n":
                    i += 1
                continue
            if not text.startswith("}}", k):
                raise TemplateParseError(line, "comment ends before closing delimiter")
            i = k + 2
            continue
        toks, i, trim_right = _lex_action(text, start, line)
        out.append(("action", toks, line, j))
        if trim_right:
            while i < len(text) and text[i] in " \t\r\n":
                i += 1


def _lex_action(text: str, pos: int, line: int) -> tuple[list[_Tok], int, bool]:
    toks: list[_Tok] = []
    depth = 0
    while True:
        if pos >= len(text):
            raise TemplateParseError(line, "unclosed action")
        if text.startswith("}}", pos):
            return toks, pos + 2, False
        if text[pos] in " \t\r\n":
            k = pos
            while k < len(text) and text[k] in " \t\r\n":
                k += 1
            if text.startswith("-}}", k):
                return toks, k + 3, True
        m = _rx("action", _ACTION_TOKEN_RE, re.X).match(text, pos)
        if not m:
            raise TemplateParseError(line, f"unexpected {text[pos]!r} in command")
        kind, tok_text = m.lastgroup, m.group()
        if "\n" in tok_text and kind not in ("space", "raw"):
            raise TemplateParseError(line, "unterminated quoted string")
        if kind == "field" and toks and toks[-1].kind in ("variable", "rparen", "field_after") \
                and toks[-1].pos + len(toks[-1].text) == pos:
            toks[-1].field += tok_text  # `$x.A`, `(…).A`
            toks[-1].text += tok_text
        elif kind != "space":
            if kind == "lparen":
                depth += 1
            elif kind == "rparen":
                depth -= 1
                if depth < 0:
                    raise TemplateParseError(line, "unexpected right paren")
            toks.append(_Tok(kind, tok_text, pos, line))
        pos = m.end()


# parse tree

class _Node:
    __slots__ = ()


class _Text(_Node):
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Pipe(_Node):
    __slots__ = ("decl", "assign", "cmds", "src", "col", "line")

    def __init__(self, decl: list[str], assign: bool, cmds: list[list], src: str, col: int, line: int = 1) -> None:
        self.decl, self.assign, self.cmds, self.src, self.col, self.line = decl, assign, cmds, src, col, line


class _Action(_Node):
    __slots__ = ("pipe",)

    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe


class _Branch(_Node):
    __slots__ = ("kind", "pipe", "body", "else_body")

    def __init__(self, kind: str, pipe: _Pipe, body: list, else_body: list | None) -> None:
        self.kind, self.pipe, self.body, self.else_body = kind, pipe, body, else_body


class _Loop(_Node):
    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


# argument nodes are tuples: ("field", names) ("var", name, names) ("dot",) ("ident", name)
# ("lit", value) ("pipe", _Pipe, names)


class _Parser:
    def __init__(self, pieces: list, source: str) -> None:
        self.pieces, self.i, self.source = pieces, 0, source
        self.loop_depth = 0

    def parse_list(self, stop: tuple[str, ...]) -> tuple[list, str | None, list]:
        """Nodes up to one of the `stop` keywords (returns which, and the rest of its tokens)."""
        nodes: list = []
        while self.i < len(self.pieces):
            piece = self.pieces[self.i]
            self.i += 1
            if piece[0] == "text":
                if piece[1]:
                    nodes.append(_Text(piece[1]))
                continue
            _, toks, line, offset = piece
            if not toks:
                raise TemplateParseError(line, "missing value for command")
            head = toks[0]
            word = head.text if head.kind == "ident" else None
            if word in ("end", "else"):
                if word not in stop:
                    raise TemplateParseError(line, f"unexpected {{{{{word}}}}}")
                if word == "end" and len(toks) > 1:
                    raise TemplateParseError(line, "unexpected token in end")
                return nodes, word, toks[1:] + [line]
            if word in ("if", "range", "with"):
                nodes.append(self.parse_branch(word, toks[1:], line, offset))
            elif word in ("break", "continue"):
                if not self.loop_depth:
                    raise TemplateParseError(line, f"{{{{{word}}}}} outside {{{{range}}}}")
                nodes.append(_Loop(word))
            elif word in ("define", "template", "block"):
                raise TemplateParseError(line, f"{{{{{word}}}}} is not supported in --format")
            else:
                nodes.append(_Action(self.parse_pipe(toks, line, offset, allow_decl=True)))
        if stop:
            raise TemplateParseError(self.pieces[-1][2] if len(self.pieces[-1]) > 2 else 1, "unexpected EOF")
        return nodes, None, []

    def parse_branch(self, kind: str, toks: list[_Tok], line: int, offset: int) -> _Branch:
        if not toks:
            raise TemplateParseError(line, f"missing value for {kind}")
        pipe = self.parse_pipe(toks, line, offset, allow_decl=True, ranged=kind == "range")
        if kind == "range":
            self.loop_depth += 1
        body, word, rest = self.parse_list(("end", "else"))
        if kind == "range":
            self.loop_depth -= 1
        else_body = None
        if word == "else":
            rest_toks, rline = rest[:-1], rest[-1]
            if rest_toks and rest_toks[0].kind == "ident" and rest_toks[0].text in ("if", "with") \
                    and kind in ("if", "with"):
                # `{{else if …}}` is `{{else}}{{if …}}…{{end}}` sharing the outer end
                else_body = [self.parse_branch(rest_toks[0].text, rest_toks[1:], rline, offset)]
                return _Branch(kind, pipe, body, else_body)
            if rest_toks:
                raise TemplateParseError(rline, "unexpected token in else")
            else_body, word, _ = self.parse_list(("end",))
        return _Branch(kind, pipe, body, else_body)

    def parse_pipe(self, toks: list[_Tok], line: int, offset: int, allow_decl: bool = False,
                   ranged: bool = False) -> _Pipe:
        decl: list[str] = []
        assign = False
        k = 0
        src = " ".join(t.text for t in toks)
        col = (toks[0].pos - self.source.rfind("\n", 0, toks[0].pos) - 1) if toks else 0
        # `$x :=`, `$x =`, `$i, $e :=` (range)
        if allow_decl and toks and toks[0].kind == "variable" and not toks[0].field:
            if len(toks) > 1 and toks[1].kind in ("declare", "assign"):
                decl, assign, k = [toks[0].text], toks[1].kind == "assign", 2
            elif ranged and len(toks) > 3 and toks[1].kind == "comma" and toks[2].kind == "variable" \
                    and toks[3].kind in ("declare", "assign"):
                decl, assign, k = [toks[0].text, toks[2].text], toks[3].kind == "assign", 4
        cmds, k = self.parse_cmds(toks, k, line, top=True)
        if not cmds:
            raise TemplateParseError(line, "missing value for command")
        return _Pipe(decl, assign, cmds, src, col, line)

    def parse_cmds(self, toks: list[_Tok], k: int, line: int, top: bool) -> tuple[list[list], int]:
        cmds: list[list] = []
        cur: list = []
        while k < len(toks):
            t = toks[k]
            if t.kind == "rparen":
                if top:
                    raise TemplateParseError(line, "unexpected right paren")
                break
            if t.kind == "pipe":
                if not cur:
                    raise TemplateParseError(line, "missing command")
                cmds.append(cur)
                cur = []
                k += 1
                continue
            if t.kind in ("declare", "assign", "comma"):
                raise TemplateParseError(line, f"unexpected {t.text!r} in command")
            if t.kind == "lparen":
                inner, k = self.parse_cmds(toks, k + 1, line, top=False)
                if k >= len(toks) or toks[k].kind != "rparen":
                    raise TemplateParseError(line, "unclosed left paren")
                if not inner:
                    raise TemplateParseError(line, "missing value for parenthesized pipeline")
                names = toks[k].field.split(".")[1:] if toks[k].field else []
                cur.append(("pipe", _Pipe([], False, inner, "", 0), names))
                k += 1
                continue
            cur.append(_operand(t, line))
            k += 1
        if cur:
            cmds.append(cur)
        elif cmds:
            raise TemplateParseError(line, "missing command")
        return cmds, k


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b",
            "f": "\f", "v": "\v", "0": "\0"}


def _unquote(body: str, line: int) -> str:
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            try:
                out.append(chr(int(body[i + 2:i + 2 + n], 16)))
            except ValueError:
                raise TemplateParseError(line, "invalid syntax in quoted string") from None
            i += 2 + n
        else:
            raise TemplateParseError(line, f"invalid escape \\{e} in quoted string")
    return "".join(out)


def _operand(t: _Tok, line: int) -> tuple:
    k = t.kind
    names = t.field.split(".")[1:] if t.field else []
    if k == "field":
        return ("field", t.text.split(".")[1:])
    if k == "variable":
        return ("var", t.text[: len(t.text) - len(t.field)], names)
    if k == "dot":
        return ("dot",)
    if k == "ident":
        if t.text in ("true", "false"):
            return ("lit", t.text == "true")
        if t.text == "nil":
            return ("lit", None)
        if t.text not in FUNCS:
            raise TemplateParseError(line, f'function "{t.text}" not defined')
        return ("ident", t.text)
    if k == "string":
        return ("lit", _unquote(t.text[1:-1], line))
    if k == "raw":
        return ("lit", t.text[1:-1])
    if k == "char":
        s = _unquote(t.text[1:-1], line)
        if len(s) != 1:
            raise TemplateParseError(line, f"malformed character constant: {t.text}")
        return ("lit", ord(s))
    if k == "number":
        txt = t.text.replace("_", "")
        try:
            if re.fullmatch(r"[+-]?0[xX][0-9a-fA-F]+|[+-]?0[oO][0-7]+|[+-]?0[bB][01]+", txt):
                return ("lit", int(txt, 0))
            if re.fullmatch(r"[+-]?\d+", txt):
                return ("lit", int(txt, 8) if len(txt.lstrip("+-")) > 1 and txt.lstrip("+-")[0] == "0"
                        else int(txt))
            f = float(txt)
        except ValueError:
            raise TemplateParseError(line, f"bad number syntax: {t.text!r}") from None
        return ("lit", f)  # Go: a constant written with . or an exponent is a float64
    raise TemplateParseError(line, f"unexpected {t.text!r} in operand")


