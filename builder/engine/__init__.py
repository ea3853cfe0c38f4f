"""builder.engine (see docs/design.md module map)."""
