"""Follow README.md's command one literally, as a newcomer would, in a fresh clone.

The command is read out of the README's "Two commands" block (so the test breaks when the
README and the script drift apart) and run in a fresh `git clone` with a private virtualenv
(so `pip install -e .` there does not re-point this checkout's install) and a private
PYBUILD_ROOT.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Two commands", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_readme_names_two_commands_and_ci_runs_the_second():
    cmds = readme_commands()
    assert len(cmds) == 2
    assert cmds[1] in (REPO / ".ci" / "run").read_text()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_command_one_builds_and_runs_hello(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    # The working tree's uncommitted changes are what is under test, not only HEAD.
    subprocess.run(f"cd {REPO} && git diff HEAD | (cd {clone} && git apply --allow-empty)", shell=True, check=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv}/bin:{env['PATH']}", PYBUILD_ROOT=str(tmp_path / "state"))
    r = subprocess.run(readme_commands()[0], shell=True, cwd=clone, env=env, capture_output=True, timeout=600)
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 0, out[-3000:]
    assert "Hello from pybuild, world!" in r.stdout.decode()
    assert "built at stage: build stage on" in r.stdout.decode()
