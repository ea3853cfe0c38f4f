"""Build stages, their dependency DAG, and ARG/ENV scoping — pure, as BuildKit resolves them.

Owns:
- `split_stages(dockerfile) -> (meta_args, stages)`: ARGs before the first FROM are *meta
  args*; every FROM opens a `Stage(index, name, base, platform, instructions, span)`.
- `meta_env(meta_args, build_args, platform_args)` and `resolve_from(stage, meta_args,
  build_args, platform_args) -> str`: FROM lines see only the meta args (each default expanded
  with the ones before it; `--build-arg` overrides a default) plus the predefined platform args.
- `stage_dependencies(stages) -> dict[int, set[int]]`: edges from FROM <earlier stage>,
  `COPY --from=<name|index>` and `RUN --mount=from=<name|index>`; unknown stage indexes and
  cycles are InstructionErrors. A `--from` that names no stage is an image (no edge).
- `expanded_instructions(stage, base_env, build_args, meta_args, platform_args)`: each
  instruction expanded in BuildKit's scope, with the ENV (image config) and ARG (RUN-time only)
  values in force *before* it. Rules: ENV sees values from before the instruction; an ARG is
  visible only after its declaration in the stage; a meta ARG is visible in a stage only once
  re-declared there (`ARG NAME` without default inherits its value); `--build-arg` beats
  defaults; ENV beats ARG of the same name.
Predefined args (PLATFORM_ARGS): TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM
BUILDOS BUILDARCH BUILDVARIANT — set for FROM lines; inside a stage after `ARG TARGETARCH`.
Proxy args (PROXY_ARGS): HTTP_PROXY HTTPS_PROXY FTP_PROXY NO_PROXY ALL_PROXY (and lower case) —
when given as --build-arg they are in scope everywhere without a declaration (and stay out of
the image config and cache keys).
Must not: do I/O or know image contents (the caller passes the base image's Env).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

from builder.dockerfile import ast as A
from builder.dockerfile.expand import expand_word
from builder.errors import DockerfileError, InstructionError, SourceSpan
from runtime.record import Record

PLATFORM_ARGS = ("TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT", "BUILDPLATFORM", "BUILDOS",
                 "BUILDARCH", "BUILDVARIANT")
PROXY_ARGS = tuple(p for n in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
                   for p in (n, n.lower()))


class Stage(Record):
    index: int
    name: str | None  # lower-cased AS name
    base: str  # as written; resolve_from expands it
    platform: str | None
    instructions: tuple[A.Instruction, ...]  # after the FROM
    span: SourceSpan
    from_: A.From | None = None


def split_stages(dockerfile: A.Dockerfile) -> tuple[tuple[A.Arg, ...], tuple[Stage, ...]]:
    meta: list[A.Arg] = []
    stages: list[Stage] = []
    current: A.From | None = None
    body: list[A.Instruction] = []
    seen: dict[str, A.From] = {}

    def close() -> None:
        if current is not None:
            stages.append(Stage(len(stages), current.stage_name, current.base, current.platform, tuple(body),
                                current.span, current))

    for ins in dockerfile.instructions:
        if isinstance(ins, A.From):
            close()
            if ins.stage_name is not None:
                if ins.stage_name in seen:
                    raise InstructionError(f"duplicate stage name {ins.stage_name!r}", ins.span,
                                           hint=f"first defined on line {seen[ins.stage_name].span.line}")
                seen[ins.stage_name] = ins
            current, body = ins, []
        elif current is None:
            if not isinstance(ins, A.Arg):
                raise InstructionError(f"{ins.name} before the first FROM: no build stage in current context",
                                       ins.span, hint="only ARG may come before the first FROM")
            meta.append(ins)
        else:
            body.append(ins)
    close()
    if not stages:
        span = dockerfile.instructions[-1].span if dockerfile.instructions else None
        raise InstructionError("no build stage in the Dockerfile", span, hint="add a FROM instruction")
    return tuple(meta), tuple(stages)


def meta_env(meta_args: tuple[A.Arg, ...], build_args: Mapping[str, str],
             platform_args: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables FROM lines see."""
    env: dict[str, str] = dict(platform_args or {})
    for ins in meta_args:
        for d in ins.args:
            if d.key in build_args:
                env[d.key] = build_args[d.key]
            elif d.value is not None:
                env[d.key] = _x(d.value, env, ins.span)
    return env


def _x(word: str, env: Mapping[str, str], span: SourceSpan) -> str:
    try:
        return expand_word(word, env)
    except DockerfileError as e:
        raise e.with_span(span) from None


