"""builder.commands (see DESIGN.md module map)."""
