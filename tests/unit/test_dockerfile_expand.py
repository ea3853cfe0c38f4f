"""Every expansion form, word splitting, matched/unmatched names, and which fields instructions expand."""
from __future__ import annotations

import pytest

from builder.dockerfile import parse_dockerfile
from builder.dockerfile.expand import ExpansionError, expand, expand_word, expand_words

ENV = {"V": "hello.tar.gz", "E": "", "P": "/a/b/a/b"}


@pytest.mark.parametrize("word,want", [
    ("$V", "hello.tar.gz"), ("${V}", "hello.tar.gz"), ("x${U}y", "xy"),
    ("${U:-d}", "d"), ("${E:-d}", "d"), ("${E-d}", ""), ("${U-d}", "d"),
    ("${V:+s}", "s"), ("${E:+s}", ""), ("${E+s}", "s"), ("${U+s}", ""),
    ("${V:?m}", "hello.tar.gz"), ("${E?m}", ""),
    ("${V#*.}", "tar.gz"), ("${V##*.}", "gz"), ("${V%.*}", "hello.tar"), ("${V%%.*}", "hello"),
    ("${P/a/x}", "/x/b/a/b"), ("${P//a/x}", "/x/b/x/b"), ("${P/#/x}", "/a/b/a/b"),
    ("'$V'", "$V"), ('"$V"', "hello.tar.gz"), ("\\$V", "$V"), ('"a\\"b"', 'a"b'),
    ("$1", ""), ("$$", ""), ("$", "$"), ("a$.b", "a$.b"),
])
def test_forms(word: str, want: str) -> None:
    assert expand_word(word, ENV) == want


@pytest.mark.parametrize("word,msg", [("${U:?must be set}", "U: must be set"), ("${E:?}", "not allowed to be empty"),
                                      ("${U?}", "not allowed to be unset"), ("${V", "missing"), ("${}", "bad"),
                                      ("${V:#x}", "unsupported"), ("'open", "single-quote")])
def test_errors(word: str, msg: str) -> None:
    with pytest.raises(ExpansionError, match=msg):
        expand_word(word, ENV)


def test_backtick_escape() -> None:
    assert expand_word("a`$V\\b", ENV, escape="`") == "a$V\\b"


def test_words_and_matches() -> None:
    assert expand_words('a ${S} "${S}"', {"S": "1  2"}) == ["a", "1", "2", "1  2"]
    r = expand("${A:-$B} $C", {"B": "b"})
    assert r.result == "b " and r.matched == {"B"} and r.unmatched == {"A", "C"}


def test_instruction_expansion_rules() -> None:
    df = parse_dockerfile(
        "FROM a\nRUN echo $X\nCMD echo $X\nCOPY --from=$X --chown=$X $X /$X\nWORKDIR /$X\nUSER $X\n"
        "ENV K=$X\nLABEL l=$X\nEXPOSE $PORTS\nVOLUME /$X\nSTOPSIGNAL $X\nARG A=$X\nONBUILD RUN echo $X\n"
        "RUN --mount=type=cache,target=/$X true\n")
    env = {"X": "v", "PORTS": "80 443/udp"}
    got = [i.expand(env) for i in df.instructions[1:]]
    run, cmd, copy, wd, user, e, label, expose, vol, sig, arg, onb, run2 = got
    assert run.command == "echo $X" and cmd.command == "echo $X"  # left to the shell
    assert copy.from_ == "$X" and copy.chown == "v" and copy.sources == ("v",) and copy.dest == "/v"
    assert wd.path == "/v" and user.user == "v" and e.pairs[0].value == "v" and label.pairs[0].value == "v"
    assert expose.ports == ("80", "443/udp") and vol.volumes == ("/v",) and sig.signal == "v"
    assert arg.args[0].value == "v" and onb.instruction.command == "echo $X" and run2.mounts[0].target == "/v"


def test_expansion_error_carries_span() -> None:
    df = parse_dockerfile("FROM a\nWORKDIR ${NOPE:?set NOPE}\n")
    with pytest.raises(ExpansionError) as e:
        df.instructions[1].expand({})
    assert e.value.span.line == 2 and "set NOPE" in e.value.render()
