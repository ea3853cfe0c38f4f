"""Every module's imports held to docs/design.md's boundary table (read with `ast`, not executed)."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# annotationlib: standard library from Python 3.14 on (runtime/record.py imports it only there)
# CPython's builtin sha256 module is _sha256 up to 3.11 and _sha2 from 3.12 (builder.oci.digest
# tries both): each Python's stdlib_module_names lists only its own
STDLIB = set(sys.stdlib_module_names) | {"__future__", "annotationlib", "_sha2", "_sha256"}

# part -> (allowed builder subpackages/modules, allowed third-party top-level names)
RULES: dict[str, tuple[set[str], set[str]]] = {
    "builder.dockerfile": ({"builder.dockerfile", "builder.errors"}, {"lark"}),
    "builder.plan": ({"builder.plan", "builder.dockerfile", "builder.oci.digest", "builder.errors"}, set()),
    "builder.oci": ({"builder.oci", "builder.errors"}, {"zstandard"}),
    "builder.layers": ({"builder.layers", "builder.oci", "builder.errors"}, {"zstandard", "isal"}),
    "builder.snapshot": ({"builder.snapshot", "builder.layers", "builder.oci", "builder.errors"}, set()),
    "builder.context": ({"builder.context", "builder.dockerignore", "builder.oci", "builder.errors"}, set()),
    "builder.dockerignore": ({"builder.dockerignore", "builder.errors"}, set()),
    "builder.registry": ({"builder.registry", "builder.oci", "builder.errors"}, {"requests", "urllib3"}),
    "builder.engine": ({"builder", "runtime"}, {"zstandard"}),
}
FORBIDDEN_EVERYWHERE_BUT_UI = {"rich"}
# Leaf modules every part may use, like the standard library (docs/design.md, principle 2).
UNIVERSAL = {"runtime.record"}
UI = ("builder.report", "builder.cli", "builder.commands")


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    mod = module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if node.module is None or node.level:
                # `from . import x` -> each name may be a submodule
                out.extend(f"{name}.{a.name}" for a in node.names)
            else:
                out.extend(f"{name}.{a.name}" for a in node.names)
                out.append(name)
    return out


def all_modules() -> list[Path]:
    return sorted(p for d in ("builder", "runtime") for p in (REPO / d).rglob("*.py"))


def allowed(name: str, allowed_internal: set[str]) -> bool:
    return any(name == a or name.startswith(a + ".") for a in allowed_internal)


@pytest.mark.parametrize("path", all_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_module_respects_boundaries(path: Path) -> None:
    mod = module_name(path)
    problems = []
    for imp in imports_of(path):
        top = imp.split(".")[0]
        if mod.startswith("runtime"):
            if top not in STDLIB and top != "runtime":
                problems.append(f"runtime may use the standard library only: imports {imp}")
            continue
        if top in FORBIDDEN_EVERYWHERE_BUT_UI and not mod.startswith(UI):
            problems.append(f"only report/cli may import rich: imports {imp}")
        if imp.startswith("builder.cli") and not mod.startswith(UI):
            problems.append(f"nothing but the UI imports builder.cli: imports {imp}")
        for part, (internal, third) in RULES.items():
            if mod == part or mod.startswith(part + "."):
                if top in STDLIB:
                    break
                if top in ("builder", "runtime"):
                    if not allowed(imp, internal | UNIVERSAL):
                        problems.append(f"{part} must not import {imp}")
                elif top not in third:
                    problems.append(f"{part} must not import third-party {top}")
                break
    assert not problems, "\n".join(problems)


def test_boundary_checker_catches_a_violation(tmp_path: Path) -> None:
    # The checker must be able to fail: a fake dockerfile module importing the engine.
    fake = REPO / "builder" / "dockerfile" / "_boundary_probe_tmp.py"
    fake.write_text("from builder.engine import solver\nimport rich\n")
    try:
        with pytest.raises(AssertionError, match="must not import builder.engine"):
            test_module_respects_boundaries(fake)
    finally:
        fake.unlink()
