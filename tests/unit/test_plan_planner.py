"""The planner: stages, --target pruning, ARG/ENV scoping as BuildKit does it, ONBUILD, SHELL."""
from __future__ import annotations

import pytest

from builder.dockerfile import parse_dockerfile
from builder.errors import InstructionError
from builder.oci.config import ContainerConfig, ImageConfig
from builder.plan.graph import BaseOp, ConfigOp, CopyOp, RunOp
from builder.plan.planner import plan


def P(text: str, **kw):
    return plan(parse_dockerfile(text, "Dockerfile"), **kw)


def base_cfg(env=("PATH=/bin", "HOME=/root"), on_build=(), shell=None):
    return ImageConfig("amd64", "linux", ContainerConfig(env=tuple(env), on_build=tuple(on_build), shell=shell))


def test_stages_target_and_needed() -> None:
    g = P("FROM busybox AS a\nRUN a\nFROM busybox AS b\nRUN b\nFROM scratch AS c\nCOPY --from=a /x /x\n")
    assert [s.name for s in g.stages] == ["a", "b", "c"]
    assert g.target == 2 and g.needed() == [0, 2]  # b is not needed
    assert g.waves() == [[0], [2]]
    g = P("FROM busybox AS a\nRUN a\nFROM busybox AS b\nRUN b\n", target="a")
    assert g.needed() == [0]
    with pytest.raises(InstructionError, match="target stage 'zzz'"):
        P("FROM scratch AS a\n", target="zzz")


def test_parallel_waves_for_independent_stages() -> None:
    g = P("FROM busybox AS a\nRUN a\nFROM busybox AS b\nRUN b\nFROM scratch\nCOPY --from=a /x /x\n"
          "COPY --from=b /y /y\n")
    assert g.waves() == [[0, 1], [2]]


def test_from_a_stage_and_by_index() -> None:
    g = P("FROM busybox AS base\nENV X=1\nFROM base\nRUN echo $X\nCOPY --from=0 /a /b\n")
    st = g.stages[1]
    assert st.steps[0].op == BaseOp(stage=0)
    run = st.steps[1].op
    assert isinstance(run, RunOp) and run.argv == ("/bin/sh", "-c", "echo $X")
    assert st.steps[2].op.source_from.stage == 0


def test_meta_args_reach_from_only_unless_redeclared() -> None:
    g = P("ARG TAG=1.0\nARG IMG=busybox\nFROM $IMG:$TAG\nRUN echo $TAG\nARG TAG\nRUN echo $TAG\n",
          base_config=lambda ref: base_cfg())
    st = g.stages[0]
    assert st.steps[0].op.image == "busybox:1.0"
    assert st.steps[1].args == ()  # not re-declared yet: not in scope
    assert ("TAG", "1.0") in st.steps[3].args  # re-declared without value: the meta default


def test_build_arg_overrides_default_and_a_later_arg_beats_env() -> None:
    # BuildKit: an ARG declared after an ENV of its name wins in expansion (checked against
    # the reference: ENV W=env / ARG W=arg / ENV Z=$W gives Z=arg); an ENV after the ARG wins
    g = P("FROM scratch\nARG V=default\nENV W=env\nARG W=arg\nCOPY $V $W /dst/\nENV W=again\nCOPY $W /d2/\n",
          build_args={"V": "given"})
    cp = g.stages[0].steps[4].op
    assert isinstance(cp, CopyOp) and cp.sources == ("given", "arg")
    assert g.stages[0].steps[-1].op.sources == ("again",)


def test_base_image_env_is_in_scope_and_unused_args_reported() -> None:
    g = P("FROM img\nWORKDIR $HOME/app\n", build_args={"NOPE": "1"}, base_config=lambda ref: base_cfg())
    wd = g.stages[0].steps[1].op
    assert wd == ConfigOp("WORKDIR", "/root/app")
    assert g.unused_args == ("NOPE",)


def test_proxy_args_usable_without_declaration() -> None:
    g = P("FROM scratch\nRUN true\n", build_args={"http_proxy": "http://p:1"})
    assert ("http_proxy", "http://p:1") in g.stages[0].steps[1].args
    assert g.unused_args == ()


