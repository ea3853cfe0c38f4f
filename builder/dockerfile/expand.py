"""Word expansion as BuildKit's shell lexer does it (`frontend/dockerfile/shell`).

Owns: `$v ${v} ${v:-w} ${v-w} ${v:+w} ${v+w} ${v:?m} ${v?m} ${v#p} ${v##p} ${v%p} ${v%%p}
${v/p/r} ${v//p/r}`, single/double quotes and the escape character, and word splitting after
expansion. This is *not* a shell: no command substitution, no globbing, no arithmetic.
Positional and special parameters (`$1 $@ $* $# $? $- $$ $! $0`) are never set.

Public API:
- `expand_word(word, env, escape="\\\\") -> str` — expansion + quote removal, one string.
- `expand_words(word, env, escape="\\\\") -> list[str]` — the same, split into words (white space
  that came from an unquoted variable splits too).
- `expand(word, env, escape=..., ...) -> Expansion` — result, words, and the `matched` /
  `unmatched` variable names (what the UndefinedVar lint and ARG-usage tracking need).
- `ShellLexer` — the configurable lexer (raw quotes, raw escapes, skip quote processing, keep
  unset variables as written) used by the heredoc detector and heredoc bodies.

Must not: touch the filesystem or know about instructions (which instructions expand is
`ast.py`'s business).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from builder.errors import InstructionError
from runtime.record import Record

_EOF = ""


class ExpansionError(InstructionError):
    """A word could not be expanded (bad substitution, unterminated quote, `${v:?msg}`)."""


class Expansion(Record):
    result: str
    words: tuple[str, ...]
    matched: frozenset[str]
    unmatched: frozenset[str]


# Go's unicode.IsSpace set (Python's isspace also counts \x1c-\x1f, Go does not).
GO_SPACES = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
_SPACE_SET = frozenset(GO_SPACES)


def is_space(ch: str) -> bool:
    """Go's unicode.IsSpace."""
    return ch in _SPACE_SET


_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class _Words:
    """Collects words while expanding (wordsStruct upstream)."""

    __slots__ = ("word", "words", "in_word")

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if is_space(ch):
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.word += ch
            self.in_word = True

    def add_raw_char(self, ch: str) -> None:
        self.word += ch
        self.in_word = True

    def add_string(self, s: str) -> None:
        for ch in s:
            self.add_char(ch)

    def add_raw_string(self, s: str) -> None:
        self.word += s
        self.in_word = True

    def get(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class ShellLexer:
    """One configurable lexer; `process` runs it over a word."""

    __slots__ = ("escape", "raw_quotes", "raw_escapes", "skip_process_quotes", "skip_unset_env")

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False, raw_escapes: bool = False,
                 skip_process_quotes: bool = False, skip_unset_env: bool = False) -> None:
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_process_quotes = skip_process_quotes
        self.skip_unset_env = skip_unset_env

    def process(self, word: str, env: Mapping[str, str]) -> Expansion:
        run = _Run(self, word, env)
        try:
            result, words = run.stop_on(_EOF, self.raw_escapes)
        except ExpansionError as e:
            raise ExpansionError(f"failed to process {_goquote_simple(word)}: {e.message}") from None
        return Expansion(result, tuple(words), frozenset(run.matched), frozenset(run.unmatched))


