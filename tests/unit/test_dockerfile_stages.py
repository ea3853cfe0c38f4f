"""Stages, meta ARGs in FROM, --build-arg overrides, the stage DAG, and per-instruction scope."""
from __future__ import annotations

import pytest

from builder.dockerfile import ast as A
from builder.dockerfile import parse_dockerfile
from builder.dockerfile.stages import (expanded_instructions, meta_env, resolve_from, split_stages,
                                       stage_dependencies)
from builder.errors import InstructionError

DF = """\
ARG BASE=alpine
ARG TAG=3.${MINOR:-19}
FROM ${BASE}:${TAG} AS Build
ARG TAG
ARG OTHER=o
ENV A=1 B=$A
ENV C=$A
RUN make
FROM build AS test
COPY --from=0 /x /y
FROM scratch
COPY --from=test /r /r
RUN --mount=from=build,target=/m true
COPY --from=docker.io/library/busybox /bin/sh /sh
"""


def test_split_and_resolve() -> None:
    meta, stages = split_stages(parse_dockerfile(DF))
    assert [a.args[0].key for a in meta] == ["BASE", "TAG"]
    assert [(s.index, s.name) for s in stages] == [(0, "build"), (1, "test"), (2, None)]
    assert resolve_from(stages[0], meta, {}) == "alpine:3.19"
    assert resolve_from(stages[0], meta, {"TAG": "edge", "MINOR": "x"}) == "alpine:edge"
    # MINOR is not a declared meta ARG, so a --build-arg for it is ignored (as BuildKit does).
    assert resolve_from(stages[0], meta, {"MINOR": "20"}) == "alpine:3.19"
    assert meta_env(meta, {}, {"TARGETARCH": "amd64"}) == {"TARGETARCH": "amd64", "BASE": "alpine", "TAG": "3.19"}


def test_dependencies() -> None:
    _, stages = split_stages(parse_dockerfile(DF))
    assert stage_dependencies(stages) == {0: set(), 1: {0}, 2: {0, 1}}


def test_scope_env_sees_before_arg_after_declaration() -> None:
    meta, stages = split_stages(parse_dockerfile(DF))
    steps = list(expanded_instructions(stages[0], {"PATH": "/bin"}, {"OTHER": "cli", "HTTP_PROXY": "p"}, meta))
    arg_tag, arg_other, env1, env2, run = steps
    assert dict(arg_tag.args) == {"HTTP_PROXY": "p"}  # nothing declared yet
    assert env1.instruction.pairs[1].value == ""  # B=$A: A is not set before this ENV
    assert env2.instruction.pairs[0].value == "1"
    assert dict(run.args) == {"HTTP_PROXY": "p", "TAG": "3.19", "OTHER": "cli"}  # meta value inherited; build-arg wins
    assert dict(run.env) == {"PATH": "/bin", "A": "1", "B": "", "C": "1"}


def test_env_overrides_arg_and_platform_args_need_declaration() -> None:
    df = parse_dockerfile("FROM a\nWORKDIR /$TARGETARCH\nARG TARGETARCH\nARG X=arg\nENV X=env\nWORKDIR /$X/$TARGETARCH\n")
    _, (st,) = split_stages(df)
    steps = list(expanded_instructions(st, {}, {}, (), {"TARGETARCH": "arm64"}))
    assert steps[0].instruction.path == "/" and steps[-1].instruction.path == "/env/arm64"


@pytest.mark.parametrize("text,msg", [
    ("FROM a AS x\nFROM b AS X\n", "duplicate stage name"),
    ("FROM a\nCOPY --from=5 / /\n", "invalid stage index 5"),
    ("FROM a\nCOPY --from=0 / /\n", "cannot refer to itself"),
    ("FROM a AS one\nCOPY --from=two / /\nFROM b AS two\nCOPY --from=one / /\n", "circular dependency"),
    ("RUN x\nFROM a\n", "before the first FROM"),
    ("ARG x\n", "no build stage"),
])
def test_stage_errors(text: str, msg: str) -> None:
    with pytest.raises(InstructionError, match=msg) as e:
        stage_dependencies(split_stages(parse_dockerfile(text))[1])
    assert e.value.span is not None


def test_blank_base_is_an_error() -> None:
    meta, (st,) = split_stages(parse_dockerfile("ARG IMG\nFROM $IMG\n"))
    with pytest.raises(InstructionError, match="should not be blank"):
        resolve_from(st, meta, {})
    assert isinstance(st.from_, A.From)
