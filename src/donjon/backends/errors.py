"""The TEE backends' exceptions: one root, one subclass per cause.

Every error names the backend it is about and says, where Donjon knows it, how
to fix the cause (``fix``): the operator reading ``donjon run``'s refusal should
not have to read this code to learn that configfs is not mounted. ``errno``
keeps the kernel's error number when one caused the failure.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendNotAllowed",
    "BackendUnavailable",
    "EvidenceError",
    "GenerationRace",
    "InvalidBinding",
    "MalformedPlatformOutput",
    "UnattestedBackend",
    "UnknownBackend",
]


class BackendError(Exception):
    """Root of every error a TEE backend raises."""

    def __init__(
        self,
        backend: str,
        reason: str,
        *,
        fix: str | None = None,
        errno: int | None = None,
    ) -> None:
        self.backend = backend
        self.reason = reason
        self.fix = fix
        self.errno = errno
        super().__init__(self._render())

    def _render(self) -> str:
        text = f"backend {self.backend}: {self.reason}"
        if self.fix:
            text += f" (fix: {self.fix})"
        return text

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly form, for logs and ``--format json``."""
        out: dict[str, object] = {
            "error": type(self).__name__,
            "backend": self.backend,
            "reason": self.reason,
        }
        if self.fix is not None:
            out["fix"] = self.fix
        if self.errno is not None:
            out["errno"] = self.errno
        return out


class UnknownBackend(BackendError):
    """The name is not a backend Donjon has (a usage error, not an operational one)."""


class BackendNotAllowed(BackendError):
    """The workload's ``backends`` allow-list does not accept this backend: Donjon refuses to start."""


class BackendUnavailable(BackendError):
    """The backend cannot work on this machine (no TEE, no driver, no permission...)."""


class UnattestedBackend(BackendError):
    """Evidence was asked of ``nil``, which has none by design."""


class InvalidBinding(BackendError, ValueError):
    """The binding is not exactly 64 bytes (DESIGN.md "One run, as data": SHA-512 output)."""


class EvidenceError(BackendError):
    """The platform failed to produce evidence (a kernel, firmware or quoting-service error)."""


class GenerationRace(EvidenceError):
    """Another writer changed the configfs-tsm report entry while Donjon used it, every time it tried."""


class MalformedPlatformOutput(EvidenceError):
    """The platform returned bytes that are not what it promised (size, layout, report data, cert table)."""
