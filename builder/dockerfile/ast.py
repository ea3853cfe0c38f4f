"""Typed, frozen Dockerfile instructions and the parsed `Dockerfile`.

Owns: one class per instruction (From, Run, Cmd, Label, Expose, Env, Add, Copy, Entrypoint,
Volume, User, Workdir, Arg, Onbuild, Stopsignal, Healthcheck, Shell, Maintainer), MountSpec,
SourceContent (heredoc files of COPY/ADD), and each class's `expand(env)`: a copy with exactly
the fields BuildKit expands for that instruction expanded —
  expanded:     ENV/LABEL keys+values, ARG defaults, COPY/ADD sources, dest, --chown, --chmod,
                --exclude and heredoc bodies marked expand, EXPOSE ports (with word splitting),
                USER, WORKDIR, STOPSIGNAL, VOLUME paths, RUN --mount fields, FROM base/--platform
                (by stages.resolve_from, with the meta ARGs).
  not expanded: RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK commands (the shell does it at run time),
                COPY --from (a stage or image name, never expanded), ONBUILD (at trigger time),
                MAINTAINER.
Building these from parse nodes (flag validation, argument counts) is build.py.
Must not: do I/O, import lark (so a cached Dockerfile unpickles without it), or print.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Self

from builder.dockerfile.directives import Directives
from builder.dockerfile.expand import ShellLexer, expand_word, expand_words
from builder.dockerfile.lineparse import Heredoc, chomp
from builder.errors import DockerfileError, SourceSpan
from runtime.record import Record, field, replace

_RAW_LEXER = ShellLexer("\\", skip_process_quotes=True)


def _span_error(e: DockerfileError, span: SourceSpan) -> DockerfileError:
    return e.with_span(span)


class Instruction(Record):
    span: SourceSpan
    original: str  # the instruction's text as BuildKit prints it in history, e.g. "RUN echo hi"

    @property
    def name(self) -> str:
        return type(self).__name__.upper()

    def expand(self, env: Mapping[str, str], escape: str = "\\") -> Self:
        """A copy with the fields BuildKit expands for this instruction expanded (default: none)."""
        return self

    def _x(self, word: str, env: Mapping[str, str], escape: str) -> str:
        try:
            return expand_word(word, env, escape)
        except DockerfileError as e:
            raise _span_error(e, self.span) from None


class MountSpec(Record):
    type: str = "bind"  # bind | cache | tmpfs | secret | ssh
    target: str | None = None
    source: str | None = None
    from_: str | None = None
    id: str | None = None
    sharing: str = "shared"  # shared | private | locked (cache)
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    readonly: bool = False
    required: bool = False
    env: str | None = None  # secret exposed as an environment variable
    size: int | None = None  # tmpfs size in bytes
    raw: str | None = None  # the `--mount=` text when a value holds `$`: parsed by expand()

    def expand(self, ex) -> "MountSpec":
        if self.raw is not None:
            from builder.dockerfile.options import parse_mount  # options imports this module

            def fail(msg: str, hint: str | None = None) -> DockerfileError:
                return DockerfileError(msg, None, hint=hint)
            return parse_mount(self.raw, fail, ex)
        return replace(self, target=ex(self.target), source=ex(self.source), from_=ex(self.from_),
                       id=ex(self.id), env=ex(self.env))


class SourceContent(Record):
    """A heredoc used as a COPY/ADD source: a file named `path` holding `data`."""

    path: str
    data: str
    expand: bool


class From(Instruction):
    base: str  # as written (unexpanded); stages.resolve_from expands it
    stage_name: str | None = None  # lower-cased AS name
    platform: str | None = None
    stage_name_as_written: str | None = None
    as_keyword: str | None = None  # "AS" as written (FromAsCasing lint)


class _CommandForm(Instruction):
    """Shell form (`command` is one string, run with SHELL) or exec form (`argv`)."""

    command: str | None = None  # shell form text
    argv: tuple[str, ...] | None = None  # exec form
    prepend_shell: bool = False

    @property
    def cmd_line(self) -> tuple[str, ...]:
        return (self.command,) if self.prepend_shell and self.command is not None else (self.argv or ())


class Run(_CommandForm):
    mounts: tuple[MountSpec, ...] = ()
    network: str | None = None  # none | host | default
    security: str | None = None  # insecure | sandbox
    heredocs: tuple[Heredoc, ...] = ()

    def expand(self, env: Mapping[str, str], escape: str = "\\") -> "Run":
        def ex(v):
            return None if v is None else self._x(v, env, escape)
        try:
            return replace(self, mounts=tuple(m.expand(ex) for m in self.mounts))
        except DockerfileError as e:
            raise _span_error(e, self.span) from None


class Cmd(_CommandForm):
    pass


class Entrypoint(_CommandForm):
    pass


class Shell(Instruction):
    shell: tuple[str, ...] = ()


class KeyValue(Record):
    key: str
    value: str
    no_delim: bool = False  # old `KEY value` form


class Env(Instruction):
    pairs: tuple[KeyValue, ...] = ()

    def expand(self, env: Mapping[str, str], escape: str = "\\") -> "Env":
        return replace(self, pairs=tuple(KeyValue(self._x(p.key, env, escape), self._x(p.value, env, escape),
                                                  p.no_delim) for p in self.pairs))


class Label(Instruction):
    pairs: tuple[KeyValue, ...] = ()

    def expand(self, env: Mapping[str, str], escape: str = "\\") -> "Label":
        return replace(self, pairs=tuple(KeyValue(self._x(p.key, env, escape), self._x(p.value, env, escape),
                                                  p.no_delim) for p in self.pairs))


class Maintainer(Instruction):
    maintainer: str = ""


class Expose(Instruction):
    ports: tuple[str, ...] = ()

    def expand(self, env: Mapping[str, str], escape: str = "\\") -> "Expose":
        out: list[str] = []
        for p in self.ports:
            try:
                out.extend(expand_words(p, env, escape))
            except DockerfileError as e:
                raise _span_error(e, self.span) from None
        return replace(self, ports=tuple(out))


class _Transfer(Instruction):
    sources: tuple[str, ...] = ()  # paths/URLs (heredoc sources are in `contents`)
    dest: str = ""
    contents: tuple[SourceContent, ...] = ()
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    excludes: tuple[str, ...] = ()
    heredocs: tuple[Heredoc, ...] = ()

    def expand(self, env: Mapping[str, str], escape: str = "\\") -> Self:
        def ex(v):
            return None if v is None else self._x(v, env, escape)

        def raw(c: SourceContent) -> SourceContent:
            if not c.expand:
                return c
            try:
                return replace(c, data=_RAW_LEXER.process(c.data, env).result)
            except DockerfileError as e:
                raise _span_error(e, self.span) from None
        return replace(self, sources=tuple(ex(s) for s in self.sources), dest=ex(self.dest),
                       chown=ex(self.chown), chmod=ex(self.chmod), excludes=tuple(ex(s) for s in self.excludes),
                       contents=tuple(raw(c) for c in self.contents))


class Copy(_Transfer):
    from_: str | None = None  # stage name, stage index or image; never expanded


class Add(_Transfer):
    checksum: str | None = None
    keep_git_dir: bool = False

    def expand(self, env: Mapping[str, str], escape: str = "\\") -> "Add":
        out = _Transfer.expand(self, env, escape)
        return replace(out, checksum=None if self.checksum is None else self._x(self.checksum, env, escape))


class Volume(Instruction):
    volumes: tuple[str, ...] = ()

    def expand(self, env: Mapping[str, str], escape: str = "\\") -> "Volume":
        return replace(self, volumes=tuple(self._x(v, env, escape) for v in self.volumes))


class User(Instruction):
    user: str = ""

    def expand(self, env: Mapping[str, str], escape: str = "\\") -> "User":
        return replace(self, user=self._x(self.user, env, escape))


class Workdir(Instruction):
    path: str = ""

    def expand(self, env: Mapping[str, str], escape: str = "\\") -> "Workdir":
        return replace(self, path=self._x(self.path, env, escape))


class Stopsignal(Instruction):
    signal: str = ""

    def expand(self, env: Mapping[str, str], escape: str = "\\") -> "Stopsignal":
        return replace(self, signal=self._x(self.signal, env, escape))


class ArgDecl(Record):
    key: str
    value: str | None = None  # default, None when declared without one


class Arg(Instruction):
    args: tuple[ArgDecl, ...] = ()

    def expand(self, env: Mapping[str, str], escape: str = "\\") -> "Arg":
        return replace(self, args=tuple(ArgDecl(a.key, None if a.value is None else self._x(a.value, env, escape))
                                        for a in self.args))


class Onbuild(Instruction):
    instruction: Instruction | None = None  # the trigger; expanded only when it fires
    expression: str = ""  # the trigger's source text, stored in the image config


class Healthcheck(Instruction):
    test: tuple[str, ...] = ()  # ("NONE",) | ("CMD", argv...) | ("CMD-SHELL", command)
    interval: int | None = None  # nanoseconds
    timeout: int | None = None
    start_period: int | None = None
    start_interval: int | None = None
    retries: int | None = None


class Dockerfile(Record):
    """A parsed Dockerfile: directives, instructions in order, parser warnings."""

    filename: str
    directives: Directives
    instructions: tuple[Instruction, ...]
    warnings: tuple = ()  # lint.LintWarning values found while parsing (empty continuation lines)
    lines: tuple[str, ...] = field(default=(), repr=False)  # physical source lines

    @property
    def escape(self) -> str:
        return self.directives.escape

    def stages(self):
        from builder.dockerfile.stages import split_stages

        return split_stages(self)[1]


INSTRUCTION_CLASSES = {c.__name__.upper(): c for c in (From, Run, Cmd, Label, Expose, Env, Add, Copy, Entrypoint,
                                                       Volume, User, Workdir, Arg, Onbuild, Stopsignal, Healthcheck,
                                                       Shell, Maintainer)}


def heredoc_contents(heredocs: tuple[Heredoc, ...]) -> dict[str, str]:
    """Name → body with `<<-` tab chomping applied."""
    return {h.name: chomp(h.content) if h.chomp else h.content for h in heredocs}