def _goquote_simple(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Run:
    """The state of one `process` call (shellWord upstream)."""

    __slots__ = ("lx", "src", "pos", "env", "raw_escapes", "matched", "unmatched")

    def __init__(self, lx: ShellLexer, src: str, env: Mapping[str, str]) -> None:
        self.lx = lx
        self.src = src
        self.pos = 0
        self.env = env
        self.raw_escapes = lx.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    def peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else _EOF

    def next(self) -> str:
        if self.pos < len(self.src):
            ch = self.src[self.pos]
            self.pos += 1
            return ch
        return _EOF

    def stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _stop_on(self, stop: str) -> tuple[str, list[str]]:
        out: list[str] = []
        words = _Words()
        quotes = not self.lx.skip_process_quotes
        esc = self.lx.escape
        src = self.src
        n = len(src)
        while self.pos < n:
            ch = src[self.pos]
            if stop and ch == stop:
                self.pos += 1
                return "".join(out), words.get()
            if ch == "$":
                tmp = self.dollar()
                out.append(tmp)
                words.add_string(tmp)
            elif quotes and ch == "'":
                tmp = self.single_quote()
                out.append(tmp)
                words.add_raw_string(tmp)
            elif quotes and ch == '"':
                tmp = self.double_quote()
                out.append(tmp)
                words.add_raw_string(tmp)
            elif ch == "<":
                tmp = self.possible_heredoc()
                out.append(tmp)
                words.add_raw_string(tmp)
            else:
                self.pos += 1
                if ch == esc:
                    if self.raw_escapes:
                        words.add_raw_char(ch)
                        out.append(ch)
                    ch = self.next()
                    if ch == _EOF:
                        break
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                out.append(ch)
        if stop:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.get()

    def possible_heredoc(self) -> str:
        # `<<` followed by white space stays joined to the next word, so `<< EOF` is one word.
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        start = self.pos
        if self.peek() == "-":
            self.pos += 1  # `<<- EOF`: the chomp marker may also be followed by white space
        while self.peek() in (" ", "\t"):
            self.pos += 1
        return "<<" + self.src[start:self.pos]

    def single_quote(self) -> str:
        out: list[str] = []
        ch = self.next()
        if self.lx.raw_quotes:
            out.append(ch)
        while True:
            ch = self.next()
            if ch == _EOF:
                raise ExpansionError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        out: list[str] = []
        ch = self.next()
        if self.lx.raw_quotes:
            out.append(ch)
        esc = self.lx.escape
        while True:
            p = self.peek()
            if p == _EOF:
                raise ExpansionError("unexpected end of statement while looking for matching double-quote")
            if p == '"':
                self.next()
                if self.lx.raw_quotes:
                    out.append(p)
                return "".join(out)
            if p == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == esc:
                if self.raw_escapes:
                    out.append(ch)
                nxt = self.peek()
                if nxt == _EOF:
                    continue  # an escape at the very end is dropped
                if nxt in ('"', "$", esc):
                    ch = self.next()
            out.append(ch)

    def get_env(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.matched.add(name)
            return self.env[name], True
        self.unmatched.add(name)
        return "", False

    def name(self) -> str:
        src = self.src
        start = self.pos
        if self.pos < len(src):
            ch = src[self.pos]
            if ch.isdecimal():
                while self.pos < len(src) and src[self.pos].isdecimal():
                    self.pos += 1
                return src[start:self.pos]
            if ch in _SPECIAL_PARAMS:
                self.pos += 1
                return ch
        while self.pos < len(src):
            ch = src[self.pos]
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            self.pos += 1
        return src[start:self.pos]

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.get_env(name)
            if not found and self.lx.skip_unset_env:
                return "$" + name
            return value
        self.next()
        p = self.peek()
        if p == _EOF:
            raise ExpansionError("syntax error: missing '}'")
        if p in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        chs = ch
        null_is_unset = False
        if ch == "}":
            value, found = self.get_env(name)
            if not found and self.lx.skip_unset_env:
                return "${" + name + "}"
            return value
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            chs += ch
            if ch in ("#", "%"):
                raise ExpansionError(f"unsupported modifier ({chs}) in substitution")
        if ch in ("+", "-", "?", "#", "%") and ch != _EOF:
            try:
                word, _ = self.stop_on("}", ch in ("#", "%"))
            except ExpansionError:
                if self.peek() == _EOF:
                    raise ExpansionError("syntax error: missing '}'") from None
                raise
            value, found = self.get_env(name)
            if self.lx.skip_unset_env and not found:
                return "${" + name + chs + word + "}"
            if ch == "-":
                return word if (not found or (null_is_unset and value == "")) else value
            if ch == "+":
                return "" if (not found or (null_is_unset and value == "")) else word
            if ch == "?":
                if not found:
                    raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            greedy = False
            if word and word[0] == ch:
                greedy = True
                word = word[1:]
            if ch == "%":
                return _trim_suffix(word, value, greedy)
            return _trim_prefix(word, value, greedy)
        if ch == "/" and not null_is_unset:
            replace_all = self.peek() == "/"
            if replace_all:
                self.next()
            try:
                pattern, _ = self.stop_on("/", True)
            except ExpansionError:
                if self.peek() == _EOF:
                    raise ExpansionError("syntax error: missing '/' in ${}") from None
                raise
            try:
                repl, _ = self.stop_on("}", True)
            except ExpansionError:
                if self.peek() == _EOF:
                    raise ExpansionError("syntax error: missing '}'") from None
                raise
            value, found = self.get_env(name)
            if self.lx.skip_unset_env and not found:
                return "${" + name + "/" + pattern + "/" + repl + "}"
            rx = _pattern_to_regex(pattern, greedy=True, anchored=False)
            if replace_all:
                return rx.sub(lambda _m: repl, value)
            m = rx.search(value)
            if m:
                value = value[:m.start()] + repl + value[m.end():]
            return value
        if ch == _EOF:
            raise ExpansionError("syntax error: missing '}'")
        raise ExpansionError(f"unsupported modifier ({chs}) in substitution")


_REGEX_SPECIAL = frozenset("[]{}.+()|^$")


def _pattern_to_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell wildcard pattern (`*`, `?`, `\\` escapes; no brackets) as a regex."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i, n = 0, len(pattern)
    while i < n:
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
        elif tok == "?":
            out.append(".")
        elif tok == "\\":
            nxt = pattern[i] if i < n else ""
            if nxt in ("}", "/"):
                continue  # the escape protected a ${} delimiter; it is not part of the pattern
            i += 1
            if nxt not in ("*", "?", "\\"):
                raise ExpansionError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'")
            out.append("\\" + nxt)
        elif tok in _REGEX_SPECIAL:
            out.append("\\" + tok)
        else:
            out.append(re.escape(tok))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_to_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[m.end():] if m else value


def _reverse_pattern(pattern: str) -> str:
    # Reverse, but keep each escape in front of the character it escapes (a\*c -> c\*a).
    units: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i != len(pattern) - 1:
            units.append(pattern[i:i + 2])
            i += 2
        else:
            units.append(pattern[i])
            i += 1
    return "".join(reversed(units))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regex cannot find the shortest rightmost match, so search the reversed string.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


_DEFAULT = ShellLexer("\\")
_BACKTICK = ShellLexer("`")


def _lexer(escape: str) -> ShellLexer:
    return _DEFAULT if escape == "\\" else _BACKTICK if escape == "`" else ShellLexer(escape)


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> Expansion:
    """Expand one word; the result also says which variable names were found and not found."""
    return _lexer(escape).process(word, env)


def expand_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expansion and quote removal, white space kept (BuildKit's ProcessWord)."""
    return _lexer(escape).process(word, env).result


def expand_words(word: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expansion, then split into words on unquoted white space (BuildKit's ProcessWords)."""
    return list(_lexer(escape).process(word, env).words)


def env_from_list(entries: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`NAME=VALUE` entries as a mapping: `NAME` alone is set to "", the last repeat wins."""
    out: dict[str, str] = {}
    for e in entries:
        k, sep, v = e.partition("=")
        out[k] = v if sep else ""
    return out
