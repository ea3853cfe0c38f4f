"""builder.registry (see docs/design.md module map)."""