def resolve_from(stage: Stage, meta_args: tuple[A.Arg, ...], build_args: Mapping[str, str],
                 platform_args: Mapping[str, str] | None = None) -> str:
    """The stage's base name with the meta args expanded."""
    env = meta_env(meta_args, build_args, platform_args)
    base = _x(stage.base, env, stage.span)
    if not base.strip():
        raise InstructionError(f"base name ({stage.base}) should not be blank", stage.span,
                               hint="the variable it uses is empty; declare it with ARG before FROM or pass --build-arg")
    return base


def resolve_platform(stage: Stage, meta_args: tuple[A.Arg, ...], build_args: Mapping[str, str],
                     platform_args: Mapping[str, str] | None = None) -> str | None:
    if stage.platform is None:
        return None
    return _x(stage.platform, meta_env(meta_args, build_args, platform_args), stage.span)


def find_stage(stages: tuple[Stage, ...], ref: str, current: int, span: SourceSpan) -> int | None:
    """The index `ref` names (a stage name or a number), or None for an image reference."""
    low = ref.lower()
    for s in stages:
        if s.name is not None and s.name == low:
            return s.index
    if ref.isdigit():
        i = int(ref)
        if i >= len(stages):
            raise InstructionError(f"invalid stage index {i}: the Dockerfile has {len(stages)} stages", span)
        if i == current:
            raise InstructionError(f"stage {i} cannot refer to itself", span)
        return i
    return None


def stage_dependencies(stages: tuple[Stage, ...], bases: Mapping[int, str] | None = None) -> dict[int, set[int]]:
    deps: dict[int, set[int]] = {s.index: set() for s in stages}
    for s in stages:
        base = (bases or {}).get(s.index, s.base).lower()
        for earlier in stages[: s.index]:
            if earlier.name is not None and earlier.name == base:
                deps[s.index].add(earlier.index)
        for ins in s.instructions:
            refs: list[str] = []
            if isinstance(ins, A.Copy) and ins.from_:
                refs.append(ins.from_)
            if isinstance(ins, A.Run):
                refs.extend(m.from_ for m in ins.mounts if m.from_)
            for ref in refs:
                i = find_stage(stages, ref, s.index, ins.span)
                if i is not None:
                    deps[s.index].add(i)
    _check_cycles(stages, deps)
    return deps


def _check_cycles(stages: tuple[Stage, ...], deps: dict[int, set[int]]) -> None:
    state: dict[int, int] = {}  # 1 = visiting, 2 = done

    def visit(i: int, path: list[int]) -> None:
        if state.get(i) == 2:
            return
        if state.get(i) == 1:
            cyc = path[path.index(i):] + [i]
            names = " -> ".join(stages[j].name or str(j) for j in cyc)
            raise InstructionError(f"circular dependency detected on stage: {names}", stages[i].span)
        state[i] = 1
        for d in sorted(deps[i]):
            visit(d, path + [i])
        state[i] = 2

    for s in stages:
        visit(s.index, [])


class Scoped(Record):
    """One instruction expanded in its scope, with the values in force before it."""

    instruction: A.Instruction
    env: tuple[tuple[str, str], ...]  # image config Env (ENV + base image), in order
    args: tuple[tuple[str, str], ...]  # ARGs in scope (RUN-time environment only, not persisted)
    unmatched: frozenset[str] = frozenset()


def expanded_instructions(stage: Stage, base_env: Mapping[str, str], build_args: Mapping[str, str],
                          meta_args: tuple[A.Arg, ...] = (),
                          platform_args: Mapping[str, str] | None = None,
                          escape: str = "\\") -> Iterator[Scoped]:
    meta = meta_env(meta_args, build_args, platform_args)
    env: dict[str, str] = dict(base_env)
    args: dict[str, str] = {k: v for k, v in build_args.items() if k in PROXY_ARGS}
    platform_args = platform_args or {}
    for ins in stage.instructions:
        scope = {**args, **env}  # ENV beats ARG of the same name
        out = ins.expand(scope, escape)
        yield Scoped(out, tuple(env.items()), tuple(args.items()))
        if isinstance(out, A.Env):
            for p in out.pairs:
                env[p.key] = p.value
        elif isinstance(out, A.Arg):
            for d, raw in zip(out.args, ins.args):  # type: ignore[attr-defined]
                if d.key in build_args:
                    args[d.key] = build_args[d.key]
                elif raw.value is not None:
                    args[d.key] = d.value or ""
                elif d.key in meta:
                    args[d.key] = meta[d.key]
                elif d.key in platform_args:
                    args[d.key] = platform_args[d.key]
                # declared without a value: in scope but unset (expands to "")
