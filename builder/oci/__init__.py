"""builder.oci (see DESIGN.md module map)."""
