"""The exception tree of pybuild.

Owns: every error type library code raises, and SourceSpan (where in a Dockerfile a
mistake is). Must not: print, exit, or import anything outside the standard library.
`builder.cli.main` is the one place that turns these into messages and exit codes.
"""
from __future__ import annotations

from runtime.record import Record


class SourceSpan(Record):
    """A place in a Dockerfile: 1-based line and column, plus the source line text."""

    file: str
    line: int
    column: int = 1
    end_column: int | None = None  # exclusive; None = one character
    text: str = ""  # the physical source line, for the caret display
    end_line: int | None = None  # last line of a multi-line instruction

    def caret_width(self) -> int:
        if self.end_column is None or self.end_column <= self.column:
            return 1
        return self.end_column - self.column


class PybuildError(Exception):
    """Base of every expected failure; the CLI prints it and exits 1."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def render(self) -> str:
        """The user-facing text: one line with the cause (+ an optional hint line)."""
        out = f"error: {self.message}"
        if self.hint:
            out += f"\nhint: {self.hint}"
        return out


class UsageError(PybuildError):
    """Bad command-line usage (conflicting or malformed flags): exit code 2."""

    exit_code = 2


class DockerfileError(PybuildError):
    """A mistake in a Dockerfile, with the place it was found."""

    def __init__(self, message: str, span: SourceSpan | None = None, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.span = span

    def with_span(self, span: SourceSpan) -> "DockerfileError":
        if self.span is None:
            self.span = span
        return self

    def render(self) -> str:
        if self.span is None:
            return super().render()
        s = self.span
        lines = [f"{s.file}:{s.line}:{s.column}: error: {self.message}"]
        if s.text:
            gutter = str(s.line)
            lines.append(f"    {gutter} | {s.text}")
            pad = " " * (s.column - 1)
            lines.append(f"    {' ' * len(gutter)} | {pad}{'^' * s.caret_width()}")
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class DockerfileSyntaxError(DockerfileError):
    """The text does not parse as a Dockerfile."""


class InstructionError(DockerfileError):
    """An instruction parses but is invalid (bad flag, bad argument, unknown stage...)."""


class ContextError(PybuildError):
    """Build context problems: missing directory, source not found, escapes."""


class BuildStepError(PybuildError):
    """A build step failed; carries the Dockerfile span where the solver attaches it."""

    def __init__(self, message: str, span: SourceSpan | None = None, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.span = span

    def render(self) -> str:
        if self.span is None:
            return super().render()
        return DockerfileError.render(self)  # same gcc-style layout


class RunFailed(BuildStepError):
    """A RUN step exited non-zero (or was killed)."""

    def __init__(self, message: str, span: SourceSpan | None = None, *, exit_code: int | None = None,
                 signal: int | None = None, output_tail: str = "", hint: str | None = None) -> None:
        super().__init__(message, span, hint=hint)
        self.status = exit_code
        self.signal = signal
        self.output_tail = output_tail

    def render(self) -> str:
        out = super().render()
        if self.output_tail:
            tail = "\n".join("  > " + ln for ln in self.output_tail.rstrip("\n").splitlines())
            out += "\n" + tail
        return out


class StoreError(PybuildError):
    """Content store / image store problems."""


class DigestMismatch(StoreError):
    """Content read or received does not hash to the digest that names it."""


class BlobNotFound(StoreError):
    """A blob the caller asked for is not in the store."""


class ImageNotFound(StoreError):
    """No image by that reference in the local store."""


class InvalidReference(PybuildError):
    """An image reference that does not parse."""


class RegistryError(PybuildError):
    """A registry request failed."""


class AuthError(RegistryError):
    """The registry refused our credentials."""


class NotFound(RegistryError):
    """The registry has no such repository, tag or blob."""


class CacheError(PybuildError):
    """Build cache problems (corrupt record, bad import/export)."""


class LayerError(PybuildError):
    """A layer archive is malformed or hostile (escapes its root, forbidden entry)."""


class InvalidDocument(StoreError):
    """An OCI / Docker JSON document (descriptor, manifest, index, config, layout) is malformed."""
