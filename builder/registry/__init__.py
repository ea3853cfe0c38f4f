"""builder.registry (see DESIGN.md module map)."""
