"""docker's `--format` language: Go's text/template over JSON-like data, plus docker's functions.

Owns: parsing a template (`parse(text) -> Template`), executing it over Python values (dicts,
lists, str, int, float, bool, None), Go's `%v` printing of those values, docker's template
functions (json, join, split, lower, upper, title, pad, truncate, println) next to Go's built-in
ones (printf, print, len, index, slice, eq/ne/lt/le/gt/ge, and/or/not), the `table` prefix with a
tab-aligned writer like docker's (Go tabwriter: min width 10, padding 3), and `--format json`.
Semantics follow Go's text/template: `{{.A.B}}`, `$`, `$x := …`, pipes `|`, `{{if}}`/`{{else if}}`/
`{{else}}`, `{{range}}` (with `$i, $e :=`, `{{break}}`, `{{continue}}`), `{{with}}`, `{{- -}}` trim
markers, comments. A missing map key prints `<no value>` (docker 20.10's behaviour; docker 23+
inspect errors instead). Must not: touch files, print or exit (errors are TemplateError).
Pure standard library.
"""
from __future__ import annotations

import json
import math
import re

from builder.errors import PybuildError, UsageError

__all__ = ["TemplateError", "TemplateParseError", "Template", "parse", "render", "tabwrite",
           "format_rows", "gostr"]


class TemplateParseError(UsageError):
    """The template text is malformed (an option error: exit 2, before any work)."""

    def __init__(self, line: int, msg: str) -> None:
        super().__init__(f"template parsing error: template: :{line}: {msg}")


class TemplateError(PybuildError):
    """Executing a well-formed template failed (wrong types, unknown field of a non-map…)."""


