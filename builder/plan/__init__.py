"""builder.plan (see DESIGN.md module map)."""
