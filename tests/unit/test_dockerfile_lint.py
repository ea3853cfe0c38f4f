"""Each lint rule fires (and only where it should), `# check=skip=`, and `--check` via the CLI."""
from __future__ import annotations

import json

import pytest

from builder.dockerfile import parse_dockerfile
from builder.dockerfile.lint import LintError, enforce, lint
from tests.conftest import run_cli


def rules(text: str, **kw) -> list[tuple[str, int]]:
    return [(w.rule, w.span.line) for w in lint(parse_dockerfile(text), **kw)]


@pytest.mark.parametrize("text,want", [
    ("FROM a\nCMD echo hi\n", [("JSONArgsRecommended", 2)]),
    ('FROM a\nCMD ["echo"]\nENTRYPOINT ["x"]\n', []),
    ("FROM a AS Build\n", [("StageNameCasing", 1)]),
    ("FROM a as b\n", [("FromAsCasing", 1)]),
    ("from a AS b\n", [("FromAsCasing", 1)]),
    ("FROM a AS b\nFROM c AS b\n", [("DuplicateStageName", 2)]),
    ("FROM a\nRUN true\nCOPY $NOPE /x\n", [("UndefinedVar", 3)]),
    ("FROM a\nARG X\nENV Y=1\nCOPY $X$Y$PATH /x\n", []),
    ("FROM $IMG\n", [("UndefinedArgInFrom", 1)]),
    ("ARG IMG=a\nFROM $IMG\nFROM --platform=$BUILDPLATFORM b\n", []),
    ("FROM a\nMAINTAINER me\n", [("MaintainerDeprecated", 2)]),
    ("FROM a\nrun true\nRUN true\nRUN true\n", [("ConsistentInstructionCasing", 2)]),
    ("FROM a\nWORKDIR app\n", [("WorkdirRelativePath", 2)]),
    ("FROM a\nWORKDIR /srv\nWORKDIR app\n", []),
    ("FROM a\nARG GITHUB_TOKEN\nENV DB_PASSWORD=x\nENV PUBLIC_KEY=y\n",
     [("SecretsUsedInArgOrEnv", 2), ("SecretsUsedInArgOrEnv", 3)]),
    ('FROM a\nCMD ["a"]\nCMD ["b"]\nHEALTHCHECK NONE\nHEALTHCHECK NONE\nFROM b\nCMD ["c"]\n',
     [("MultipleInstructionsDisallowed", 2), ("MultipleInstructionsDisallowed", 4)]),
    ("FROM a\nRUN a \\\n\n b\n", [("NoEmptyContinuation", 4)]),
])
def test_rules(text: str, want: list) -> None:
    assert rules(text) == want


def test_undefined_var_suggests_close_name() -> None:
    (w,) = lint(parse_dockerfile("FROM a\nARG VERSION\nCOPY app-$VERSON /x\n"))
    assert w.rule == "UndefinedVar" and w.message == "Usage of undefined variable '$VERSON' (did you mean $VERSION?)"


def test_warning_has_url_and_span() -> None:
    (w,) = lint(parse_dockerfile("FROM a\nCMD x\n"))
    assert w.url == "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
    assert w.render().startswith("Dockerfile:2:1: warning: JSONArgsRecommended:")


def test_check_skip_and_error_directive() -> None:
    assert rules("# check=skip=JSONArgsRecommended\nFROM a AS B\nCMD x\n") == [("StageNameCasing", 2)]
    assert rules("# check=skip=all\nFROM a AS B\nCMD x\n") == []
    df = parse_dockerfile("# check=error=true\nFROM a\nCMD x\n")
    with pytest.raises(LintError, match="JSONArgsRecommended") as e:
        enforce(lint(df), df)
    assert e.value.span.line == 3
    clean = parse_dockerfile('FROM a\nCMD ["x"]\n')
    enforce(lint(clean), clean, force=True)  # nothing to enforce


def test_cli_lint_and_check(tmp_path) -> None:
    f = tmp_path / "Dockerfile"
    f.write_text("FROM a AS Build\nCMD x\n")
    p = run_cli("lint", "-f", str(f))
    assert p.returncode == 0 and b"StageNameCasing" in p.stderr and b"JSONArgsRecommended" in p.stderr
    p = run_cli("lint", "-f", str(f), "--check")
    assert p.returncode == 1 and f"{f}:1:1: error: lint StageNameCasing" in p.stderr.decode()
    p = run_cli("lint", "-f", str(f), "--format", "json")
    assert [json.loads(x)["rule"] for x in p.stdout.decode().splitlines()] == ["StageNameCasing", "JSONArgsRecommended"]
