"""The runtime's exception tree: SandboxError and its kinds.

Owns: every error the sandbox raises to its caller. Must not: import builder (the CLI
catches `runtime.errors.SandboxError` itself; the engine wraps it into a BuildStepError
with the Dockerfile span) or anything outside the standard library.
Messages are one line and name what failed: for mounts the op, source, target and flags.
"""
from __future__ import annotations


class SandboxError(Exception):
    """The sandbox could not run the process (not: the process ran and failed)."""


class ConfigError(SandboxError):
    """A SandboxConfig that does not validate; the message lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid sandbox config: " + "; ".join(self.problems))


class MountError(SandboxError):
    """A mount, bind, pivot_root or unmount failed while building the container's root."""


class NamespaceError(SandboxError):
    """Creating or joining a namespace (or writing its id maps) failed, or is impossible here."""


class ExecError(SandboxError):
    """The container process could not be started: not found, not executable, bad cwd or user."""


# The init child reports a failure as (kind, message) over a pipe; this maps kind back.
KINDS: dict[str, type[SandboxError]] = {
    "sandbox": SandboxError,
    "mount": MountError,
    "namespace": NamespaceError,
    "exec": ExecError,
}
