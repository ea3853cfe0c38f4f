"""builder.commands (see docs/design.md module map)."""
