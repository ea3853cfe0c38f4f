"""The real entry point: version, help, usage errors, exit codes."""
from __future__ import annotations

from tests.conftest import run_cli


def test_version_prints_and_exits_zero() -> None:
    r = run_cli("version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith("pybuild 0.")


def test_unknown_command_is_a_usage_error() -> None:
    r = run_cli("frobnicate")
    assert r.returncode == 2
    assert b"Traceback" not in r.stderr
    assert r.stderr.decode().startswith("pybuild: error:")


def test_help_lists_commands() -> None:
    r = run_cli("--help")
    assert r.returncode == 0
    assert b"version" in r.stdout
