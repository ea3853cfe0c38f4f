"""Networks: see the modules' docstrings (docs/design.md, module map)."""
