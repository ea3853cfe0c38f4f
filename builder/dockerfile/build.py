"""Parse nodes → typed instructions (ast.py), with BuildKit's per-instruction validation.

Owns: flag validation (unknown flag, missing value, duplicate, bad boolean: errors at the
flag's column), argument counts, `FROM … AS name` (validated, lower-cased), HEALTHCHECK
options, COPY/ADD heredoc sources, ONBUILD triggers, and "unknown instruction" with a
did-you-mean hint. Flag *values* with their own syntax (--mount, durations) are options.py.
Must not: expand variables (ast.py `expand`, stages.py) or do I/O.
"""
from __future__ import annotations

import difflib
import re

from builder.dockerfile import ast as A
from builder.dockerfile.lineparse import KEYWORDS, parse_heredoc
from builder.dockerfile.nodes import Node
from builder.dockerfile.options import parse_duration, parse_mount
from builder.errors import DockerfileError, InstructionError, SourceSpan

STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9\-_.]*$")
_STR, _BOOL, _LIST = "str", "bool", "list"
FLAGS: dict[str, dict[str, str]] = {
    "FROM": {"platform": _STR},
    "RUN": {"mount": _LIST, "network": _STR, "security": _STR},
    "COPY": {"from": _STR, "chown": _STR, "chmod": _STR, "link": _BOOL, "parents": _BOOL, "exclude": _LIST},
    "ADD": {"chown": _STR, "chmod": _STR, "link": _BOOL, "keep-git-dir": _BOOL, "checksum": _STR,
            "exclude": _LIST},
    "HEALTHCHECK": {"interval": _STR, "timeout": _STR, "start-period": _STR, "start-interval": _STR,
                    "retries": _STR},
}


class _Ctx:
    __slots__ = ("filename", "lines")

    def __init__(self, filename: str, lines: tuple[str, ...]) -> None:
        self.filename = filename
        self.lines = lines

    def span(self, line: int, col: int, width: int | None = None, end_line: int | None = None) -> SourceSpan:
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return SourceSpan(self.filename, line, col, col + width if width else None, text, end_line)


def build_instruction(node: Node, ctx: _Ctx) -> A.Instruction:
    kw = node.keyword.upper()
    span = ctx.span(node.line, node.column, len(node.keyword), node.end_line)

    def fail(msg: str, hint: str | None = None) -> InstructionError:
        return InstructionError(msg, span, hint=hint)

    builder = _BUILDERS.get(kw)
    if builder is None:
        close = difflib.get_close_matches(kw, KEYWORDS, n=1, cutoff=0.6)
        return _raise(fail(f"unknown instruction: {node.keyword}", f"did you mean {close[0]}?" if close else None))
    flags = _parse_flags(node, kw, ctx)
    base = dict(span=span, original=node.original.strip())
    return builder(node, flags, base, fail, ctx)


def _raise(e: Exception):
    raise e


def _parse_flags(node: Node, kw: str, ctx: _Ctx) -> dict[str, object]:
    spec = FLAGS.get(kw, {})
    out: dict[str, object] = {}
    for i, raw in enumerate(node.flags):
        line, col = node.flag_positions[i] if i < len(node.flag_positions) else (node.line, node.column)
        sp = ctx.span(line, col, len(raw))
        body = raw[2:] if raw.startswith("--") else raw
        name, sep, value = body.partition("=")
        kind = spec.get(name)
        if kind is None:
            known = ", ".join("--" + k for k in spec) or "none"
            raise InstructionError(f"unknown flag: {name}", sp, hint=f"{kw} accepts: {known}")
        if kind == _LIST:
            if not sep:
                raise InstructionError(f"Missing a value on flag: {name}", sp)
            out.setdefault(name, [])
            out[name].append(value)  # type: ignore[union-attr]
            continue
        if name in out:
            raise InstructionError(f"Duplicate flag specified: {name}", sp)
        if kind == _BOOL:
            if sep and value.lower() not in ("true", "false"):
                raise InstructionError(f"expecting boolean value for flag {name}, not: {value}", sp)
            out[name] = (not sep) or value.lower() == "true"
        else:
            if not sep:
                raise InstructionError(f"Missing a value on flag: {name}", sp)
            out[name] = value
    return out


