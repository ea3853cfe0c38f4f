"""The config instructions' effect on an image config (ENV, LABEL, CMD, ENTRYPOINT, USER,
WORKDIR, …, pure) and the history entries BuildKit writes for every step (`created_by`, with
its `buildkit.dockerfile.v0` comment).

Must not: execute anything or touch the store (the solver and `pybuild import --change` call it).
"""
from __future__ import annotations

import os

from builder.oci.config import History, ImageConfig
from builder.plan import cachekey as ck
from builder.plan.graph import ConfigOp, CopyOp, RunOp, Step
from runtime.record import replace


def _created_by(step: Step, workdir: str = "") -> str:
    """History `created_by` as BuildKit writes it (the planner formats most: step.history)."""
    op = step.op
    if isinstance(op, RunOp):
        args = [f"{k}={v}" for k, v in step.history_args if k not in ck.PROXY_ARGS]
        prefix = f"|{len(args)} {' '.join(args)} " if args else ""
        argv = op.argv
        if op.heredocs and len(argv) == 1 and argv[0].startswith("/dev/pipes/"):
            argv = ("/bin/sh", "-c") + argv  # a heredoc script with its own #! (BuildKit's record)
        return f"RUN {prefix}{' '.join(argv)} # buildkit"
    if isinstance(op, ConfigOp) and op.name == "WORKDIR":
        return f"WORKDIR {workdir}"
    text = step.history or step.text
    if isinstance(op, CopyOp):
        return f"{text} # buildkit"
    return text


# BuildKit's Dockerfile frontend marks every history entry it writes with this comment.
HISTORY_COMMENT = "buildkit.dockerfile.v0"


def _history(created: str | None, step: Step, workdir: str = "") -> History:
    return History(created=created, created_by=_created_by(step, workdir), comment=HISTORY_COMMENT)


def _set_env(env: tuple[str, ...], key: str, value: str) -> tuple[str, ...]:
    out = list(env)
    for i, e in enumerate(out):
        if e.split("=", 1)[0] == key:
            out[i] = f"{key}={value}"
            return tuple(out)
    return tuple(out) + (f"{key}={value}",)


def apply_config(cfg: ImageConfig, op: ConfigOp, cmd_set: bool) -> tuple[ImageConfig, bool]:
    """A config-only instruction's effect on the image config (pure)."""
    c = cfg.config
    n, v = op.name, op.value
    if n == "ENV":
        env = c.env
        for k, val in v:  # type: ignore[union-attr]
            env = _set_env(env, k, val)
        return cfg.with_config(env=env), cmd_set
    if n == "LABEL":
        return cfg.with_config(labels={**(c.labels or {}), **dict(v)}), cmd_set  # type: ignore[arg-type]
    if n == "EXPOSE":
        ports = dict(c.exposed_ports or {})
        for p in v:  # type: ignore[union-attr]
            ports[p if "/" in p else f"{p}/tcp"] = {}
        return cfg.with_config(exposed_ports=ports), cmd_set
    if n == "VOLUME":
        vols = dict(c.volumes or {})
        for p in v:  # type: ignore[union-attr]
            vols[p] = {}
        return cfg.with_config(volumes=vols), cmd_set
    if n == "USER":
        return cfg.with_config(user=v), cmd_set
    if n == "WORKDIR":
        # as BuildKit: an absolute path is stored as written (a trailing slash stays); a
        # relative one is joined to the current directory and cleaned
        if str(v).startswith("/"):
            return cfg.with_config(working_dir=v), cmd_set
        base = c.working_dir or "/"
        path = os.path.normpath(os.path.join(base, v))  # type: ignore[arg-type]
        return cfg.with_config(working_dir=path), cmd_set
    if n == "CMD":
        return cfg.with_config(cmd=tuple(v) or None), True  # type: ignore[arg-type]  # CMD [] clears it
    if n == "ENTRYPOINT":
        return cfg.with_config(entrypoint=tuple(v), cmd=c.cmd if cmd_set else None), cmd_set  # type: ignore[arg-type]
    if n == "SHELL":
        return cfg.with_config(shell=tuple(v)), cmd_set  # type: ignore[arg-type]
    if n == "HEALTHCHECK":
        return cfg.with_config(healthcheck=dict(v)), cmd_set  # type: ignore[arg-type]
    if n == "STOPSIGNAL":
        return cfg.with_config(stop_signal=v), cmd_set
    if n == "ONBUILD":
        return cfg.with_config(on_build=c.on_build + (v,)), cmd_set  # type: ignore[operator]
    if n == "MAINTAINER":
        return replace(cfg, author=v), cmd_set
    return cfg, cmd_set  # ARG: history only
