"""builder.engine (see DESIGN.md module map)."""
