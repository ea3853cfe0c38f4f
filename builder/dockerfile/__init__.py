"""builder.dockerfile (see DESIGN.md module map)."""
