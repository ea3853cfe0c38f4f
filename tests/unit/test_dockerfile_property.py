"""Property: parsing arbitrary text raises nothing but DockerfileError (never a crash)."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.dockerfile import parse_dockerfile
from builder.dockerfile.lexer import KEYWORDS
from builder.dockerfile.lint import lint
from builder.dockerfile.stages import expanded_instructions, split_stages, stage_dependencies
from builder.errors import DockerfileError

# Pieces that exercise the tricky paths: keywords, flags, JSON, quotes, escapes, heredocs,
# continuations, directives, variables.
PIECES = st.sampled_from([*KEYWORDS, *(k.lower() for k in KEYWORDS), "--from=", "--mount=type=cache,target=/x",
                          "--x", "--", "[", "]", '"', "'", ",", "\\", "`", "\n", "\\\n", " ", "\t", "#", "# escape=`\n",
                          "# check=skip=all\n", "<<EOF", "<<-'E'", "EOF", "$X", "${X:-y}", "${X", "=", "AS", "a", "0",
                          "CMD", "NONE", "\r", "\ufeff", "\x00", "é"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PIECES, max_size=40).map("".join) | st.text(max_size=200))
def test_parse_raises_only_dockerfile_errors(text: str) -> None:
    try:
        df = parse_dockerfile(text)
        lint(df)
        _, stages = split_stages(df)
        stage_dependencies(stages)
        for s in stages:
            list(expanded_instructions(s, {}, {"X": "1"}))
    except DockerfileError as e:
        assert e.render()