class _Missing:
    """A map key that is not there: prints `<no value>` like Go's invalid reflect.Value."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


# ---------------------------------------------------------------------------------------------
# lexing

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
_compiled: dict[str, re.Pattern] = {}


def _rx(name: str, pattern: str, flags: int = 0) -> re.Pattern:
    """Compiled on first use: `pybuild images` with its default table never needs them."""
    rx = _compiled.get(name)
    if rx is None:
        rx = _compiled[name] = re.compile(pattern, flags)
    return rx


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


# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# printing values as Go's fmt %v does

def gostr(v) -> str:
    """Go's `%v` of a JSON-like value: `[a b]`, `map[k:v]`, `<nil>`, `true`, `1.5`."""
    if v is MISSING:
        return "<no value>"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _gofloat(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(gostr(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{gostr(k)}:{gostr(v[k])}" for k in sorted(v, key=str)) + "]"
    return str(v)


def _gofloat(f: float) -> str:
    """Go's %v of a float64: shortest digits; exponent form below 1e-4 or from 1e6 (`1.5e+06`)."""
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if math.isnan(f):
        return "NaN"
    if f == 0:
        return "0"
    from decimal import Decimal

    d = Decimal(repr(f))
    exp = d.adjusted()
    if exp < -4 or exp >= 21 or exp >= 6:
        digits = "".join(map(str, d.as_tuple().digits)).rstrip("0") or "0"
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{'-' if f < 0 else ''}{mant}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    s = format(d, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


# ---------------------------------------------------------------------------------------------
# functions

def _truth(v) -> bool:
    if v is MISSING or v is None:
        return False
    if isinstance(v, (bool, int, float, str, list, tuple, dict)):
        return bool(v)
    return True


def _json(v) -> str:
    return json.dumps(None if v is MISSING else v, separators=(",", ":"), ensure_ascii=False)


def _json_escaped(v) -> str:
    """Go's json.Marshal: `<`, `>`, `&` as \\u003c… (docker's list rows go through it)."""
    return _json(v).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _need_str(name: str, v) -> str:
    if isinstance(v, str):
        return v
    raise TemplateError(f"wrong type for value; expected string; got {_gotype(v)}")


def _gotype(v) -> str:
    if v is None or v is MISSING:
        return "<nil>"
    return {bool: "bool", int: "int", float: "float64", str: "string", list: "[]interface {}",
            tuple: "[]interface {}", dict: "map[string]interface {}"}.get(type(v), type(v).__name__)


def _join(items, sep) -> str:
    if isinstance(items, str):
        return items
    if not isinstance(items, (list, tuple)):
        raise TemplateError(f"wrong type for value; expected []string; got {_gotype(items)}")
    return _need_str("join", sep).join(gostr(x) for x in items)


def _title(s) -> str:
    s = _need_str("title", s)
    out, prev = [], " "
    for c in s:
        psep = (not (prev.isalnum() or prev == "_")) if prev.isascii() else prev.isspace()
        out.append(c.upper() if psep else c)
        prev = c
    return "".join(out)


def _len(v) -> int:
    if isinstance(v, (str, list, tuple, dict)):
        return len(v.encode()) if isinstance(v, str) else len(v)
    raise TemplateError(f"len of type {_gotype(v)}")


def _index(item, *keys):
    for k in keys:
        if isinstance(item, dict):
            item = item.get(k, "") if isinstance(k, str) else MISSING
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(k, int) or isinstance(k, bool):
                raise TemplateError(f"cannot index slice/array with type {_gotype(k)}")
            seq = item.encode() if isinstance(item, str) else item
            if not 0 <= k < len(seq):
                raise TemplateError(f"index out of range: {k}")
            item = seq[k]
        elif (item is None or item is MISSING) and isinstance(k, str):
            item = ""  # a map field left out of the JSON (docker's nil map[string]string): zero value
        elif item is None or item is MISSING:
            raise TemplateError("index of untyped nil")
        else:
            raise TemplateError(f"can't index item of type {_gotype(item)}")
    return item


def _slice(item, *idx):
    if not isinstance(item, (str, list, tuple)):
        raise TemplateError(f"can't slice item of type {_gotype(item)}")
    if len(idx) > 2:
        raise TemplateError("too many slice indexes")
    lo = idx[0] if idx else 0
    hi = idx[1] if len(idx) > 1 else len(item)
    if not 0 <= lo <= hi <= len(item):
        raise TemplateError(f"index out of range: {hi if hi > len(item) else lo}")
    return item[lo:hi]


def _cmp_key(a, b):
    num = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        if type(a) is not type(b):
            raise TemplateError(f"incompatible types for comparison: {_gotype(a)} and {_gotype(b)}")
        return a, b
    if isinstance(a, num) and isinstance(b, num):
        return a, b
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    if a is MISSING or b is MISSING or a is None or b is None:
        raise TemplateError("invalid type for comparison")
    raise TemplateError(f"incompatible types for comparison: {_gotype(a)} and {_gotype(b)}")


def _eq(a, *bs) -> bool:
    if not bs:
        raise TemplateError("missing argument for comparison")
    for b in bs:
        if a is None or b is None or a is MISSING or b is MISSING:
            if (a in (None, MISSING)) and (b in (None, MISSING)):
                return True
            continue
        if isinstance(a, (list, tuple, dict)) or isinstance(b, (list, tuple, dict)):
            raise TemplateError("non-comparable type")
        x, y = _cmp_key(a, b)
        if x == y:
            return True
    return False


def _lt(a, b) -> bool:
    x, y = _cmp_key(a, b)
    if isinstance(x, bool):
        raise TemplateError("invalid type for comparison")
    return x < y


def _go_print(*args) -> str:
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(gostr(a))
    return "".join(out)


_VERB_RE = r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d+))?([a-zA-Z%])"


def _printf(fmt, *args) -> str:
    fmt = _need_str("printf", fmt)
    out, ai, pos = [], 0, 0
    for m in _rx("verb", _VERB_RE).finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        if width == "*" or prec == "*":  # width/precision from the argument list, as Go's fmt
            stars = [width == "*", prec == "*"]
            vals = []
            for star in stars:
                if not star:
                    continue
                if ai >= len(args) or not isinstance(args[ai], int) or isinstance(args[ai], bool):
                    raise TemplateError("bad width or precision argument for printf")
                vals.append(str(abs(args[ai])))
                ai += 1
            if stars[0]:
                width = vals.pop(0)
            if stars[1]:
                prec = vals.pop(0)
        if ai >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        a = args[ai]
        ai += 1
        out.append(_fmt_one(a, flags, width, prec, verb))
    out.append(fmt[pos:])
    if ai < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{_gotype(a)}={gostr(a)}" for a in args[ai:]) + ")")
    return "".join(out)


