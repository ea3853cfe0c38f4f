"""builder.oci (see docs/design.md module map)."""
