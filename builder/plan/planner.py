"""The planner: a parsed Dockerfile + build args + target → BuildGraph of fully expanded steps.

Owns: stage splitting and naming, `FROM` resolution (meta ARGs, earlier stages by name or index,
`scratch`), BuildKit's ARG/ENV scoping (meta ARGs only reach FROM unless re-declared; ENV beats
ARG of the same name; --build-arg overrides an ARG default; undeclared build args are unused),
predefined platform ARGs, ONBUILD triggers of a base image inserted after its FROM, SHELL
wrapping of shell-form RUN, heredoc RUN scripts, and `--target` (unknown target → error).

Base image configs are needed for expansion (an image's ENV is in scope), so the caller passes
`base_config(ref) -> ImageConfig | None`; everything else is pure.

Must not: read files, touch stores or run anything.
"""
from __future__ import annotations

from collections.abc import Callable

from builder.dockerfile import ast as A
from builder.dockerfile.expand import expand_word
from builder.errors import InstructionError
from builder.plan.cachekey import PROXY_ARGS
from builder.plan.graph import BaseOp, BuildGraph, ConfigOp, CopyFrom, CopyOp, MountOp, RunOp, Stage, Step
from runtime.record import replace

DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def platform_args(platform: str) -> dict[str, str]:
    os_, _, rest = platform.partition("/")
    arch, _, variant = rest.partition("/")
    d = {"TARGETPLATFORM": platform, "TARGETOS": os_, "TARGETARCH": arch, "TARGETVARIANT": variant,
         "BUILDPLATFORM": platform, "BUILDOS": os_, "BUILDARCH": arch, "BUILDVARIANT": variant}
    return d


_PROTOCOLS = ("tcp", "udp", "sctp")


def _port_range(text: str, what: str) -> tuple[int, int]:
    lo, dash, hi = text.partition("-")
    try:
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError
        start, end = int(lo), int(hi) if dash else int(lo)
        if start > 65535 or end > 65535:
            raise ValueError
    except ValueError:
        raise ValueError(f"invalid {what}: {text}") from None
    if end < start:
        raise ValueError(f"invalid range specified for {what}: {text}")
    return start, end


def port_specs(spec: str) -> list[str]:
    """One EXPOSE word as docker reads it (go-connections nat.ParsePortSpec): `PORT[/PROTO]`,
    `START-END[/PROTO]` (one entry per port), with an optional `[IP:]HOSTPORT:` prefix that
    EXPOSE ignores. Returns `port/proto` strings; protocol tcp by default, else udp or sctp."""
    rest, _, container = spec.rpartition(":")
    if not container:
        raise ValueError(f"no port specified: {spec}")
    port, _, proto = container.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in _PROTOCOLS:
        raise ValueError(f"invalid proto: {proto}")
    start, end = _port_range(port, "containerPort")
    if rest:
        host = rest.rpartition(":")[2]
        if host:
            _port_range(host, "hostPort")
    return [f"{n}/{proto}" for n in range(start, end + 1)]


