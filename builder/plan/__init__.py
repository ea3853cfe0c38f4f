"""builder.plan (see docs/design.md module map)."""
