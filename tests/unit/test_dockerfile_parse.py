"""Typed instructions, flags, errors with locations, ONBUILD/HEALTHCHECK/heredocs, cache, imports."""
from __future__ import annotations

import subprocess
import sys

import pytest

from builder.dockerfile import ast as A
from builder.dockerfile import parse_dockerfile, parse_dockerfile_cached
from builder.errors import DockerfileError, DockerfileSyntaxError, InstructionError
from tests.conftest import REPO, run_cli


def one(text: str) -> A.Instruction:
    return parse_dockerfile("FROM scratch\n" + text).instructions[1]


def test_case_insensitive_keywords_and_original() -> None:
    df = parse_dockerfile("from alpine AS Build\nrun echo hi\n")
    f, r = df.instructions
    assert isinstance(f, A.From) and f.base == "alpine" and f.stage_name == "build"
    assert isinstance(r, A.Run) and r.command == "echo hi" and r.prepend_shell
    assert r.original == "run echo hi" and r.span.line == 2 and r.span.column == 1


def test_exec_and_shell_forms() -> None:
    c = one('CMD ["a", "b c"]')
    assert c.argv == ("a", "b c") and not c.prepend_shell
    e = one("ENTRYPOINT /bin/x -y")
    assert e.command == "/bin/x -y" and e.prepend_shell
    bad_json = one('RUN ["a", "b]')
    assert bad_json.prepend_shell and bad_json.command == '["a", "b]'


def test_continuation_comments_and_span_end_line() -> None:
    r = one("RUN a \\\n# comment\n\n  b\n")
    assert r.command == "a   b" and r.span.line == 2 and r.span.end_line == 5


def test_copy_flags_and_heredoc_sources() -> None:
    c = one("COPY --from=build --chown=1:2 --chmod=644 --link --exclude=*.md --exclude=x <<EOF a /dst/\nhi $X\nEOF\n")
    assert isinstance(c, A.Copy)
    assert (c.from_, c.chown, c.chmod, c.link, c.excludes) == ("build", "1:2", "644", True, ("*.md", "x"))
    assert c.sources == ("a",) and c.dest == "/dst/"
    assert c.contents == (A.SourceContent("EOF", "hi $X\n", True),)
    x = c.expand({"X": "1"})
    assert x.contents[0].data == "hi 1\n" and x.from_ == "build"


def test_add_flags() -> None:
    a = one("ADD --checksum=sha256:abc --keep-git-dir=true https://x/y.git /src")
    assert isinstance(a, A.Add) and a.checksum == "sha256:abc" and a.keep_git_dir and a.sources == ("https://x/y.git",)


def test_run_mounts_network_security() -> None:
    r = one("RUN --mount=type=cache,target=/root/.cache,sharing=locked --mount=type=secret,id=tok "
            "--mount=from=build,source=/out,target=/in,rw --network=none --security=insecure make")
    cache, secret, bind = r.mounts
    assert cache == A.MountSpec(type="cache", target="/root/.cache", sharing="locked", id="/root/.cache")
    assert secret.type == "secret" and secret.target == "/run/secrets/tok"
    assert bind.from_ == "build" and bind.source == "/out" and bind.readonly is False
    assert (r.network, r.security) == ("none", "insecure")


def test_run_heredoc() -> None:
    r = one("RUN <<-EOT bash\n\techo $HOME\nEOT\n")
    assert r.heredocs[0].name == "EOT" and r.heredocs[0].chomp and r.heredocs[0].content == "\techo $HOME\n"
    assert r.command == "<<-EOT bash"


def test_healthcheck() -> None:
    h = one("HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2s --start-interval=1s --retries=3 "
            "CMD curl -f http://x/")
    assert h.test == ("CMD-SHELL", "curl -f http://x/")
    assert (h.interval, h.timeout, h.start_period, h.start_interval, h.retries) == (
        90 * 10**9, 5 * 10**8, 2 * 10**9, 10**9, 3)
    assert one('HEALTHCHECK CMD ["a", "b"]').test == ("CMD", "a", "b")
    assert one("HEALTHCHECK NONE").test == ("NONE",)
    with pytest.raises(InstructionError, match="try CMD"):
        one("HEALTHCHECK FOO x")


def test_onbuild_wraps_typed_instruction() -> None:
    o = one("ONBUILD COPY --chown=1 . /app")
    assert isinstance(o, A.Onbuild) and isinstance(o.instruction, A.Copy)
    assert o.expression == "COPY --chown=1 . /app" and o.instruction.chown == "1"
    for bad, msg in [("ONBUILD ONBUILD RUN x", "Chaining"), ("ONBUILD FROM x", "isn't allowed")]:
        with pytest.raises(InstructionError, match=msg):
            one(bad)


def test_env_label_arg_forms() -> None:
    e = one('ENV A=1 B="2 3" C=\\ x')
    assert [(p.key, p.value) for p in e.pairs] == [("A", "1"), ("B", '"2 3"'), ("C", "\\ x")]
    assert [(p.key, p.value) for p in e.expand({}).pairs] == [("A", "1"), ("B", "2 3"), ("C", " x")]
    old = one("ENV K some value")
    assert old.pairs == (A.KeyValue("K", "some value", True),)
    a = one("ARG X Y=2")
    assert a.args == (A.ArgDecl("X", None), A.ArgDecl("Y", "2"))


