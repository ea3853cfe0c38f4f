"""../shared/conformance/dockerignore: every row of moby/patternmatcher's tables, 100%."""
from __future__ import annotations

import json

import pytest

from builder.context import PatternError, PatternMatcher, read_ignore_patterns
from tests.conftest import CONFORMANCE

DIR = CONFORMANCE / "dockerignore"


def _rows() -> list[dict]:
    lines = [ln for ln in (DIR / "cases.tsv").read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
    header = lines[0].split("\t")
    return [dict(zip(header, ln.split("\t"))) for ln in lines[1:] if ln]


ROWS = _rows()


def test_all_rows_loaded() -> None:
    assert len(ROWS) == 138


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['id']}-{r['test']}")
def test_case(row: dict) -> None:
    patterns = json.loads(row["patterns"])
    path = json.loads(row["path"])
    expected = row["expected"]

    def evaluate() -> bool:
        m = PatternMatcher(patterns)
        if row["api"] == "legacy_matches" and path == ".":
            return False
        return m.matches(path)

    if expected == "error":
        with pytest.raises(PatternError):
            evaluate()
        return
    assert evaluate() is (expected == "true")


def test_malformed_pattern_errors_on_repeated_calls() -> None:
    m = PatternMatcher(["[Local-Only]/"])  # constructs
    for _ in range(2):
        with pytest.raises(PatternError):
            m.matches("x")


@pytest.mark.parametrize("case", json.loads((DIR / "constructor.json").read_text())["cases"],
                         ids=lambda c: c["test"])
def test_constructor(case: dict) -> None:
    if case.get("error"):
        with pytest.raises(PatternError):
            PatternMatcher(case["patterns"])
        return
    m = PatternMatcher(case["patterns"])
    if "pattern_count" in case:
        assert len(m.patterns) == case["pattern_count"]
    if "has_exclusions" in case:
        assert m.has_exclusions is case["has_exclusions"]


@pytest.mark.parametrize("case", json.loads((DIR / "readall.json").read_text())["cases"])
def test_readall(case: dict) -> None:
    assert read_ignore_patterns(case["input"]) == case["expected"]
