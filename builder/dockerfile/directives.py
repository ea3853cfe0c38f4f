"""Parser directives: `# syntax=`, `# escape=`, `# check=` at the top of a Dockerfile.

Owns: recognising directive lines (only before the first instruction, comment or blank line),
duplicate detection, the escape character check, `detect_syntax` (shebang, `#`, `//` and JSON
forms, as BuildKit's DetectSyntax), and the `check` directive's `skip=` / `error=` options.
Must not: parse instructions or read files.
"""
from __future__ import annotations

import json
import re

from builder.errors import DockerfileSyntaxError
from runtime.record import Record

KNOWN = ("syntax", "escape", "check")
# Go's \s is ASCII white space only.
_HASH_RE = re.compile(r"^#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*$")
_SLASH_RE = re.compile(r"^//[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*$")


class Directive(Record):
    name: str  # lower case
    value: str
    line: int  # 1-based


class CheckConfig(Record):
    """`# check=skip=RuleA,RuleB;error=true` (skip=all disables every rule)."""

    skip: frozenset[str] = frozenset()
    error: bool = False

    @property
    def skip_all(self) -> bool:
        return "all" in {s.lower() for s in self.skip}

    def skips(self, rule: str) -> bool:
        return self.skip_all or rule in self.skip


class Directives(Record):
    escape: str = "\\"
    syntax: str | None = None
    check: CheckConfig = CheckConfig()
    found: tuple[Directive, ...] = ()


class DirectiveParser:
    """Fed one line at a time; stops recognising directives at the first non-directive line."""

    __slots__ = ("done", "seen", "found")

    def __init__(self) -> None:
        self.done = False
        self.seen: set[str] = set()
        self.found: list[Directive] = []

    def parse_line(self, line: str, lineno: int) -> Directive | None:
        if self.done:
            return None
        m = _HASH_RE.match(line)
        if not m:
            self.done = True
            return None
        name = m.group(1).lower()
        if name not in KNOWN:
            self.done = True
            return None
        if name in self.seen:
            raise DockerfileSyntaxError(f"only one {name} parser directive can be used")
        self.seen.add(name)
        d = Directive(name, m.group(2), lineno)
        self.found.append(d)
        return d


def check_escape(value: str) -> str:
    if value not in ("`", "\\"):
        raise DockerfileSyntaxError(f"invalid escape token '{value}' does not match ` or \\")
    return value


def parse_check(value: str) -> CheckConfig:
    """The value of `# check=`: `skip=A,B;error=true`."""
    skip: set[str] = set()
    error = False
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        key = key.strip().lower()
        if not sep:
            raise DockerfileSyntaxError(f"invalid check directive: {part!r} is not key=value")
        if key == "skip":
            skip.update(s.strip() for s in val.split(",") if s.strip())
        elif key == "error":
            if val.strip().lower() not in ("true", "false"):
                raise DockerfileSyntaxError(f"invalid check directive: error={val} is not true or false")
            error = val.strip().lower() == "true"
        else:
            raise DockerfileSyntaxError(f"invalid check directive option {key!r} (want skip= or error=)")
    return CheckConfig(frozenset(skip), error)


def build(found: list[Directive]) -> Directives:
    by = {d.name: d.value for d in found}
    return Directives(escape=by.get("escape", "\\"), syntax=by.get("syntax"),
                      check=parse_check(by["check"]) if "check" in by else CheckConfig(),
                      found=tuple(found))


def parse_all(text: str) -> list[Directive]:
    """Every directive at the top of `text`, in order (BuildKit's ParseAll)."""
    p = DirectiveParser()
    for n, line in enumerate(_lines(text), 1):
        if p.parse_line(line, n) is None:
            break
    return p.found


def _lines(text: str) -> list[str]:
    if text.startswith("\ufeff"):
        text = text[1:]
    return [ln.rstrip("\r") for ln in text.split("\n")]


class SyntaxRef(Record):
    ref: str  # the value up to the first space
    cmdline: str  # the whole value
    line: int


def _scan(text: str, name: str, rx: re.Pattern[str]) -> SyntaxRef | None:
    lines = _lines(text)
    start = 0
    if lines and lines[0].startswith("#!"):
        start = 1  # a shebang line is skipped but counted
    seen: set[str] = set()
    for i in range(start, len(lines)):
        m = rx.match(lines[i])
        if not m:
            return None
        key = m.group(1).lower()
        if key in seen:
            return None
        seen.add(key)
        if key == name:
            value = m.group(2)
            return SyntaxRef(value.split(" ", 1)[0], value, i + 1)
    return None


def detect_syntax(text: str) -> SyntaxRef | None:
    """Where the `syntax` frontend reference is, as BuildKit's DetectSyntax finds it."""
    found = _scan(text, "syntax", _HASH_RE) or _scan(text, "syntax", _SLASH_RE)
    if found:
        return found
    body = text[1:] if text.startswith("\ufeff") else text
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("syntax"), str):
        v = obj["syntax"]
        return SyntaxRef(v.split(" ", 1)[0], v, 1)
    return None


def parse_directive(name: str, text: str) -> SyntaxRef | None:
    """One `#`-form directive by name (BuildKit's ParseDirective), e.g. `check`."""
    return _scan(text, name, _HASH_RE)
