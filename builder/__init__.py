"""pybuild: a daemonless OCI image builder."""

__version__ = "0.1.0"
