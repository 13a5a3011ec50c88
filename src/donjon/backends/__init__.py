"""Donjon's TEE backends: turn a 64-byte binding into hardware evidence.

``nil`` (none), ``snp``/``tdx``/``cca`` (Linux configfs-tsm), ``sgx`` (Gramine's
``/dev/attestation``), ``sim-snp``/``sim-tdx`` (simulators). Pick one with
:func:`select_backend`, which honours the workload's ``backends`` allow-list;
see docs/backends.md.
"""

from donjon.backends.base import BINDING_SIZE, Availability, Backend, Evidence, EvidenceKind, check_binding
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
