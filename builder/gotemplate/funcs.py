"""The functions a --format template may call: docker's (json, join, split, lower, upper, title,
pad, truncate, println) and Go's built-ins (printf with fmt's verbs, print, len, index, slice,
comparisons, not; `and`/`or` short-circuit in the executor). Must not: parse or execute."""
from __future__ import annotations

import json

from builder.gotemplate.values import MISSING, TemplateError, _gofloat, _gotype, _rx, _truth, gostr


def _json(v) -> str:
    return json.dumps(None if v is MISSING else v, separators=(",", ":"), ensure_ascii=False)


def _json_escaped(v) -> str:
    """Go's json.Marshal: `<`, `>`, `&` as \\u003c… (docker's list rows go through it)."""
    return _json(v).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _need_str(name: str, v) -> str:
    if isinstance(v, str):
        return v
    raise TemplateError(f"wrong type for value; expected string; got {_gotype(v)}")


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
