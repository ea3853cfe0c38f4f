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


def test_invalid_choice_reads_the_same_on_every_python() -> None:
    """argparse's wording changed in 3.13 (choices unquoted) and back in 3.14: pybuild keeps one
    (CI runs this under 3.13 and 3.14 too: tests/integration/test_package_pythons.py)."""
    r = run_cli("build", "--network=bogus", ".")
    assert r.returncode == 2
    assert r.stderr.decode() == ("pybuild: error: argument --network: invalid choice: 'bogus' "
                                 "(choose from 'default', 'none', 'host')\n")
    r = run_cli("frobnicate")
    assert r.stderr.decode().startswith("pybuild: error: argument COMMAND: invalid choice: 'frobnicate' "
                                        "(choose from 'build', "), r.stderr


def test_help_lists_commands() -> None:
    r = run_cli("--help")
    assert r.returncode == 0
    assert b"version" in r.stdout


def test_help_summaries_match_each_command_modules_own() -> None:
    import argparse
    import importlib

    from builder.cli import COMMANDS

    for mod in sorted({m for m, _ in COMMANDS.values()}):
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        importlib.import_module(f"builder.commands.{mod}").add_parser(sub)
        for action in sub._choices_actions:
            assert COMMANDS[action.dest] == (mod, action.help), action.dest


def test_top_level_help_imports_no_command_module() -> None:
    import subprocess
    import sys

    code = ("import sys, builder.cli as c; c.build_parser().format_help(); "
            "print(sorted(m for m in sys.modules if m.startswith('builder.commands.') or m == 'builder.errors'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
