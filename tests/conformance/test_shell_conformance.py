"""BuildKit's shell-lexer tables (../shared/conformance/shell/) run against builder.dockerfile.expand.

Each row is its own test. Rules for reading the files are in shell/FORMAT.md.
"""
from __future__ import annotations

import json

import pytest

from builder.dockerfile.expand import ExpansionError, env_from_list, expand, expand_word, expand_words
from tests.conftest import CONFORMANCE

SHELL = CONFORMANCE / "shell"
ENV_VAR_ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _env_var_rows():
    rows = []
    for n, raw in enumerate(SHELL.joinpath("envVarTest").read_text(encoding="utf-8").split("\n"), 1):
        if raw.startswith("#"):
            continue
        line = raw.strip()
        if not line:
            continue
        plat, src, want = (p.strip() for p in line.split("|"))
        if plat == "W":
            continue  # Windows-only rows: env names are case-insensitive there
        rows.append(pytest.param(src, want, id=f"L{n}:{src}"))
    return rows


@pytest.mark.parametrize("src,want", _env_var_rows())
def test_env_var_table(src: str, want: str) -> None:
    if want == "error":
        with pytest.raises(ExpansionError):
            expand_word(src, ENV_VAR_ENV)
    else:
        assert expand_word(src, ENV_VAR_ENV) == want


def _words_rows():
    rows = []
    env: dict[str, str] = {}
    for n, raw in enumerate(SHELL.joinpath("wordsTest").read_text(encoding="utf-8").split("\n"), 1):
        if raw.startswith("#") or raw == "":
            continue
        if raw.startswith("ENV "):
            k, _, v = raw[4:].lstrip(" ").partition("=")
            env = {**env, k: v}
            continue
        src, want = raw.split("|")
        want = want.lstrip(" ")
        rows.append(pytest.param(src.strip(), want, dict(env), id=f"L{n}:{src.strip()}"))
    return rows


@pytest.mark.parametrize("src,want,env", _words_rows())
def test_words_table(src: str, want: str, env: dict) -> None:
    if want == "error":
        with pytest.raises(ExpansionError):
            expand_words(src, env)
    else:
        assert expand_words(src, env) == want.split(",")


LEX = json.loads(SHELL.joinpath("lex-cases.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", LEX["process_with_matches"], ids=lambda c: c["input"])
def test_process_with_matches(case: dict) -> None:
    if case.get("error"):
        with pytest.raises(ExpansionError):
            expand(case["input"], case["envs"])
        return
    r = expand(case["input"], case["envs"])
    assert r.result == case["expected"]
    assert set(r.matched) == set(case["matched"])
    assert set(r.unmatched) == set(case["unmatched"])


@pytest.mark.parametrize("case", LEX["mandatory_env_vars"], ids=lambda c: c["input"] + "|" + ",".join(c["env_list"]))
def test_mandatory_env_vars(case: dict) -> None:
    env = env_from_list(case["env_list"])
    if "error_contains" in case:
        with pytest.raises(ExpansionError, match=case["error_contains"]):
            expand_word(case["input"], env)
    else:
        assert expand_word(case["input"], env) == case["expected"]


@pytest.mark.parametrize("case", LEX["platform"], ids=lambda c: c["expected"])
def test_platform_nested(case: dict) -> None:
    assert expand_word(case["input"], case["envs"]) == case["expected"]


@pytest.mark.parametrize("case", LEX["env_list_lookup"], ids=lambda c: ",".join(c["env_list"]) + ":" + c["name"])
def test_env_list_lookup(case: dict) -> None:
    assert env_from_list(case["env_list"]).get(case["name"], "") == case["value"]
