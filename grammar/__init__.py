"""Package holding the Dockerfile grammar (dockerfile.lark) as package data."""
