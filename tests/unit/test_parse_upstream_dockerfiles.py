"""Dockerfile lines from BuildKit's and buildx's repositories that BuildKit accepts and pybuild
refused before (issue 19: every Dockerfile of those repositories that BuildKit parses must parse).

The excerpts are a few lines each, quoted with their source path; both projects are
Apache-2.0 (github.com/moby/buildkit, github.com/docker/buildx). The whole sweep (all 78
Dockerfiles of both trees plus the 338 Dockerfiles embedded in BuildKit's frontend tests) was
run by hand with `pybuild parse`; the only ones left failing are those BuildKit itself rejects
(parser/testfiles-negative/*, parser/testfiles/flags and health — checked with
`docker buildx build --call=check` — and the labs-only `RUN --device`).
"""
from __future__ import annotations

import pytest

from builder.dockerfile import parse_dockerfile
from builder.errors import DockerfileError
from builder.plan.planner import plan

# (source path, excerpt)
ACCEPTED = [
    # buildkit: Dockerfile (and buildx: Dockerfile) — a bind mount from a stage, no target
    ("moby/buildkit:Dockerfile", "FROM alpine AS binaries\nFROM alpine\n"
     "RUN --mount=from=binaries \\\n    cp -r . /out\n"),
    # buildkit: vendor/github.com/tonistiigi/go-csvvalue/Dockerfile — target before type,
    # and a bare `type=bind` with neither source nor target
    ("moby/buildkit:vendor/github.com/tonistiigi/go-csvvalue/Dockerfile",
     "FROM golang AS build\nRUN --mount=target=/root/.cache,type=cache \\\n"
     "    --mount=type=bind xx-go build .\n"),
    # buildkit: frontend/dockerfile/dockerfile_mount_test.go (testMountArg) — a mount type from an ARG
    ("moby/buildkit:frontend/dockerfile/dockerfile_mount_test.go",
     "FROM busybox\nARG MNT_TYPE=cache\nRUN --mount=type=$MNT_TYPE,target=/mycache2 touch /mycache2/foo\n"),
    # buildkit: frontend/dockerfile/dockerfile_mount_test.go (testMountEnvAcrossStages) — from ENV
    ("moby/buildkit:frontend/dockerfile/dockerfile_mount_test.go",
     "FROM busybox as stage1\nENV MNT_ID=mycache\nENV MNT_TYPE2=cache\n"
     "RUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/cbacba [ -f /cbacba/foo ]\n"
     "FROM stage1\nRUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/whatever [ -f /whatever/foo ]\n"),
    # buildx: hack/dockerfiles/*.Dockerfile — relative targets, rw as a bare word, ro
    ("docker/buildx:hack/dockerfiles/lint.Dockerfile",
     "FROM golang\nRUN --mount=target=. --mount=target=.,rw --mount=type=bind,target=.,ro true\n"),
]


@pytest.mark.parametrize("source,text", ACCEPTED, ids=[f"{i}-{s.split(':')[-1]}" for i, (s, _) in enumerate(ACCEPTED)])
def test_upstream_excerpt_parses_and_plans(source: str, text: str) -> None:
    df = parse_dockerfile(text)
    graph = plan(df)
    assert graph.stages


def _mounts(text: str):
    g = plan(parse_dockerfile(text))
    return [m for st in g.stages for s in st.steps for m in getattr(s.op, "mounts", ())]


def test_mount_without_target_is_a_workdir_bind_from_the_stage() -> None:
    (m,) = _mounts("FROM alpine AS binaries\nFROM alpine\nRUN --mount=from=binaries true\n")
    assert m.type == "bind" and m.target == "" and m.readonly and m.source_from.stage == 0


def test_mount_type_and_id_from_arg_and_env_are_expanded_before_checking() -> None:
    ms = _mounts("FROM busybox\nARG T=cache\nENV I=mine\nRUN --mount=type=$T,id=$I,target=/c true\n")
    assert [(m.type, m.id, m.target, m.readonly) for m in ms] == [("cache", "mine", "/c", False)]


def test_mount_type_from_arg_still_checked_with_the_line() -> None:
    with pytest.raises(DockerfileError, match="unsupported mount type 'bogus'") as e:
        plan(parse_dockerfile("FROM busybox\nARG T=bogus\nRUN --mount=type=$T,target=/c true\n"))
    assert e.value.span is not None and e.value.span.line == 3


def test_mount_from_with_a_variable_is_refused_as_buildkit_does() -> None:
    # BuildKit: "'from' doesn't support variable expansion, define alias stage instead"
    with pytest.raises(DockerfileError, match="doesn't support variable expansion"):
        parse_dockerfile("FROM busybox\nARG ttt=x\nRUN --mount=from=$ttt,type=cache,target=/tmp true\n")
