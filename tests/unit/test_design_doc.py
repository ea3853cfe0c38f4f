"""docs/design.md stays true to the tree: every module of builder/ and runtime/ is on its map."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _map_text() -> str:
    text = (ROOT / "docs" / "design.md").read_text()
    start = text.index("## Module map")
    return text[start:text.index("## Data flow")]


def test_design_doc_lives_in_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "docs/design.md" in readme
    assert "../shared/DESIGN.md" not in readme


def test_every_module_is_on_the_map():
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*\.py|[A-Za-z_]+/", _map_text()))
    missing = []
    for pkg in ("builder", "runtime"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path.name in ("__init__.py", "__main__.py") or path.name.startswith("_"):
                continue
            rel = path.relative_to(ROOT / pkg)
            # command modules are named as a group ("commands/<group>.py"), every other by its file
            if path.name not in names and rel.parts[0] != "commands":
                missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"modules missing from docs/design.md's module map: {missing}"
