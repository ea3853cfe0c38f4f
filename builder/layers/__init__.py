"""builder.layers (see docs/design.md module map)."""
