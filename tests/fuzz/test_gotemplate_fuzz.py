"""Any --format text either parses or is a TemplateParseError; executing a parsed template over
inspect-like data either renders or raises TemplateError: never another exception (a traceback)."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.gotemplate import TemplateError, TemplateParseError, parse

DATA = {"A": {"B": [1, "x", None, 2.5, True]}, "S": "str", "N": 3, "L": ["a", "b"], "M": {"k": "v"}, "Z": None}
PIECES = st.sampled_from([
    "{{", "}}", "{{-", " -}}", ".A", ".B", ".S", ".N", ".L", ".M", ".Z", "$", "$x", ":=", "=", "|", "(", ")", ",",
    "range", "if", "else", "end", "with", "break", "continue", "json", "index", "printf", "len", "slice", "eq",
    "lt", "and", "or", "not", "join", "split", "title", "pad", "truncate", "print", "println",
    '"%*d%v%q%-5s%.2f%x%.*s"', '"a"', "'c'", "`r`", "1", "-2", "1.5e3", "0x1f", " ", "\n", "/*", "*/", "true",
    "nil", "\\", '"', "}", "{", ".", "$.A", "$x.B", "html", "urlquery", "define", "template"])


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(PIECES, max_size=30).map("".join))
def test_template_errors_are_always_ours(text):
    try:
        tpl = parse(text)
    except TemplateParseError:
        return
    try:
        assert isinstance(tpl.execute(DATA), str)
    except TemplateError:
        pass
