"""Pure helpers that cut one logical Dockerfile line into its parts, as BuildKit's parser does.

Owns: splitting keyword / flags / rest, flag-word extraction, the ENV/LABEL/ARG word splitter,
JSON-form detection (with BuildKit's silent fallback to shell form), name=value pairs,
heredoc word recognition and tab chomping, and Go-compatible string quoting for dumps.
Must not: know about line numbers or files (lexer.py), or about typed instructions (ast.py).
"""
from __future__ import annotations

import json
import re

from builder.dockerfile.expand import GO_SPACES, ExpansionError, ShellLexer, is_space
from builder.errors import DockerfileSyntaxError
from runtime.record import Record

KEYWORDS = ("FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
            "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER")
WS_RE = re.compile(r"[\t\v\f\r ]+")


class NotStringArray(DockerfileSyntaxError):
    """A JSON array holding something other than strings."""

    def __init__(self) -> None:
        super().__init__("when using JSON array syntax, arrays must be comprised of strings only")


def go_trim(s: str) -> str:
    """Go strings.TrimSpace."""
    return s.strip(GO_SPACES)


class Split(Record):
    keyword: str
    flags: tuple[str, ...]
    flag_offsets: tuple[int, ...]  # where each flag word starts in the stripped line
    rest: str
    rest_offset: int  # where rest starts in the stripped line


def split_command(line: str) -> Split:
    """keyword, flags (`--x=y` words, quotes/escapes removed), rest (trimmed)."""
    line = go_trim(line)
    m = WS_RE.search(line)
    if not m:
        return Split(line, (), (), "", len(line))
    keyword = line[: m.start()]
    after = m.end()
    rest, flags, offs, rest_at = extract_flags(line[after:])
    trimmed = go_trim(rest)
    lead = len(rest) - len(rest.lstrip()) if trimmed else 0
    return Split(keyword, tuple(flags), tuple(after + o for o in offs), trimmed, after + rest_at + lead)


def extract_flags(line: str) -> tuple[str, list[str], list[int], int]:
    """Leading `--flag` words; returns (rest, flags, flag start offsets, rest offset)."""
    words: list[str] = []
    offs: list[int] = []
    i, n = 0, len(line)
    while True:
        while i < n and is_space(line[i]):
            i += 1
        if i >= n:
            return "", words, offs, n
        if not line.startswith("--", i):
            return line[i:], words, offs, i
        start = i
        word: list[str] = []
        blank_ok = False
        quote = ""
        while i < n:
            ch = line[i]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == "\\":
                    if i + 1 == n:
                        quote = ""
                    else:
                        i += 1
                        word.append(line[i])
                else:
                    word.append(ch)
                i += 1
                continue
            if is_space(ch):
                break
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
            elif ch == "\\":
                if i + 1 < n:
                    i += 1
                    word.append(line[i])
            else:
                word.append(ch)
            i += 1
        w = "".join(word)
        if w == "--":
            if i >= n:
                return "", words, offs, n
            return line[i:], words, offs, i
        if blank_ok or w:
            words.append(w)
            offs.append(start)


def parse_words(rest: str, escape: str = "\\") -> list[str]:
    """Split on white space outside quotes; quotes and escapes kept verbatim (parseWords)."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    blank_ok = False
    quote = ""
    i, n = 0, len(rest)
    while i < n:
        ch = rest[i]
        if not in_word:
            if is_space(ch):
                i += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if i + 1 == n:
                    i += 1
                    continue
                word.append(ch)
                i += 1
                ch = rest[i]
            word.append(ch)
            i += 1
            continue
        if is_space(ch):
            if blank_ok or word:
                words.append("".join(word))
            word = []
            blank_ok = False
            in_word = False
            i += 1
            continue
        if ch in ("'", '"'):
            quote = ch
            blank_ok = True
        if ch == escape:
            if i + 1 == n:
                i += 1
                continue
            word.append(ch)
            i += 1
            ch = rest[i]
        word.append(ch)
        i += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


def _no_constants(name: str):
    raise ValueError(name)


def parse_json(rest: str) -> list[str] | None:
    """The strings of a JSON array, or None when `rest` is not JSON (shell form then)."""
    body = rest.lstrip()
    if not body.startswith("["):
        return None
    try:
        value = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise NotStringArray()
    return value


def parse_nameval(rest: str, key: str, escape: str = "\\") -> list[tuple[str, str, str]]:
    """ENV/LABEL pairs: `KEY value` (sep "") or `k=v k2=v2` (sep "=")."""
    words = parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = WS_RE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise DockerfileSyntaxError(f"{key} must have two arguments")
        return [(parts[0], parts[1], "")]
    out = []
    for w in words:
        if "=" not in w:
            raise DockerfileSyntaxError(
                f"Syntax error - can't find = in {goquote(w)}. Must be of the form: name=value")
        k, _, v = w.partition("=")
        out.append((k, v, "="))
    return out


class Heredoc(Record):
    name: str
    fd: int = 0
    expand: bool = True
    chomp: bool = False
    content: str = ""


_HEREDOC_RE = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_LINE_LEXER = ShellLexer("\\", raw_quotes=True, raw_escapes=True, skip_unset_env=True)
_WORD_LEXER = ShellLexer("\\", skip_unset_env=True)
_WORD_LEXER_RAW = ShellLexer("\\", raw_quotes=True, skip_unset_env=True)
_LEADING_TABS = re.compile(r"^\t+", re.M)


def parse_heredoc(word: str) -> Heredoc | None:
    """`<<EOF`, `<<-'EOF'`, `3<<EOF` … as a Heredoc (no content), None if not a heredoc word."""
    m = _HEREDOC_RE.match(word)
    if not m or not m.group(3):
        return None
    rest = m.group(3)
    try:
        words = _WORD_LEXER.process(rest, {}).words
        if len(words) != 1:
            return None
        raw = _WORD_LEXER_RAW.process(rest, {}).words
    except ExpansionError as e:
        raise DockerfileSyntaxError(f"invalid heredoc {word!r}: {e.message}") from None
    quotes = words[0].count("'") + words[0].count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"')
    return Heredoc(name=words[0], fd=int(m.group(1) or 0), expand=quotes == raw_quotes, chomp=m.group(2) == "-")


def heredocs_from_line(line: str) -> list[Heredoc]:
    try:
        words = _LINE_LEXER.process(line, {}).words
    except ExpansionError:
        return []  # upstream ignores lexing errors here: no heredocs
    out = []
    for w in words:
        h = parse_heredoc(w)
        if h is not None:
            out.append(h)
    return out


def chomp(content: str) -> str:
    """Remove leading tabs of every line (`<<-`)."""
    return _LEADING_TABS.sub("", content)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
               "\\": "\\\\", '"': '\\"'}


def _printable(ch: str) -> bool:
    import unicodedata

    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


def goquote(s: str) -> str:
    """Go's strconv.Quote; lone surrogates from surrogateescape decoding print as \\xNN bytes."""
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return '"' + s + '"'
    out = ['"']
    for ch in s:
        e = _GO_ESCAPES.get(ch)
        if e:
            out.append(e)
            continue
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x80:
            out.append(ch if 0x20 <= o < 0x7F else f"\\x{o:02x}")
        elif _printable(ch):
            out.append(ch)
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)