@pytest.mark.parametrize("text,msg,col", [
    ("COPY --frm=x a b", "unknown flag: frm", 6),
    ("COPY --from a b", "Missing a value on flag: from", 6),
    ("COPY --link=maybe a b", "expecting boolean", 6),
    ("RUN --network=bridge x", "unsupported network mode", 1),
    ("COPY onlyone", "requires at least two arguments", 1),
    ("FROM a b", "one or three arguments", 1),
    ("FROM a AS 1bad", "invalid name for build stage", 1),
    ("SHELL /bin/sh -c", "JSON form", 1),
    ("WORKDIR", "exactly one argument", 1),
    ("EXPOSE", "at least one argument", 1),
    ("RUN --mount=type=cache,sharing=all x", "unsupported sharing value", 1),
    ("RUN --mount=type=bind,bogus=1,target=/x x", "unexpected key 'bogus'", 1),
    ("HEALTHCHECK --interval=fast CMD x", "--interval", 1),
])
def test_instruction_errors_have_location(text: str, msg: str, col: int) -> None:
    with pytest.raises(InstructionError, match=msg) as e:
        parse_dockerfile("FROM scratch\n" + text)
    assert e.value.span.line == 2 and e.value.span.column == col
    assert e.value.render().startswith(f"Dockerfile:2:{col}: error: ")


def test_unknown_instruction_hint_and_caret() -> None:
    with pytest.raises(InstructionError) as e:
        parse_dockerfile("FROM a\nCOPPY x y\n")
    out = e.value.render()
    assert out.splitlines() == ["Dockerfile:2:1: error: unknown instruction: COPPY", "    2 | COPPY x y",
                                "      | ^^^^^", "hint: did you mean COPY?"]


@pytest.mark.parametrize("text,msg", [
    ("", "file with no instructions"), ("# only\n\n", "file with no instructions"),
    ("# escape=x\nFROM a\n", "invalid escape token"), ("# escape=`\n# escape=\\\nFROM a", "only one escape"),
    ("FROM a\nRUN <<EOF\nnever ends\n", "unterminated heredoc"), ("FROM a\nENV PATH\n", "two arguments"),
    ('FROM a\nCMD ["a", 1]\n', "strings only"), ("FROM a\nENV a=b c\n", "can't find ="),
])
def test_syntax_errors(text: str, msg: str) -> None:
    with pytest.raises(DockerfileError, match=msg) as e:
        parse_dockerfile(text)
    assert e.value.span is not None and e.value.render().startswith("Dockerfile:")


def test_escape_directive_backtick() -> None:
    df = parse_dockerfile("# escape=`\nFROM a\nRUN dir c:\\ `\n  /b\n")
    assert df.directives.escape == "`" and df.instructions[1].command == "dir c:\\   /b"


def test_check_directive() -> None:
    df = parse_dockerfile("# check=skip=JSONArgsRecommended,StageNameCasing;error=true\nFROM a\n")
    assert df.directives.check.skip == {"JSONArgsRecommended", "StageNameCasing"} and df.directives.check.error


def test_cli_error_is_gcc_style_no_traceback(tmp_path) -> None:
    f = tmp_path / "Dockerfile"
    f.write_text("FROM a\nRUN --mont=type=cache x\n")
    p = run_cli("parse", "-f", str(f))
    assert p.returncode == 1
    err = p.stderr.decode()
    assert err.splitlines()[0] == f"{f}:2:5: error: unknown flag: mont" and "Traceback" not in err
    assert "      |     ^^^^^^^^^^^^^^^^^\n" in err


def test_cli_parse_lists_instructions(tmp_path) -> None:
    f = tmp_path / "Dockerfile"
    f.write_text("FROM a\nRUN echo hi\n")
    p = run_cli("parse", "-f", str(f))
    assert p.returncode == 0 and p.stdout.decode().splitlines() == ["   1  FROM a", "   2  RUN echo hi"]


def test_cache_roundtrip_and_skips_lark(tmp_path) -> None:
    text = "FROM a AS b\nCOPY <<EOF /x\nhi\nEOF\n"
    first = parse_dockerfile_cached(text, "Dockerfile", tmp_path)
    assert first == parse_dockerfile(text)
    assert len(list(tmp_path.glob("*.pickle"))) == 1
    code = ("import sys; from pathlib import Path; from builder.dockerfile import parse_dockerfile_cached as p;"
            f"d = p({text!r}, 'Dockerfile', Path({str(tmp_path)!r})); "
            "assert d.instructions[1].contents[0].data == 'hi\\n'; print('lark' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    (next(tmp_path.glob("*.pickle"))).write_bytes(b"garbage")
    assert parse_dockerfile_cached(text, "Dockerfile", tmp_path) == first


def test_import_does_not_pull_heavy_modules() -> None:
    code = ("import sys, builder.dockerfile, builder.dockerfile.stages, builder.dockerfile.lint; "
            "print(sorted(m for m in ('rich', 'zstandard', 'yaml', 'lark') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
