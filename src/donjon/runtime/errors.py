"""The Keep runtime's exceptions: one root, one subclass per cause.

The CLI maps each cause to one exit code (docs/run.md "Exit codes"); the message is
meant to be printed as is, on one line.
"""

from __future__ import annotations

__all__ = [
    "BackendRefused",
    "BackendUnavailable",
    "CacheUnavailable",
    "DeadlineExceeded",
    "InvalidModule",
    "LimitExceeded",
    "MissingFile",
    "RunError",
    "SocketUnavailable",
    "Unsupported",
]


class RunError(Exception):
    """Root of the runtime's errors."""


class MissingFile(RunError):
    """A file or directory the workload names does not exist or is not what it should be."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class InvalidModule(RunError):
    """The module is not valid WebAssembly, or cannot be linked (imports, no ``_start``)."""


class Unsupported(RunError):
    """The config asks for something this build cannot provide yet (sockets, attested backends)."""


class BackendRefused(RunError):
    """The config's ``backends`` allow-list does not accept the selected backend."""

    def __init__(self, backend: str, allowed: tuple[str, ...]) -> None:
        self.backend = backend
        self.allowed = allowed
        super().__init__(
            f"backend {backend!r} refused: the workload's config accepts only "
            f"{', '.join(allowed)} (key 'backends')"
        )


class BackendUnavailable(RunError):
    """The selected backend is unknown or not implemented."""


class CacheUnavailable(RunError):
    """The module cache cannot be used safely; the run goes on without it."""


class SocketUnavailable(RunError):
    """A ``listen`` or ``connect`` entry cannot be opened (port in use, peer unreachable, TLS setup)."""

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what}: {reason}")


class LimitExceeded(RunError):
    """The module needs more than the config's ``[limits]`` allow to be instantiated (a larger
    initial memory, more memories, tables or instances); the guest never ran."""

    def __init__(self, reason: str, limits: str) -> None:
        self.reason = reason
        self.limits = limits
        super().__init__(f"the module needs more than [limits] allows: {reason} ({limits})")


class DeadlineExceeded(RunError):
    """The guest was still running at the config's ``limits.deadline`` and was stopped (a trap)."""

    def __init__(self, deadline_ms: int, trap: str) -> None:
        self.deadline_ms = deadline_ms
        self.trap = trap
        super().__init__(
            f"guest stopped: it ran past its deadline of {deadline_ms / 1000:g} s (limits.deadline)"
        )