def _env_dict(env: tuple[str, ...] | list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in env:
        k, _, v = e.partition("=")
        out[k] = v
    return out


class _Scope:
    """What one stage sees while it is being planned: its env (image config) and its ARGs."""

    def __init__(self, env: dict[str, str], shell: tuple[str, ...] | None) -> None:
        self.env = dict(env)
        self.args: dict[str, str] = {}
        self.shell = tuple(shell) if shell else DEFAULT_SHELL
        self.onbuild: list[str] = []  # ONBUILD triggers this stage leaves to a stage built FROM it

    def expansion_env(self) -> dict[str, str]:
        return {**self.args, **self.env}  # ENV wins over an ARG of the same name

    def args_in_scope(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((k, v) for k, v in self.args.items() if k not in self.env))


def _split_stages(instructions: tuple) -> tuple[list, list[list]]:
    meta: list = []
    stages: list[list] = []
    for ins in instructions:
        if isinstance(ins, A.From):
            stages.append([ins])
        elif not stages:
            if not isinstance(ins, A.Arg):
                raise InstructionError(f"{ins.name} is not allowed before the first FROM (only ARG is)", ins.span)
            meta.append(ins)
        else:
            stages[-1].append(ins)
    if not stages:
        raise InstructionError("the Dockerfile has no FROM instruction", None)
    return meta, stages


def _mount_op(m: A.MountSpec, stage_index: Callable[[str], int | None]) -> MountOp:
    src_from = None
    if m.from_:
        si = stage_index(m.from_)
        src_from = CopyFrom(stage=si) if si is not None else CopyFrom(image=m.from_)
    default_target = f"/run/secrets/{m.id or m.source or ''}" if m.type == "secret" and not m.env else ""
    mid = m.id or ""
    if m.type == "secret" and not mid:
        mid = (m.target or "").rstrip("/").rsplit("/", 1)[-1]
    if m.type == "ssh" and not mid:
        mid = "default"
    return MountOp(type=m.type, target=m.target or default_target, source=m.source or "", source_from=src_from,
                   id=mid if m.type != "cache" else (m.id or m.target or ""), readonly=m.readonly,
                   sharing=m.sharing or "shared", mode=m.mode, uid=m.uid, gid=m.gid, required=m.required,
                   env=m.env or "", size=m.size)


def _run_argv(ins: A.Run, shell: tuple[str, ...]) -> tuple[tuple[str, ...], bool, tuple[tuple[str, str], ...]]:
    """(argv, shell form?, heredoc files to mount) for a RUN."""
    if not ins.prepend_shell:
        return tuple(ins.argv or ()), False, ()
    cmd = ins.command or ""
    if ins.heredocs:
        first = ins.heredocs[0]
        body = A.heredoc_contents(ins.heredocs)
        if cmd.strip().lstrip("0123456789").startswith("<<") and len(cmd.split()) == 1:
            script = body[first.name]
            if script.startswith("#!"):
                # a script with its own interpreter runs as a file, mounted from outside the
                # rootfs (BuildKit's /dev/pipes/NAME), so it never lands in the layer
                path = f"/dev/pipes/{first.name}"
                return (path,), True, ((path, script),)
            return shell + (script,), True, ()
        # a command that reads heredocs: hand the whole script (bodies included) to the shell
        parts = [cmd]
        for h in ins.heredocs:
            parts.append(h.content.rstrip("\n") if not h.chomp else body[h.name].rstrip("\n"))
            parts.append(h.name)
        return shell + ("\n".join(parts),), True, ()
    return shell + (cmd,), True, ()


def plan(df: A.Dockerfile, *, build_args: dict[str, str] | None = None, target: str | None = None,
         platform: str = "linux/amd64",
         base_config: Callable[[str], object | None] = lambda ref: None,
         parse_trigger: Callable[[str], tuple] | None = None) -> BuildGraph:
    """Plan a build. `base_config(ref)` gives an image's ImageConfig (None: unknown/scratch);
    `parse_trigger(text)` parses one ONBUILD trigger into instructions (the front end's parser)."""
    build_args = dict(build_args or {})
    used: set[str] = set()
    meta, raw_stages = _split_stages(df.instructions)
    predefined = platform_args(platform)

    meta_args: dict[str, str] = {}
    for ins in meta:
        for decl in ins.expand({**predefined, **meta_args}, df.escape).args:
            if decl.key in build_args:
                meta_args[decl.key] = build_args[decl.key]
                used.add(decl.key)
            elif decl.value is not None:
                meta_args[decl.key] = decl.value
            elif decl.key in predefined:
                meta_args[decl.key] = predefined[decl.key]

    names: dict[str, int] = {}
    stages: list[Stage] = []
    finals: list[_Scope] = []  # each stage's scope at its end (a later FROM stage inherits it)

    for si, body in enumerate(raw_stages):
        frm: A.From = body[0]

        def stage_index(ref: str, _si: int = si) -> int | None:
            low = ref.lower()
            if low in names:
                return names[low]
            if ref.isdigit():
                i = int(ref)
                if i >= _si:
                    raise InstructionError(f"stage index {i} refers to this or a later stage", None)
                return i
            return None

        base = expand_word(frm.base, {**predefined, **meta_args}, df.escape)
        if not base:
            raise InstructionError("FROM needs a base image", frm.span)
        fplat = expand_word(frm.platform, {**predefined, **meta_args}, df.escape) if frm.platform else None
        if fplat and fplat != platform:
            raise InstructionError(f"platform {fplat} is not supported (this builder builds {platform} only)",
                                   frm.span)
        base_stage = names.get(base.lower())
        triggers: tuple[str, ...] = ()
        if base_stage is not None:
            parent = finals[base_stage]
            scope = _Scope(parent.env, parent.shell)
            # As BuildKit does: inheriting a stage runs its ONBUILD triggers, as if the stage had
            # been built into an image first and that image used as the base.
            triggers = tuple(parent.onbuild)
            base_op = BaseOp(stage=base_stage)
        elif base.lower() == "scratch":
            scope = _Scope(_env_dict((DEFAULT_PATH,)), None)
            base_op = BaseOp(image="scratch")
        else:
            cfg = base_config(base)
            env = tuple(cfg.config.env) if cfg is not None else ()
            if not any(e.startswith("PATH=") for e in env):
                env = (DEFAULT_PATH,) + env
            scope = _Scope(_env_dict(env), cfg.config.shell if cfg is not None else None)
            triggers = tuple(cfg.config.on_build) if cfg is not None else ()
            base_op = BaseOp(image=base, platform=fplat)

        items: list = [frm]
        if triggers:
            if parse_trigger is None:
                raise InstructionError(f"base image {base} has ONBUILD triggers but no parser was given", frm.span)
            for t in triggers:
                items.extend(("onbuild", ins) for ins in parse_trigger(t))
        items.extend(body[1:])

        steps: list[Step] = []
        for pos, item in enumerate(items, start=1):
            onbuild = isinstance(item, tuple)
            ins = item[1] if onbuild else item
            if pos == 1:
                steps.append(Step(base_op, si, 1, frm.original, frm.span))
                continue
            if isinstance(ins, A.Arg):
                for decl in ins.expand(scope.expansion_env(), df.escape).args:
                    if decl.key in build_args:
                        scope.args[decl.key] = build_args[decl.key]
                        used.add(decl.key)
                    elif decl.value is not None:
                        scope.args[decl.key] = decl.value
                    elif decl.key in meta_args:
                        scope.args[decl.key] = meta_args[decl.key]
                    elif decl.key in predefined:
                        scope.args[decl.key] = predefined[decl.key]
                steps.append(Step(ConfigOp("ARG", ()), si, pos, ins.original, ins.span, scope.args_in_scope(), onbuild))
                continue
            x = ins.expand(scope.expansion_env(), df.escape)
            op = _op_for(x, scope, stage_index, si)
            if isinstance(x, A.Env):
                for kv in x.pairs:
                    scope.env[kv.key] = kv.value
            if isinstance(x, A.Onbuild) and not onbuild:
                scope.onbuild.append(x.expression)
            steps.append(Step(op, si, pos, ins.original, ins.span, scope.args_in_scope(), onbuild))
            if isinstance(x, A.Shell):
                scope.shell = tuple(x.shell)

        if frm.stage_name:
            low = frm.stage_name.lower()
            if low in names:
                raise InstructionError(f"duplicate stage name {frm.stage_name!r}", frm.span)
            names[low] = si
        stages.append(Stage(si, frm.stage_name, tuple(steps)))
        finals.append(scope)

    if target is None:
        tgt = len(stages) - 1
    else:
        if target.lower() not in names:
            raise InstructionError(f"target stage {target!r} could not be found", None,
                                   hint="stages: " + (", ".join(sorted(names)) or "(none are named)"))
        tgt = names[target.lower()]
    # SOURCE_DATE_EPOCH is read by the builder itself, as BuildKit does: never "unused"
    unused = tuple(sorted(k for k in build_args if k not in used and k not in PROXY_ARGS and k not in predefined
                          and k != "SOURCE_DATE_EPOCH"))
    # proxy args are usable without ARG: add them to every RUN's scope (never to cache keys)
    proxies = tuple(sorted((k, v) for k, v in build_args.items() if k in PROXY_ARGS))
    if proxies:
        stages = [replace(st, steps=tuple(replace(s, args=tuple(sorted(dict(s.args + proxies).items())))
                                          if isinstance(s.op, RunOp) else s for s in st.steps)) for st in stages]
    return BuildGraph(tuple(stages), tgt, tuple(sorted(build_args.items())), platform, unused)


def _op_for(x, scope: _Scope, stage_index, si: int):
    if isinstance(x, A.Run):
        argv, shell_form, files = _run_argv(x, scope.shell)
        net = x.network or "default"
        if net not in ("default", "none", "host"):
            raise InstructionError(f"RUN --network={net} is not supported (default, none or host)", x.span)
        return RunOp(argv, shell_form, tuple(_mount_op(m, stage_index) for m in x.mounts), net, files,
                     x.security or "sandbox")
    if isinstance(x, (A.Copy, A.Add)):
        src_from = None
        frm = getattr(x, "from_", None)
        if frm:
            idx = stage_index(frm)
            src_from = CopyFrom(stage=idx) if idx is not None else CopyFrom(image=frm)
        heredocs = tuple((c.path, c.data) for c in x.contents)
        if not x.sources and not heredocs:
            raise InstructionError(f"{x.name} needs a source and a destination", x.span)
        return CopyOp(tuple(x.sources), x.dest, src_from, x.chown, x.chmod, x.link, x.parents, tuple(x.excludes),
                      heredocs, isinstance(x, A.Add), getattr(x, "checksum", None),
                      getattr(x, "keep_git_dir", False))
    if isinstance(x, (A.Env, A.Label)):
        return ConfigOp(x.name, tuple((kv.key, kv.value) for kv in x.pairs))
    if isinstance(x, (A.Cmd, A.Entrypoint)):
        argv = scope.shell + (x.command or "",) if x.prepend_shell else tuple(x.argv or ())
        return ConfigOp(x.name, argv, x.prepend_shell)
    if isinstance(x, A.Shell):
        return ConfigOp("SHELL", tuple(x.shell))
    if isinstance(x, A.Expose):
        try:
            return ConfigOp("EXPOSE", tuple(p for spec in x.ports for p in port_specs(spec)))
        except ValueError as e:
            raise InstructionError(f"EXPOSE: {e}", x.span) from None
    if isinstance(x, A.Volume):
        return ConfigOp("VOLUME", tuple(x.volumes))
    if isinstance(x, A.User):
        return ConfigOp("USER", x.user)
    if isinstance(x, A.Workdir):
        return ConfigOp("WORKDIR", x.path)
    if isinstance(x, A.Stopsignal):
        return ConfigOp("STOPSIGNAL", x.signal)
    if isinstance(x, A.Maintainer):
        return ConfigOp("MAINTAINER", x.maintainer)
    if isinstance(x, A.Onbuild):
        return ConfigOp("ONBUILD", x.expression)
    if isinstance(x, A.Healthcheck):
        hc = {"Test": list(x.test)}
        for f, k in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod"),
                     ("start_interval", "StartInterval"), ("retries", "Retries")):
            v = getattr(x, f)
            if v is not None:
                hc[k] = v
        return ConfigOp("HEALTHCHECK", tuple(sorted(hc.items())))
    raise InstructionError(f"{x.name} is not supported", x.span)