def _fmt_one(a, flags: str, width: str | None, prec: str | None, verb: str) -> str:
    w = width or ""
    p = f".{prec}" if prec is not None else ""
    align = "<" if "-" in flags else ">"
    zero = "0" in flags and "-" not in flags
    sign = "+" if "+" in flags else ("" if " " not in flags else " ")

    def pad(s: str) -> str:
        if not w:
            return s
        if zero and s[:1] in "+-" and verb in "dfeEgGxX":
            return s[0] + s[1:].rjust(int(w) - 1, "0")
        return s.rjust(int(w), "0") if zero else (s.ljust(int(w)) if align == "<" else s.rjust(int(w)))

    isnum = isinstance(a, (int, float)) and not isinstance(a, bool)
    if verb in ("v", "s"):
        s = gostr(a)
        if verb == "s" and not isinstance(a, (str, list, tuple, dict)):
            if a is None or a is MISSING:
                s = "%!s(<nil>)"
            else:
                s = f"%!s({_gotype(a)}={gostr(a)})"
        if prec is not None and isinstance(a, str):
            s = s[: int(prec)]
        return pad(s)
    if verb == "q":
        if isinstance(a, str):
            return pad(json.dumps(a, ensure_ascii=False))
        if isinstance(a, int) and not isinstance(a, bool):
            return pad("'" + chr(a) + "'")
    if verb == "t" and isinstance(a, bool):
        return pad(gostr(a))
    if verb == "d" and isinstance(a, int) and not isinstance(a, bool):
        return pad(format(a, f"{sign}d"))
    if verb in "xX" and isinstance(a, int) and not isinstance(a, bool):
        return pad(("0x" if "#" in flags else "") + format(a, f"{sign}{verb}"))
    if verb in "xX" and isinstance(a, str):
        return pad(a.encode().hex() if verb == "x" else a.encode().hex().upper())
    if verb in "oObc" and isinstance(a, int) and not isinstance(a, bool):
        if verb == "c":
            return pad(chr(a))
        return pad(format(a, "o" if verb in "oO" else "b"))
    if verb in "feEgG" and isnum:
        if verb in "gG" and prec is None:
            return pad(_gofloat(float(a)))
        return pad(format(float(a), f"{sign}{p or '.6'}{verb}"))
    return f"%!{verb}({_gotype(a)}={gostr(a)})"


def _pad(s, left, right) -> str:
    return " " * int(left) + gostr(s) + " " * int(right)


def _truncate(s, n) -> str:
    s = gostr(s)
    return s[: int(n)] if len(s) > int(n) else s


FUNCS = {
    "json": _json, "join": _join, "lower": lambda s: _need_str("lower", s).lower(),
    "upper": lambda s: _need_str("upper", s).upper(), "title": _title,
    "split": lambda s, sep: _need_str("split", s).split(_need_str("split", sep)) if sep else list(s),
    "pad": _pad, "truncate": _truncate, "println": lambda *a: " ".join(gostr(x) for x in a) + "\n",
    "print": _go_print, "printf": _printf, "len": _len, "index": _index, "slice": _slice,
    "eq": _eq, "ne": lambda a, b: not _eq(a, b), "lt": _lt, "le": lambda a, b: _lt(a, b) or _eq(a, b),
    "gt": lambda a, b: not (_lt(a, b) or _eq(a, b)), "ge": lambda a, b: not _lt(a, b),
    "not": lambda a: not _truth(a), "and": None, "or": None,  # short-circuit: evaluated inline
    "html": lambda *a: _go_print(*a).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                                    .replace('"', "&#34;").replace("'", "&#39;"),
    "urlquery": lambda *a: __import__("urllib.parse").parse.quote_plus(_go_print(*a)),
}
_ARITY = {"json": 1, "lower": 1, "upper": 1, "title": 1, "split": 2, "join": 2, "pad": 3,
          "truncate": 2, "len": 1, "not": 1, "lt": 2, "le": 2, "gt": 2, "ge": 2, "ne": 2}


