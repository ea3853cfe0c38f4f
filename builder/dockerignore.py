""".dockerignore patterns exactly as Docker matches them (moby/patternmatcher's semantics):
reading the file (`read_ignore_patterns`), Go's filepath.Match syntax translated to regular
expressions (`translate`), and `PatternMatcher` with exceptions (`!pattern`) and the question
whether an excluded directory may still hold a re-included child.

Must not: read the context or know about Dockerfiles (builder.context uses it).
"""
from __future__ import annotations

import re

from builder.errors import ContextError
from runtime.record import Record

# ---------------------------------------------------------------------------------------------
# .dockerignore patterns (moby/patternmatcher semantics)


class PatternError(ContextError):
    """A .dockerignore pattern that is not valid Go filepath.Match syntax."""


def go_clean(path: str) -> str:
    """Go's filepath.Clean for '/'-separated paths (lexical: '.', '..', duplicate slashes)."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    s = "/".join(out)
    if rooted:
        return "/" + s
    return s or "."


def go_dir(path: str) -> str:
    """Go's filepath.Dir: everything before the last slash, cleaned."""
    i = path.rfind("/")
    return go_clean(path[: i + 1])


def read_ignore_patterns(text: str | None) -> list[str]:
    """Patterns from .dockerignore text, as moby's ignorefile.ReadAll reads them."""
    if text is None:
        return []
    if text.startswith("\ufeff"):
        text = text[1:]
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        pat = line.strip()
        if not pat:
            continue
        invert = pat.startswith("!")
        if invert:
            pat = pat[1:].strip()
        if pat:
            pat = go_clean(pat)
            if pat.startswith("/"):
                pat = pat[1:] or "."  # patterns are relative to the context root
        out.append("!" + pat if invert else pat)
    return out


def _class_char(pat: str, i: int) -> tuple[str, int]:
    """Go's getEsc: one (possibly escaped) character of a [class]; returns (char, next index)."""
    if i >= len(pat) or pat[i] in "-]":
        raise PatternError("syntax error in pattern")
    if pat[i] == "\\":
        i += 1
        if i >= len(pat):
            raise PatternError("syntax error in pattern")
    ch = pat[i]
    if i + 1 >= len(pat):
        raise PatternError("syntax error in pattern")
    return ch, i + 1


def translate(pattern: str) -> str:
    """A cleaned pattern → a Python regex (anchored), checking Go filepath.Match syntax.

    `*` and `?` never cross '/', `**` spans directories (moby's extension), `\\x` is literal x.
    Reversed ranges pass the syntax check (as in Go) but fail to compile: matching then errors,
    which is what upstream does for `[Local-Only]`.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                if i >= n:
                    out.append(".*")
                else:
                    out.append("(?:.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i + 1 >= n:
                raise PatternError("syntax error in pattern")
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            i += 1
            negated = i < n and pattern[i] == "^"
            if negated:
                i += 1
            parts: list[str] = []
            while True:
                if i < n and pattern[i] == "]" and parts:
                    break
                lo, i = _class_char(pattern, i)
                if pattern[i] == "-":
                    hi, i = _class_char(pattern, i + 1)
                    parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
                else:
                    parts.append(re.escape(lo))
            out.append("[" + ("^/" if negated else "") + "".join(parts) + "]")
        else:
            out.append(re.escape(ch))
        i += 1
    return "^" + "".join(out) + "$"


class Pattern(Record, frozen=False):
    text: str  # cleaned, without the "!"
    exclusion: bool
    _regex: str
    _compiled: re.Pattern | None = None

    def match(self, path: str) -> bool:
        if self._compiled is None:
            try:
                self._compiled = re.compile(self._regex, re.DOTALL)
            except re.error as e:
                raise PatternError(f"bad .dockerignore pattern {self.text!r}: {e}") from None
        return self._compiled.match(path) is not None


class PatternMatcher:
    """moby's PatternMatcher: last matching pattern wins; a pattern matching a parent counts."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[Pattern] = []
        for raw in patterns:
            p = raw.strip()
            if not p:
                continue
            excl = p.startswith("!")
            if excl:
                p = p[1:]
                if not p:
                    raise PatternError('illegal exclusion pattern: "!"')
            p = go_clean(p)
            self.patterns.append(Pattern(p, excl, translate(p)))

    @property
    def has_exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def matches(self, path: str) -> bool:
        """MatchesOrParentMatches: is `path` (relative, '/'-separated) ignored?"""
        matched = False
        parent = go_dir(path)
        parent_dirs = parent.split("/")
        for pat in self.patterns:
            if pat.exclusion != matched:
                continue
            m = pat.match(path)
            if not m and parent != ".":
                for i in range(len(parent_dirs)):
                    if pat.match("/".join(parent_dirs[: i + 1])):
                        m = True
                        break
            if m:
                matched = not pat.exclusion
        return matched

    def could_include_below(self, directory: str) -> bool:
        """Whether an exception pattern may re-include something under an ignored directory."""
        prefix = directory.rstrip("/") + "/"
        for p in self.patterns:
            if p.exclusion and (p.text.startswith(prefix) or any(c in p.text for c in "*?[\\")):
                return True
        return False
