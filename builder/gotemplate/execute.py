"""Executing a parsed --format template over JSON-like Python data (Go text/template semantics:
dot, `$`, variables scoped to their block, fields of maps, `<no value>` for a missing key), and
`parse`/`render`, the entry points. Must not: print or exit."""
from __future__ import annotations

from builder.gotemplate.funcs import _ARITY, FUNCS
from builder.gotemplate.parse import _Action, _Branch, _Loop, _Parser, _Pipe, _split, _Text
from builder.gotemplate.values import MISSING, TemplateError, TemplateParseError, _gotype, _truth, gostr


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
