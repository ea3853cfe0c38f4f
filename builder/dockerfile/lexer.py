"""The Dockerfile lexer: physical lines → tokens for the LALR grammar (grammar/dockerfile.lark).

Owns: what no context-free lexer can do — parser directives (the escape character changes
the lexing of the rest of the file), line continuations with comments and empty lines inside
them, heredoc bodies (read until a terminator chosen by the line itself), per-instruction
argument forms (JSON vs shell form, name=value pairs, word lists), and the line/column of
every token. The grammar then checks the token sequence and transform.py builds nodes.
Token types: one keyword terminal per instruction (FROM, RUN, …, UNKNOWN), FLAG, JSON, TEXT,
WORD, PAIR, HEREDOC, EOL. Token values may be tuples/lists (Lark keeps `.value` as given).
Must not: expand variables or validate instruction semantics (ast.py / build.py do that).
"""
from __future__ import annotations

import re
from collections.abc import Iterator

from lark.lexer import Lexer, Token

from builder.dockerfile import lineparse as lp
from builder.dockerfile.directives import DirectiveParser, build as build_directives, check_escape
from builder.errors import DockerfileSyntaxError, SourceSpan
from runtime.record import Record

KEYWORDS = lp.KEYWORDS
_KW = {k.lower(): k for k in KEYWORDS}
# How the rest of the line becomes arguments (BuildKit's dispatch table).
_WORDS = {"FROM", "EXPOSE"}
_MAYBE_JSON = {"RUN", "CMD", "ENTRYPOINT", "SHELL"}
_MAYBE_JSON_LIST = {"ADD", "COPY", "VOLUME"}
_STRING = {"MAINTAINER", "STOPSIGNAL", "USER", "WORKDIR"}
_HEREDOC_KW = {"RUN", "COPY", "ADD"}
MAX_LINE = 65535


class Warning(Record):
    short: str
    detail: str
    url: str
    line: int


class Source(Record, frozen=False):
    """What `Lark.parse` is given: the text plus where results are collected."""

    text: str
    filename: str = "Dockerfile"
    directives: object = None
    warnings: list | None = None
    lines: list[str] | None = None


class KeywordToken(Token):
    """A keyword token that also carries its instruction's logical line (`original`)."""

    original: str


class _Positions:
    """Maps offsets in a joined logical line back to (physical line, column)."""

    __slots__ = ("segs",)

    def __init__(self) -> None:
        self.segs: list[tuple[int, int, int]] = []  # (logical offset, line number, column offset)

    def add(self, logical: int, line: int, col: int) -> None:
        self.segs.append((logical, line, col))

    def at(self, off: int) -> tuple[int, int]:
        best = self.segs[0]
        for s in self.segs:
            if s[0] <= off:
                best = s
            else:
                break
        return best[1], best[2] + (off - best[0]) + 1


def _cont_regex(esc: str) -> re.Pattern[str]:
    e = re.escape(esc)
    return re.compile(r"([^" + e + r"])" + e + r"[ \t]*$|^" + e + r"[ \t]*$")


def _trim_left(s: str) -> str:
    i = 0
    while i < len(s) and lp.is_space(s[i]):
        i += 1
    return s[i:]


def _is_comment(s: str) -> bool:
    return _trim_left(s).startswith("#")


class DockerfileLexer(Lexer):
    """Lark custom lexer (interface 2: gets the LexerState whose .text is a Source)."""

    __future_interface__ = 2

    def __init__(self, lexer_conf) -> None:  # noqa: D401 - Lark's signature
        self.lexer_conf = lexer_conf

    def lex(self, lexer_state, parser_state) -> Iterator[Token]:
        return tokens(lexer_state.text)


def physical_lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    return [ln.rstrip("\r") for ln in lines]


