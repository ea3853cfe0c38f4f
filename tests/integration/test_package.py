"""The package as users install it: a built wheel (not the editable tree) in a fresh venv.

Builds the sdist and wheel from a copy of the source tree with `python -m build` (the `build`
and `wheel` packages are in the `test` extra), checks what each holds (LICENSE, README,
examples, tests, the grammar as package data, classifiers for 3.11–3.14), and installs the wheel
twice, running its `pybuild` from outside the source tree each time: into a venv that sees the
system site-packages for the dependencies only (no network needed; the test checks `builder` and
`grammar` come from the venv's copy, never from this checkout), and into a clean venv where pip
resolves the dependencies from the configured index, as `pip install pybuild` does.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

# `dist` (the sdist and wheel, built once per session) is in tests/integration/conftest.py.


def _one(d: Path, pattern: str) -> Path:
    (p,) = d.glob(pattern)
    return p


def test_wheel_holds_the_grammar_license_and_metadata(dist):
    with zipfile.ZipFile(_one(dist, "pybuild-*.whl")) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "grammar/dockerfile.lark" in names
    assert any(n.endswith(".dist-info/LICENSE") for n in names)
    assert {"builder/cli.py", "builder/gotemplate/parse.py", "runtime/init.py"} <= names
    assert not any(n.startswith("tests/") for n in names)
    for v in ("3.11", "3.12", "3.13", "3.14"):
        assert f"Classifier: Programming Language :: Python :: {v}" in meta
    assert "Classifier: License :: OSI Approved :: Apache Software License" in meta
    assert "Project-URL: Source," in meta and "Requires-Python: >=3.11" in meta
    assert "pybuild = builder.cli:main" in entry


def test_sdist_holds_readme_license_examples_and_tests(dist):
    with tarfile.open(_one(dist, "pybuild-*.tar.gz")) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for must in ("README.md", "LICENSE", "pyproject.toml", "grammar/dockerfile.lark", "docs/design.md",
                 "examples/hello/Dockerfile", "examples/make-busybox-rootfs.sh",
                 "tests/conftest.py", "tests/unit/test_gotemplate.py", "tests/integration/test_package.py"):
        assert must in names, must
    assert not any("__pycache__" in n for n in names)


def test_installed_wheel_runs_outside_the_checkout(dist, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                   check=True, timeout=60)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYBUILD_ROOT"] = str(tmp_path / "state")
    # the system's pip, seen through --system-site-packages, installs into the venv
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                        "--disable-pip-version-check", str(_one(dist, "pybuild-*.whl"))],
                       capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    where = subprocess.run([str(py), "-c", "import builder, grammar; print(builder.__file__); print(grammar.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.split()
    assert all(Path(w).is_relative_to(venv) for w in where), where  # not the editable checkout

    pybuild = venv / "bin" / "pybuild"
    r = subprocess.run([str(pybuild), "--version"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("pybuild version "), r.stderr
    (tmp_path / "Dockerfile").write_text("FROM busybox AS base\nRUN echo hi\nCOPY --from=base / /x\n")
    r = subprocess.run([str(pybuild), "parse", "-f", "Dockerfile"], capture_output=True, text=True,
                       env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0].split() == ["1", "FROM", "busybox", "AS", "base"], r.stdout
    r = subprocess.run([str(pybuild), "completion", "bash"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0 and "complete -o default -F _pybuild pybuild" in r.stdout


def test_wheel_in_a_clean_venv_with_its_dependencies(dist, tmp_path):
    """No system site-packages: pip resolves lark, zstandard, rich, … from the configured index
    (PyPI or the machine's mirror) as `pip install pybuild` would; then a real build runs."""
    venv = tmp_path / "clean"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYBUILD_ROOT"] = str(tmp_path / "state")
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        str(_one(dist, "pybuild-*.whl"))], capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0 and "No matching distribution found for" in r.stderr:
        pytest.skip(f"no package index reachable for the dependencies: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr[-2000:]
    pybuild = str(venv / "bin" / "pybuild")
    assert subprocess.run([pybuild, "--version"], capture_output=True, text=True, env=env).stdout.startswith("pybuild version")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f.txt").write_text("hello\n")
    (ctx / "Dockerfile").write_text('FROM scratch\nCOPY f.txt /f.txt\nLABEL from=wheel\nCMD ["/f.txt"]\n')
    r = subprocess.run([pybuild, "build", "-q", "-t", "wheeltest", str(ctx)], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([pybuild, "images", "--format", "{{.Repository}} {{.Size}}"], capture_output=True, text=True,
                       env=env, cwd=tmp_path)
    assert r.stdout == "wheeltest 6B\n", r.stderr
