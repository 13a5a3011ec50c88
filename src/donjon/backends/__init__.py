"""Donjon's TEE backends: turn a 64-byte binding into hardware evidence.

``nil`` (none), ``snp``/``tdx``/``cca`` (Linux configfs-tsm), ``sgx`` (Gramine's
``/dev/attestation``), ``sim-snp``/``sim-tdx`` (simulators). Pick one with
:func:`select_backend`, which honours the workload's ``backends`` allow-list;
see docs/backends.md.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from donjon.backends.base import (
        BINDING_SIZE,
        Availability,
        Backend,
        Evidence,
        EvidenceKind,
        check_binding,
    )
    from donjon.backends.errors import (
        BackendError,
        BackendNotAllowed,
        BackendUnavailable,
        EvidenceError,
        GenerationRace,
        InvalidBinding,
        MalformedPlatformOutput,
        UnattestedBackend,
        UnknownBackend,
    )
    from donjon.backends.gramine import GramineBackend
    from donjon.backends.nil import NilBackend
    from donjon.backends.platform import PlatformRoots
    from donjon.backends.registry import (
        AUTO,
        AUTO_ORDER,
        BACKEND_NAMES,
        create_backend,
        probe_all,
        select_backend,
    )
    from donjon.backends.sim import SimBackend
    from donjon.backends.tsm import TsmBackend


#: Each public name and the module that defines it: imported on first use (PEP 562), so that
#: ``import donjon.backends.nil`` (``donjon run`` on ``nil``) does not load the whole package
#: (the simulators and the evidence layouts import ``cryptography``: ~0.1 s at start-up).
_LAZY: dict[str, str] = {
    "BINDING_SIZE": "donjon.backends.base",
    "Availability": "donjon.backends.base",
    "Backend": "donjon.backends.base",
    "Evidence": "donjon.backends.base",
    "EvidenceKind": "donjon.backends.base",
    "check_binding": "donjon.backends.base",
    "BackendError": "donjon.backends.errors",
    "BackendNotAllowed": "donjon.backends.errors",
    "BackendUnavailable": "donjon.backends.errors",
    "EvidenceError": "donjon.backends.errors",
    "GenerationRace": "donjon.backends.errors",
    "InvalidBinding": "donjon.backends.errors",
    "MalformedPlatformOutput": "donjon.backends.errors",
    "UnattestedBackend": "donjon.backends.errors",
    "UnknownBackend": "donjon.backends.errors",
    "GramineBackend": "donjon.backends.gramine",
    "NilBackend": "donjon.backends.nil",
    "PlatformRoots": "donjon.backends.platform",
    "AUTO": "donjon.backends.registry",
    "AUTO_ORDER": "donjon.backends.registry",
    "BACKEND_NAMES": "donjon.backends.registry",
    "create_backend": "donjon.backends.registry",
    "probe_all": "donjon.backends.registry",
    "select_backend": "donjon.backends.registry",
    "SimBackend": "donjon.backends.sim",
    "TsmBackend": "donjon.backends.tsm",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AUTO",
    "AUTO_ORDER",
    "BACKEND_NAMES",
    "BINDING_SIZE",
    "Availability",
    "Backend",
    "BackendError",
    "BackendNotAllowed",
    "BackendUnavailable",
    "Evidence",
    "EvidenceError",
    "EvidenceKind",
    "GenerationRace",
    "GramineBackend",
    "InvalidBinding",
    "MalformedPlatformOutput",
    "NilBackend",
    "PlatformRoots",
    "SimBackend",
    "TsmBackend",
    "UnattestedBackend",
    "UnknownBackend",
    "check_binding",
    "create_backend",
    "probe_all",
    "select_backend",
]