# ---------------------------------------------------------------------------------------------
# execution

class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class Template:
    """A parsed template; `execute(data)` returns the text."""

    def __init__(self, source: str, nodes: list) -> None:
        self.source, self.nodes = source, nodes

    def execute(self, data, json_fn=None) -> str:
        out: list[str] = []
        vars_ = [("$", data)]
        self._funcs = dict(FUNCS)
        if json_fn is not None:
            self._funcs["json"] = json_fn
        try:
            self._run(self.nodes, data, vars_, out)
        except RecursionError:
            raise TemplateError("template: executing: nested too deeply") from None
        return "".join(out)

    def _run(self, nodes: list, dot, vars_: list, out: list[str]) -> None:
        for n in nodes:
            if isinstance(n, _Text):
                out.append(n.text)
            elif isinstance(n, _Action):
                v = self._pipe(n.pipe, dot, vars_)
                if not n.pipe.decl:
                    out.append(gostr(v))
            elif isinstance(n, _Branch):
                self._branch(n, dot, vars_, out)
            elif isinstance(n, _Loop):
                raise _Break() if n.kind == "break" else _Continue()

    def _branch(self, n: _Branch, dot, vars_: list, out: list[str]) -> None:
        mark = len(vars_)
        if n.kind == "range":
            self._range(n, dot, vars_, out)
            del vars_[mark:]
            return
        v = self._pipe(n.pipe, dot, vars_)
        if _truth(v):
            self._run(n.body, v if n.kind == "with" else dot, vars_, out)
        elif n.else_body is not None:
            self._run(n.else_body, dot, vars_, out)
        del vars_[mark:]

    def _range(self, n: _Branch, dot, vars_: list, out: list[str]) -> None:
        decl = n.pipe.decl
        p = _Pipe([], False, n.pipe.cmds, n.pipe.src, n.pipe.col, n.pipe.line)
        v = self._pipe(p, dot, vars_)
        if isinstance(v, dict):
            items = [(k, v[k]) for k in sorted(v, key=str)]
        elif isinstance(v, (list, tuple)):
            items = list(enumerate(v))
        elif isinstance(v, int) and not isinstance(v, bool):
            items = [(i, i) for i in range(v)]
        elif v is None or v is MISSING:
            items = []
        else:
            raise self._err(n.pipe, f"range can't iterate over {gostr(v)}")
        if not items:
            if n.else_body is not None:
                self._run(n.else_body, dot, vars_, out)
            return
        mark = len(vars_)
        for k, e in items:
            del vars_[mark:]
            if len(decl) == 1:
                self._setvar(vars_, decl[0], e, n.pipe.assign)
            elif len(decl) == 2:
                self._setvar(vars_, decl[0], k, n.pipe.assign)
                self._setvar(vars_, decl[1], e, n.pipe.assign)
            try:
                self._run(n.body, e, vars_, out)
            except _Break:
                break
            except _Continue:
                continue

    def _setvar(self, vars_: list, name: str, value, assign: bool) -> None:
        if assign:
            for i in range(len(vars_) - 1, -1, -1):
                if vars_[i][0] == name:
                    vars_[i] = (name, value)
                    return
            raise TemplateError(f"undefined variable: {name}")
        vars_.append((name, value))

    def _err(self, pipe: _Pipe, msg: str) -> TemplateError:
        return TemplateError(f"template: :{pipe.line}:{pipe.col}: executing at <{pipe.src}>: {msg}")

    def _pipe(self, pipe: _Pipe, dot, vars_: list):
        val = _NOPIPE
        for cmd in pipe.cmds:
            val = self._cmd(cmd, dot, vars_, val, pipe)
        if pipe.decl:
            self._setvar(vars_, pipe.decl[0], val, pipe.assign)
        return val

    def _cmd(self, cmd: list, dot, vars_: list, piped, pipe: _Pipe):
        head = cmd[0]
        if head[0] == "ident":
            name = head[1]
            if name in ("and", "or"):
                args = cmd[1:]
                vals_iter = [lambda a=a: self._arg(a, dot, vars_, pipe) for a in args]
                if piped is not _NOPIPE:
                    vals_iter.append(lambda: piped)
                if not vals_iter:
                    raise self._err(pipe, f"wrong number of args for {name}: want at least 1 got 0")
                v = None
                for get in vals_iter:
                    v = get()
                    if (name == "and") != _truth(v):
                        return v
                return v
            args = [self._arg(a, dot, vars_, pipe) for a in cmd[1:]]
            if piped is not _NOPIPE:
                args.append(piped)
            want = _ARITY.get(name)
            if want is not None and len(args) != want:
                raise self._err(pipe, f"wrong number of args for {name}: want {want} got {len(args)}")
            try:
                return self._funcs[name](*args)
            except TemplateError as e:
                raise self._err(pipe, f"error calling {name}: {e}") from None
            except (TypeError, ValueError, OverflowError) as e:
                raise self._err(pipe, f"error calling {name}: {e}") from None
        if len(cmd) > 1 or piped is not _NOPIPE:
            raise self._err(pipe, f"can't give argument to non-function {_argsrc(head)}")
        return self._arg(head, dot, vars_, pipe)

    def _arg(self, a: tuple, dot, vars_: list, pipe: _Pipe):
        kind = a[0]
        if kind == "lit":
            return a[1]
        if kind == "dot":
            return dot
        if kind == "field":
            return self._fields(dot, a[1], pipe)
        if kind == "var":
            for name, v in reversed(vars_):
                if name == a[1]:
                    return self._fields(v, a[2], pipe)
            raise self._err(pipe, f"undefined variable: {a[1]}")
        if kind == "pipe":
            return self._fields(self._pipe(a[1], dot, vars_), a[2], pipe)
        if kind == "ident":
            return self._cmd([a], dot, vars_, _NOPIPE, pipe)
        raise self._err(pipe, f"bad operand {a!r}")

    def _fields(self, v, names: list[str], pipe: _Pipe):
        for name in names:
            if isinstance(v, dict):
                v = v.get(name, MISSING)
            elif v is MISSING:
                return MISSING
            elif v is None:
                raise self._err(pipe, f"nil pointer evaluating interface {{}}.{name}")
            else:
                raise self._err(pipe, f"can't evaluate field {name} in type {_gotype(v)}")
        return v


_NOPIPE = object()


def _argsrc(a: tuple) -> str:
    if a[0] == "field":
        return "." + ".".join(a[1])
    if a[0] == "var":
        return a[1] + "".join("." + n for n in a[2])
    if a[0] == "lit":
        return gostr(a[1])
    return "."


def parse(text: str) -> Template:
    """Parse a template; malformed text raises TemplateParseError (a usage error)."""
    pieces = _split(text)
    try:
        nodes, _word, _ = _Parser(pieces, text).parse_list(())
    except RecursionError:
        raise TemplateParseError(1, "template nested too deeply") from None
    return Template(text, nodes)


def render(text: str, data) -> str:
    return parse(text).execute(data)


# ---------------------------------------------------------------------------------------------
# docker's list formatting: tabwriter, `table`, `json`

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
