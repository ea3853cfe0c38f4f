"""The build graph: stages of steps, each step an expanded, normalized operation.

Owns: the op values the engine executes (`BaseOp`, `RunOp`, `CopyOp`, `ConfigOp`, `MountOp`,
`CopyFrom`), `Step` (an op plus where it came from: stage, position, span, text, the ARGs in
scope), `Stage` and `BuildGraph` (stages in Dockerfile order, the target, `needed()` = the
stages the target depends on, `waves()` = groups that may run concurrently).

Must not: touch files or know how ops execute. Everything here is plain frozen data, so a graph
can be compared, hashed into cache keys and printed.
"""
from __future__ import annotations

from builder.errors import SourceSpan
from runtime.record import Record, field


class CopyFrom(Record):
    """Where COPY --from / RUN --mount from= reads: a stage of this build, or an image ref."""

    stage: int | None = None
    image: str | None = None


class BaseOp(Record):
    """FROM: an image reference, `scratch`, or another stage (stage set)."""

    image: str | None = None  # None when `stage` is set
    stage: int | None = None
    platform: str | None = None


class MountOp(Record):
    """One RUN --mount: type=cache|bind|tmpfs|secret|ssh with its options."""

    type: str
    target: str = ""
    source: str = ""
    source_from: CopyFrom | None = None  # bind/cache from= (None: the context for bind)
    id: str = ""
    readonly: bool = False
    sharing: str = "shared"
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    required: bool = False
    env: str = ""  # secret as env var
    size: int | None = None


class RunOp(Record):
    argv: tuple[str, ...]  # the final argv (shell form already wrapped by SHELL)
    shell_form: bool
    mounts: tuple[MountOp, ...] = ()
    network: str = "default"
    heredocs: tuple[tuple[str, str], ...] = ()  # (path in /dev/pipes-like tmp, content) for RUN <<EOF
    security: str = "sandbox"  # RUN --security=insecure: all capabilities, no seccomp (needs --allow)


class CopyOp(Record):
    """COPY or ADD (is_add). sources are context paths/patterns, URLs, git URLs or stage paths."""

    sources: tuple[str, ...]
    dest: str
    source_from: CopyFrom | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    excludes: tuple[str, ...] = ()
    heredocs: tuple[tuple[str, str], ...] = ()  # (name, content): inline files
    is_add: bool = False
    checksum: str | None = None
    keep_git_dir: bool = False
    unpack: bool | None = None


class ConfigOp(Record):
    """An instruction that only changes the image config (ENV, CMD, LABEL, USER, WORKDIR…).

    `name` is the instruction keyword; `value` its normalized argument (a tuple of pairs for
    ENV/LABEL, a tuple of strings for CMD/ENTRYPOINT/SHELL/EXPOSE/VOLUME, a string otherwise).
    WORKDIR is a ConfigOp that also makes the directory (the engine's business).
    """

    name: str
    value: object
    shell_form: bool = False


Op = BaseOp | RunOp | CopyOp | ConfigOp


class Step(Record):
    op: Op
    stage: int
    index: int  # 1-based within the stage, FROM = 1
    text: str  # the instruction as written (for history created_by and progress)
    span: SourceSpan | None = None
    args: tuple[tuple[str, str], ...] = ()  # build ARGs in scope (name, value), sorted
    onbuild: bool = False  # inserted from a base image's ONBUILD triggers

    @property
    def reads_stages(self) -> tuple[int, ...]:
        out: list[int] = []
        op = self.op
        if isinstance(op, BaseOp) and op.stage is not None:
            out.append(op.stage)
        if isinstance(op, CopyOp) and op.source_from and op.source_from.stage is not None:
            out.append(op.source_from.stage)
        if isinstance(op, RunOp):
            out.extend(m.source_from.stage for m in op.mounts if m.source_from and m.source_from.stage is not None)
        return tuple(out)


class Stage(Record):
    index: int
    name: str | None
    steps: tuple[Step, ...]

    @property
    def label(self) -> str:
        return self.name or f"stage-{self.index}"

    @property
    def deps(self) -> tuple[int, ...]:
        return tuple(sorted({s for st in self.steps for s in st.reads_stages}))


class BuildGraph(Record):
    stages: tuple[Stage, ...]
    target: int  # index of the stage to build (default: the last)
    build_args: tuple[tuple[str, str], ...] = ()
    platform: str = "linux/amd64"
    unused_args: tuple[str, ...] = field(default=())

    def needed(self) -> list[int]:
        """Stages the target depends on (itself included), in Dockerfile order."""
        seen: set[int] = set()
        todo = [self.target]
        while todo:
            i = todo.pop()
            if i in seen:
                continue
            seen.add(i)
            todo.extend(self.stages[i].deps)
        return sorted(seen)

    def waves(self) -> list[list[int]]:
        """The needed stages grouped so that each group only depends on earlier groups."""
        need = self.needed()
        done: set[int] = set()
        out: list[list[int]] = []
        while len(done) < len(need):
            wave = [i for i in need if i not in done and all(d in done for d in self.stages[i].deps)]
            if not wave:  # the planner refuses cycles; this is a guard
                raise ValueError("stage dependency cycle")
            out.append(wave)
            done.update(wave)
        return out

    def step_count(self) -> int:
        return sum(len(self.stages[i].steps) for i in self.needed())
