"""Fuzzing, short run: hypothesis over Dockerfiles (grammar-aware and raw) and hostile tar streams.

Properties (tests/fuzz/strategies.py): the front end + linter + planner return or raise a
PybuildError whose message renders with "error" on its first line, nothing else; apply_layer (both
whiteout modes) and ADD's archive extractor return or raise a PybuildError and never touch a canary
tree beside the target root. The long run (>= 100,000 examples per property, 0 uncaught
exceptions) is `python bench/fuzz_long.py`, plus the `slow`-marked variant here.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.strategies import (Arena, check_add_extract, check_dockerfile, check_load, check_unpack, dockerfiles,
                                   image_archives, raw_dockerfiles, tar_streams)

SHORT = settings(max_examples=int(os.environ.get("PYBUILD_FUZZ_EXAMPLES", "120")), deadline=None, derandomize=False,
                 suppress_health_check=list(HealthCheck))
_ARENA: dict[str, Arena] = {}


def arena() -> Arena:
    if "a" not in _ARENA:
        _ARENA["a"] = Arena(Path(tempfile.mkdtemp(prefix="pybuild-fuzz-")))
    return _ARENA["a"]


@SHORT
@given(dockerfiles())
def test_grammar_aware_dockerfiles(text: str) -> None:
    check_dockerfile(text)


@SHORT
@given(raw_dockerfiles())
def test_random_dockerfiles(text: str) -> None:
    check_dockerfile(text)


@SHORT
@given(tar_streams())
def test_tar_streams_apply_layer(data: bytes) -> None:
    check_unpack(data, arena(), "delete")


@SHORT
@given(tar_streams())
def test_tar_streams_apply_layer_overlay(data: bytes) -> None:
    check_unpack(data, arena(), "overlay")


@SHORT
@given(tar_streams())
def test_tar_streams_add_extract(data: bytes) -> None:
    check_add_extract(data, arena())


@SHORT
@given(image_archives())
def test_damaged_image_archives_load(data: bytes) -> None:
    check_load(data, arena())


@pytest.mark.slow
def test_long_run() -> None:
    """The marathon (>= 100,000 examples per property) lives in bench/fuzz_long.py; run it from here too."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "bench" / "fuzz_long.py")])
    assert r.returncode == 0
