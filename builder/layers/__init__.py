"""builder.layers (see DESIGN.md module map)."""