def _from(node, flags, base, fail, ctx):
    args = node.args
    if len(args) not in (1, 3):
        raise fail("FROM requires either one or three arguments", "write FROM <image> [AS <name>]")
    name = written = as_kw = None
    if len(args) == 3:
        if args[1].lower() != "as":
            raise fail(f"FROM expects AS as its second argument, got {args[1]!r}", "write FROM <image> AS <name>")
        as_kw, written = args[1], args[2]
        name = written.lower()
        if not STAGE_NAME_RE.match(name):
            raise fail(f"invalid name for build stage: {written!r}, name can't start with a number or contain symbols")
    return A.From(**base, base=args[0], stage_name=name, platform=flags.get("platform"),
                  stage_name_as_written=written, as_keyword=as_kw)


def _command(node: Node, fail, kw: str, required: bool) -> dict:
    if node.json:
        if required and not node.args:
            raise fail(f"{kw} requires at least one argument")
        return dict(argv=tuple(node.args), prepend_shell=False)
    if not node.args:
        if required:
            raise fail(f"{kw} requires at least one argument")
        return dict(argv=(), prepend_shell=False)
    return dict(command=node.args[0], prepend_shell=True)


def _run(node, flags, base, fail, ctx):
    net = flags.get("network")
    if net is not None and net not in ("default", "none", "host"):
        raise fail(f"unsupported network mode: {net}", "use --network=default, none or host")
    sec = flags.get("security")
    if sec is not None and sec not in ("sandbox", "insecure"):
        raise fail(f"unsupported security mode: {sec}", "use --security=sandbox or insecure")
    mounts = tuple(parse_mount(m, fail) for m in flags.get("mount", ()))  # type: ignore[union-attr]
    return A.Run(**base, **_command(node, fail, "RUN", True), mounts=mounts, network=net, security=sec,
                 heredocs=node.heredocs)


def _cmd(node, flags, base, fail, ctx):
    return A.Cmd(**base, **_command(node, fail, "CMD", False))


def _entrypoint(node, flags, base, fail, ctx):
    return A.Entrypoint(**base, **_command(node, fail, "ENTRYPOINT", False))


def _shell(node, flags, base, fail, ctx):
    if not node.args:
        raise fail("SHELL requires at least one argument")
    if not node.json:
        raise fail("SHELL requires the arguments to be in JSON form", 'write SHELL ["/bin/sh", "-c"]')
    return A.Shell(**base, shell=tuple(node.args))


def _pairs(node, fail, kw: str) -> tuple[A.KeyValue, ...]:
    if not node.args:
        raise fail(f"{kw} requires at least one argument")
    a = node.args
    out = []
    for i in range(0, len(a), 3):
        if a[i] == "":
            raise fail(f"{kw} names can not be blank")
        out.append(A.KeyValue(a[i], a[i + 1], a[i + 2] == ""))
    return tuple(out)


def _env(node, flags, base, fail, ctx):
    return A.Env(**base, pairs=_pairs(node, fail, "ENV"))


def _label(node, flags, base, fail, ctx):
    return A.Label(**base, pairs=_pairs(node, fail, "LABEL"))


def _one(node, fail, kw: str) -> str:
    if len(node.args) != 1:
        raise fail(f"{kw} requires exactly one argument")
    return node.args[0]


def _maintainer(node, flags, base, fail, ctx):
    return A.Maintainer(**base, maintainer=_one(node, fail, "MAINTAINER"))


def _user(node, flags, base, fail, ctx):
    return A.User(**base, user=_one(node, fail, "USER"))


def _workdir(node, flags, base, fail, ctx):
    return A.Workdir(**base, path=_one(node, fail, "WORKDIR"))


def _stopsignal(node, flags, base, fail, ctx):
    return A.Stopsignal(**base, signal=_one(node, fail, "STOPSIGNAL"))


def _expose(node, flags, base, fail, ctx):
    if not node.args:
        raise fail("EXPOSE requires at least one argument")
    return A.Expose(**base, ports=tuple(node.args))


def _volume(node, flags, base, fail, ctx):
    if not node.args:
        raise fail("VOLUME requires at least one argument")
    for v in node.args:
        if not v.strip():
            raise fail("VOLUME specified can not be an empty string")
    return A.Volume(**base, volumes=tuple(node.args))


def _arg(node, flags, base, fail, ctx):
    if not node.args:
        raise fail("ARG requires at least one argument")
    decls = []
    for w in node.args:
        k, sep, v = w.partition("=")
        if not k:
            raise fail("ARG names can not be blank")
        decls.append(A.ArgDecl(k, v if sep else None))
    return A.Arg(**base, args=tuple(decls))