def tokens(src: Source) -> Iterator[Token]:
    lines = physical_lines(src.text)
    src.lines = lines
    fn = src.filename
    dparser = DirectiveParser()
    escape = "\\"
    cont = _cont_regex(escape)
    warnings: list[Warning] = []
    src.warnings = warnings
    n = len(lines)
    i = 0
    any_instruction = False

    def err(msg: str, line: int, col: int = 1, end: int | None = None, hint: str | None = None):
        text = lines[line - 1] if 0 < line <= n else ""
        return DockerfileSyntaxError(msg, SourceSpan(fn, line, col, end, text), hint=hint)

    while i < n:
        raw = lines[i]
        lineno = i + 1
        i += 1
        if len(raw) > MAX_LINE:
            raise err(f"dockerfile line greater than max allowed size of {MAX_LINE}", lineno)
        stripped = _trim_left(raw)
        lead = len(raw) - len(stripped)
        try:
            d = dparser.parse_line(stripped, lineno)
            if d is not None and d.name == "escape":
                escape = check_escape(d.value)
                cont = _cont_regex(escape)
        except DockerfileSyntaxError as e:
            raise err(e.message, lineno, lead + 1, len(raw) + 1) from None
        if stripped.startswith("#"):
            continue
        m = cont.search(stripped)
        if m:
            body = stripped[: m.start()] + (m.group(1) or "")
            at_end = False
        else:
            body, at_end = stripped, True
        if at_end and not body:
            continue
        start = lineno
        pos = _Positions()
        pos.add(0, lineno, lead)
        parts = [body]
        size = len(body)
        empty_cont = False
        end = lineno
        while not at_end and i < n:
            raw2 = lines[i]
            end = i + 1
            i += 1
            if len(raw2) > MAX_LINE:
                raise err(f"dockerfile line greater than max allowed size of {MAX_LINE}", end)
            dparser.done = True
            if _is_comment(raw2):
                continue
            if not _trim_left(raw2):
                empty_cont = True
                continue
            m = cont.search(raw2)
            if m:
                piece = raw2[: m.start()] + (m.group(1) or "")
            else:
                piece, at_end = raw2, True
            pos.add(size, end, 0)
            parts.append(piece)
            size += len(piece)
        line = "".join(parts)
        dparser.done = True
        if empty_cont:
            warnings.append(Warning("Empty continuation line found in: " + line,
                                    "Empty continuation lines will become errors in a future release",
                                    "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/", end))
        any_instruction = True
        try:
            toks, heredoc_ok = _instruction_tokens(line, escape, pos, start, end)
        except DockerfileSyntaxError as e:
            if e.span is None:
                raise err(e.message, start, lead + 1, len(lines[start - 1]) + 1, e.hint) from None
            raise
        yield from toks
        if heredoc_ok and "<<" in line:
            for h in lp.heredocs_from_line(line):
                body_lines: list[str] = []
                done = False
                while i < n:
                    raw3 = lines[i]
                    end = i + 1
                    i += 1
                    cand = raw3.lstrip("\t") if h.chomp else raw3
                    if cand == h.name:
                        done = True
                        break
                    body_lines.append(raw3 + "\n")
                if not done:
                    raise err("unterminated heredoc", start, lead + 1, len(lines[start - 1]) + 1,
                              hint=f"the heredoc needs a line holding only {h.name!r}")
                h2 = lp.Heredoc(h.name, h.fd, h.expand, h.chomp, "".join(body_lines))
                yield Token("HEREDOC", h2, line=start, column=1, end_line=end)
        yield Token("EOL", "", line=start, column=1, end_line=end)
    src.directives = build_directives(dparser.found) if dparser.found else build_directives([])
    if not any_instruction:
        last = max(n, 1)
        raise DockerfileSyntaxError("file with no instructions", SourceSpan(fn, last, 1, None, lines[-1] if lines else ""),
                                    hint="a Dockerfile needs at least a FROM instruction")


def _tok(type_: str, value, pos: _Positions, off: int, start: int, end: int) -> Token:
    line, col = pos.at(off)
    t = Token(type_, value, line=line, column=col, end_line=end)
    return t


def _instruction_tokens(line: str, escape: str, pos: _Positions, start: int, end: int,
                        base: int = 0) -> tuple[list[Token], bool]:
    """Tokens of one (possibly ONBUILD-nested) instruction; and whether it may take heredocs."""
    lead = len(line) - len(line.lstrip())
    sp = lp.split_command(line)
    kw = _KW.get(sp.keyword.lower(), "UNKNOWN")
    at = base + lead
    line_no, col = pos.at(at)
    kt = KeywordToken(kw, sp.keyword, line=line_no, column=col, end_line=end)
    kt.original = line
    out: list[Token] = [kt]
    for f, o in zip(sp.flags, sp.flag_offsets):
        out.append(_tok("FLAG", f, pos, at + o, start, end))
    rest = sp.rest
    roff = at + sp.rest_offset
    heredoc_ok = kw in _HEREDOC_KW
    if kw == "UNKNOWN":
        # BuildKit keeps unknown instructions at parse level with one empty argument;
        # the typed layer rejects them with a "did you mean" hint.
        out.append(_tok("OTHER", "", pos, roff, start, end))
        return out, False
    if not rest:
        return out, heredoc_ok
    if kw in _WORDS:
        for w, o in _split_ws(rest):
            out.append(_tok("WORD", w, pos, roff + o, start, end))
    elif kw in _STRING:
        out.append(_tok("TEXT", rest, pos, roff, start, end))
    elif kw in _MAYBE_JSON or kw in _MAYBE_JSON_LIST:
        js = lp.parse_json(rest)
        if js is not None:
            heredoc_ok = False
            out.append(_tok("JSON", tuple(js), pos, roff, start, end))
        elif kw in _MAYBE_JSON:
            out.append(_tok("TEXT", rest, pos, roff, start, end))
        else:
            for w, o in _split_ws(rest):
                out.append(_tok("WORD", w, pos, roff + o, start, end))
    elif kw in ("ENV", "LABEL"):
        for k, v, s in lp.parse_nameval(rest, kw, escape):
            out.append(_tok("PAIR", (k, v, s), pos, roff, start, end))
    elif kw == "ARG":
        for w in lp.parse_words(rest, escape):
            out.append(_tok("WORD", w, pos, roff, start, end))
    elif kw == "HEALTHCHECK":
        j = 0
        while j < len(rest) and not lp.is_space(rest[j]):
            j += 1
        k = j
        while k < len(rest) and lp.is_space(rest[k]):
            k += 1
        out.append(_tok("HCTYPE", rest[:j], pos, roff, start, end))
        tail = rest[k:]
        if tail:
            js = lp.parse_json(tail)
            out.append(_tok("JSON", tuple(js), pos, roff + k, start, end) if js is not None
                       else _tok("TEXT", tail, pos, roff + k, start, end))
    elif kw == "ONBUILD":
        inner, heredoc_ok = _instruction_tokens(rest, escape, pos, start, end, roff)
        out.extend(inner)
    return out, heredoc_ok


def _split_ws(rest: str) -> Iterator[tuple[str, int]]:
    for m in re.finditer(r"[^\t\v\f\r ]+", rest):
        yield m.group(0), m.start()