def test_shell_wraps_later_shell_form_runs_and_exec_form_is_untouched() -> None:
    g = P('FROM scratch\nSHELL ["/bin/bash", "-euc"]\nRUN echo hi\nRUN ["/bin/true", "x"]\nCMD echo c\n')
    steps = g.stages[0].steps
    assert steps[2].op.argv == ("/bin/bash", "-euc", "echo hi")
    assert steps[3].op.argv == ("/bin/true", "x") and not steps[3].op.shell_form
    assert steps[4].op == ConfigOp("CMD", ("/bin/bash", "-euc", "echo c"), True)


def test_onbuild_triggers_of_the_base_run_first() -> None:
    def trig(text):
        return parse_dockerfile(f"FROM scratch\n{text}\n").instructions[1:]

    g = P("FROM parent\nRUN mine\n", base_config=lambda ref: base_cfg(on_build=("RUN trigger",)),
          parse_trigger=trig)
    steps = g.stages[0].steps
    assert steps[1].onbuild and steps[1].op.argv[-1] == "trigger"
    assert steps[2].op.argv[-1] == "mine"


def test_platform_other_than_target_is_refused_without_a_normalizer() -> None:
    with pytest.raises(InstructionError, match="not supported"):
        P("FROM --platform=linux/arm64 scratch\n")


def test_from_platform_pins_the_stage_and_the_automatic_args() -> None:
    df = ("FROM --platform=$BUILDPLATFORM scratch AS build\nARG TARGETARCH BUILDARCH\nRUN x\n"
          "FROM build AS again\nRUN y\nFROM scratch\nARG TARGETPLATFORM\nCOPY --from=again / /\n")
    g = P(df, platform="linux/arm64", build_platform="linux/amd64", normalize_platform=lambda s: s)
    assert g.platform_of(0) == "linux/amd64" and g.platform_of(1) == "linux/amd64"
    assert g.platform_of(2) == "linux/arm64"
    assert dict(g.stages[0].steps[1].args) == {"TARGETARCH": "arm64", "BUILDARCH": "amd64"}
    assert dict(g.stages[2].steps[1].args) == {"TARGETPLATFORM": "linux/arm64"}


def test_from_platform_malformed_is_a_dockerfile_error() -> None:
    def norm(s):
        raise ValueError(f"invalid platform {s!r}")
    with pytest.raises(InstructionError, match="FROM --platform: invalid platform"):
        P("FROM --platform=linux/ scratch\n", normalize_platform=norm)


def test_run_mount_and_network_flags() -> None:
    g = P("FROM scratch AS src\nFROM scratch\nRUN --network=none --mount=type=cache,target=/c,id=x,sharing=locked "
          "--mount=type=secret,id=tok --mount=type=bind,from=src,target=/s true\n")
    run = g.stages[1].steps[1].op
    assert run.network == "none"
    cache, secret, bind = run.mounts
    assert (cache.type, cache.id, cache.sharing, cache.target) == ("cache", "x", "locked", "/c")
    assert (secret.type, secret.id, secret.target) == ("secret", "tok", "/run/secrets/tok")
    assert bind.source_from.stage == 0
    assert g.stages[1].deps == (0,)


@pytest.mark.parametrize("word, ports", [
    ("80", ["80/tcp"]), ("53/udp", ["53/udp"]), ("53/UDP", ["53/udp"]), ("9/sctp", ["9/sctp"]),
    ("8000-8002", ["8000/tcp", "8001/tcp", "8002/tcp"]), ("7-8/udp", ["7/udp", "8/udp"]),
    ("80/", ["80/tcp"]), ("8080:80", ["80/tcp"]), ("127.0.0.1:8080:80/udp", ["80/udp"]),
])
def test_expose_reads_ports_as_docker_does(word, ports) -> None:
    g = P(f"ARG P={word}\nFROM scratch\nARG P\nEXPOSE $P 1\n")
    assert g.stages[0].steps[-1].op == ConfigOp("EXPOSE", (*ports, "1/tcp"))


@pytest.mark.parametrize("word, message", [
    ("abc", "invalid containerPort: abc"), ("80/xyz", "invalid proto: xyz"),
    ("90-80", "invalid range specified for containerPort: 90-80"), ("70000", "invalid containerPort: 70000"),
    ("a:80", "invalid hostPort: a"), ("80:", "no port specified"),
])
def test_expose_rejects_what_docker_rejects(word, message) -> None:
    with pytest.raises(InstructionError, match=f"EXPOSE: {message}") as e:
        P(f"FROM scratch\nEXPOSE {word}\n")
    assert e.value.span is not None and e.value.span.line == 2