def _transfer(node, flags, base, fail, kw: str) -> dict:
    args = list(node.args)
    if len(args) < 2:
        raise fail(f"{kw} requires at least two arguments" +
                   (", but only one was provided. Destination could not be determined." if args else ""))
    bodies = A.heredoc_contents(node.heredocs)
    sources: list[str] = []
    contents: list[A.SourceContent] = []
    for s in args[:-1]:
        h = _heredoc_or_none(s) if not node.json else None
        if h is not None and h.name in bodies:
            contents.append(A.SourceContent(h.name, bodies[h.name], h.expand))
        else:
            sources.append(s)
    dest = args[-1]
    if not node.json and _heredoc_or_none(dest) is not None:
        raise fail(f"{kw} cannot have a heredoc as its destination")
    return dict(sources=tuple(sources), dest=dest, contents=tuple(contents), chown=flags.get("chown"),
                chmod=flags.get("chmod"), link=bool(flags.get("link", False)), parents=bool(flags.get("parents", False)),
                excludes=tuple(flags.get("exclude", ())), heredocs=node.heredocs)


def _heredoc_or_none(word: str):
    try:
        return parse_heredoc(word)
    except DockerfileError:
        return None


def _copy(node, flags, base, fail, ctx):
    return A.Copy(**base, **_transfer(node, flags, base, fail, "COPY"), from_=flags.get("from"))


def _add(node, flags, base, fail, ctx):
    return A.Add(**base, **_transfer(node, flags, base, fail, "ADD"), checksum=flags.get("checksum"),
                 keep_git_dir=bool(flags.get("keep-git-dir", False)))


def _onbuild(node, flags, base, fail, ctx):
    child = node.child
    if child is None:
        raise fail("ONBUILD requires at least one argument")
    ck = child.keyword.upper()
    if ck == "ONBUILD":
        raise fail("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if ck in ("FROM", "MAINTAINER"):
        raise fail(f"{ck} isn't allowed as an ONBUILD trigger")
    inner = build_instruction(child, ctx)
    return A.Onbuild(**base, instruction=inner, expression=child.original.strip())


def _interval(flags, key: str, fail) -> int | None:
    v = flags.get(key)
    if v is None or v == "":
        return None
    try:
        d = parse_duration(v)  # type: ignore[arg-type]
    except ValueError as e:
        raise fail(f"--{key}: {e}", "durations look like 30s, 1m30s or 500ms") from None
    if d == 0:
        return 0
    if d < 10**6:
        raise fail(f"Interval {key} cannot be less than 1ms")
    return d


def _healthcheck(node, flags, base, fail, ctx):
    if not node.args:
        raise fail("HEALTHCHECK requires an argument", "write HEALTHCHECK CMD <command> or HEALTHCHECK NONE")
    typ = node.args[0].upper()
    rest = node.args[1:]
    if typ == "NONE":
        if rest or flags:
            raise fail("HEALTHCHECK NONE takes no arguments")
        return A.Healthcheck(**base, test=("NONE",))
    if typ != "CMD":
        raise fail(f"Unknown type {node.args[0]!r} in HEALTHCHECK (try CMD)")
    if not rest:
        raise fail("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *rest) if node.json else ("CMD-SHELL", " ".join(rest))
    retries = None
    if flags.get("retries") not in (None, ""):
        try:
            retries = int(flags["retries"])  # type: ignore[arg-type]
        except ValueError:
            raise fail(f"--retries must be an integer, got {flags['retries']!r}") from None
        if retries < 0:
            raise fail(f"--retries cannot be negative ({retries})")
    return A.Healthcheck(**base, test=test, interval=_interval(flags, "interval", fail),
                         timeout=_interval(flags, "timeout", fail),
                         start_period=_interval(flags, "start-period", fail),
                         start_interval=_interval(flags, "start-interval", fail), retries=retries)


_BUILDERS = {"FROM": _from, "RUN": _run, "CMD": _cmd, "ENTRYPOINT": _entrypoint, "SHELL": _shell, "ENV": _env,
             "LABEL": _label, "MAINTAINER": _maintainer, "USER": _user, "WORKDIR": _workdir,
             "STOPSIGNAL": _stopsignal, "EXPOSE": _expose, "VOLUME": _volume, "ARG": _arg, "COPY": _copy,
             "ADD": _add, "ONBUILD": _onbuild, "HEALTHCHECK": _healthcheck}


def build_all(nodes: tuple[Node, ...], filename: str, lines: tuple[str, ...]) -> tuple[A.Instruction, ...]:
    ctx = _Ctx(filename, lines)
    return tuple(build_instruction(n, ctx) for n in nodes)
