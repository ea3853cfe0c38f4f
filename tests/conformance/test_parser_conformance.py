"""BuildKit's parser test data (../shared/conformance/parser*/) against builder.dockerfile.

Each case is its own test; what is compared is what each FORMAT.md says upstream compares.
"""
from __future__ import annotations

import json

import pytest

from builder.dockerfile import directives as dirs
from builder.dockerfile import lineparse as lp
from builder.dockerfile.grammar import parse_nodes
from builder.dockerfile.nodes import dump
from builder.errors import DockerfileError
from tests.conftest import CONFORMANCE, run_cli


def _cases(name: str):
    d = CONFORMANCE / name
    return sorted(p for p in d.iterdir() if p.is_dir())


def _read(path) -> str:
    return path.read_bytes().decode("utf-8", "surrogateescape")


@pytest.mark.parametrize("case", _cases("parser"), ids=lambda p: p.name)
def test_golden_dump(case) -> None:
    r = parse_nodes(_read(case / "Dockerfile"), "Dockerfile")
    assert dump(r.nodes) + "\n" == (case / "result").read_text(encoding="utf-8")


# A sample through the real entry point (every case's dump is checked in-process above).
@pytest.mark.parametrize("case", [c for c in _cases("parser") if c.name in (
    "docker", "escapes", "jeztah-invalid-json-json-inside-string", "health", "escape-nonewline")],
    ids=lambda p: p.name)
def test_golden_dump_cli(case) -> None:
    # `pybuild parse --dump` prints the same bytes through the real entry point.
    p = run_cli("parse", "--dump", "-f", str(case / "Dockerfile"))
    assert p.returncode == 0, p.stderr
    assert p.stdout == (case / "result").read_bytes()


@pytest.mark.parametrize("case", _cases("parser-negative"), ids=lambda p: p.name)
def test_negative(case) -> None:
    from builder.dockerfile import parse_dockerfile

    with pytest.raises(DockerfileError) as e:
        parse_dockerfile(_read(case / "Dockerfile"), "Dockerfile")
    out = e.value.render()
    assert out.startswith("Dockerfile:") and ": error: " in out.splitlines()[0]


@pytest.mark.parametrize("case", _cases("parser-negative"), ids=lambda p: p.name)
def test_negative_cli(case) -> None:
    p = run_cli("parse", "-f", str(case / "Dockerfile"))
    assert p.returncode == 1
    err = p.stderr.decode()
    assert err.startswith(f"{case / 'Dockerfile'}:") and ": error: " in err
    assert "Traceback" not in err


def test_line_numbers() -> None:
    d = CONFORMANCE / "parser-lines"
    want = json.loads((d / "expected.json").read_text())
    r = parse_nodes(_read(d / "Dockerfile"))
    assert [[n.line, n.end_line] for n in r.nodes] == [[c["start_line"], c["end_line"]] for c in want["children"]]
    assert [r.nodes[0].line, r.nodes[-1].end_line] == [want["root"]["start_line"], want["root"]["end_line"]]


EXTRA = CONFORMANCE / "parser-extra"


@pytest.mark.parametrize("case", json.loads((EXTRA / "words.json").read_text(encoding="utf-8"))["cases"],
                         ids=lambda c: c["input"])
def test_words(case) -> None:
    assert lp.parse_words(case["input"], "\\") == case["words"]


JA = json.loads((EXTRA / "json-arrays.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", JA["valid"], ids=lambda c: c["input"])
def test_json_arrays_valid(case) -> None:
    assert lp.parse_json(case["input"]) == case["values"]


@pytest.mark.parametrize("text", JA["not_array_of_strings_error"])
def test_json_arrays_not_strings(text) -> None:
    with pytest.raises(lp.NotStringArray, match="arrays must be comprised of strings only"):
        lp.parse_json(text)


@pytest.mark.parametrize("case", json.loads((EXTRA / "nameval.json").read_text())["cases"], ids=lambda c: c["test"])
def test_nameval(case) -> None:
    if "error" in case:
        with pytest.raises(DockerfileError, match=case["error"]):
            lp.parse_nameval(case["rest"], case["instruction"])
    else:
        flat = [x for triple in lp.parse_nameval(case["rest"], case["instruction"]) for x in triple]
        assert flat == case["values"]


@pytest.mark.parametrize("case", json.loads((EXTRA / "directives.json").read_text(encoding="utf-8"))["cases"],
                         ids=lambda c: f'{c["call"]}:{c["input"][:30]}')
def test_directives(case) -> None:
    exp = case["expect"]
    if case["call"] == "parse_all":
        got = [{"name": d.name, "value": d.value} for d in dirs.parse_all(case["input"])]
        assert got == exp["directives"]
        return
    if case["call"] == "detect_syntax":
        r = dirs.detect_syntax(case["input"])
    else:
        r = dirs.parse_directive(case["call"].split(":", 1)[1], case["input"])
    assert (r is not None) == exp["found"]
    if r is None:
        assert exp.get("ref", "") == "" and exp.get("cmdline", "") == ""
        return
    if "ref" in exp:
        assert r.ref == exp["ref"]
    if "cmdline" in exp:
        assert r.cmdline == exp["cmdline"]
    if "line" in exp:
        assert r.line == exp["line"]


def test_empty_continuation_warnings() -> None:
    d = EXTRA / "empty-continuation"
    want = json.loads((d / "expected.json").read_text())
    r = parse_nodes(_read(d / "Dockerfile"))
    assert len(r.warnings) == want["warning_count"]
    for w, needles in zip(r.warnings, want["warnings_short_contains"]):
        for s in needles:
            assert s in w.short
    assert want["first_warning_detail_contains"] in r.warnings[0].detail


HD = CONFORMANCE / "parser-heredoc"


def _heredoc_dict(h: lp.Heredoc) -> dict:
    return {"name": h.name, "fd": h.fd, "expand": h.expand, "chomp": h.chomp, "content": h.content}


@pytest.mark.parametrize("sub", ["extract", "json-form"])
def test_heredoc_extract(sub) -> None:
    want = json.loads((HD / sub / "expected.json").read_text(encoding="utf-8"))
    nodes = parse_nodes(_read(HD / sub / "Dockerfile")).nodes
    for c in want["children"]:
        got = [_heredoc_dict(h) for h in nodes[c["child"]].heredocs] or None
        assert got == c["heredocs"], c


HELPERS = json.loads((HD / "helpers.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("word", HELPERS["parse_heredoc_word"]["valid_name_is_EOF"])
def test_heredoc_word_valid(word) -> None:
    h = lp.parse_heredoc(word)
    assert h is not None and h.name == "EOF"


@pytest.mark.parametrize("word", HELPERS["parse_heredoc_word"]["error"])
def test_heredoc_word_error(word) -> None:
    with pytest.raises(DockerfileError):
        lp.parse_heredoc(word)


@pytest.mark.parametrize("word", HELPERS["parse_heredoc_word"]["not_a_heredoc"])
def test_heredoc_word_not(word) -> None:
    assert lp.parse_heredoc(word) is None


@pytest.mark.parametrize("case", HELPERS["heredocs_from_line"], ids=lambda c: c["line"])
def test_heredocs_from_line(case) -> None:
    assert [h.name for h in lp.heredocs_from_line(case["line"])] == case["names"]


@pytest.mark.parametrize("case", HELPERS["chomp"], ids=lambda c: c["input"])
def test_chomp(case) -> None:
    assert lp.chomp(case["input"]) == case["output"]
