"""TEE backends: the seam later issues plug attested backends into.

A backend produces evidence for a 64-byte binding (DESIGN.md "One run, as data").
This issue has only ``nil``: no TEE, no evidence, and it says so on every run.
"""

from __future__ import annotations

from typing import Protocol

from donjon.config.model import BACKEND_NAMES
from donjon.runtime.errors import BackendUnavailable

__all__ = ["DEFAULT_BACKEND", "Backend", "NilBackend", "select_backend"]

DEFAULT_BACKEND = "nil"


class Backend(Protocol):
    """What the Keep runtime needs from a backend."""

    @property
    def name(self) -> str: ...

    @property
    def attested(self) -> bool: ...

    def evidence(self, binding: bytes) -> bytes | None:
        """Evidence whose report data is ``binding`` (64 bytes), or ``None`` without a TEE."""
        ...


class NilBackend:
    """No TEE: the workload runs as an ordinary process and is not attested."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return "nil"

    @property
    def attested(self) -> bool:
        return False

    def evidence(self, binding: bytes) -> bytes | None:
        if len(binding) != 64:
            raise ValueError("a binding is 64 bytes")
        return None


def select_backend(name: str) -> Backend:
    """The backend called ``name``; :class:`BackendUnavailable` if unknown or not in this build."""
    if name == "nil":
        return NilBackend()
    if name in BACKEND_NAMES:
        raise BackendUnavailable(
            f"backend {name!r} is not available in this version of Donjon (only 'nil' is)"
        )
    raise BackendUnavailable(f"unknown backend {name!r} (known: {', '.join(BACKEND_NAMES)})")
