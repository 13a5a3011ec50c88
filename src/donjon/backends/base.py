"""The seam every TEE backend implements, and the values that cross it.

A backend turns a 64-byte *binding* (DESIGN.md "One run, as data":
SHA-512 over the Keep key, the workload digest and the Steward's nonce) into
hardware *evidence* whose report-data field is that binding. It says whether it
can work on this machine (:meth:`Backend.probe`) without producing evidence, so
``donjon platform info`` and ``auto`` selection can ask every backend cheaply.

The evidence is not verified here: that is the attestation library's job, in
the Steward. A backend only checks what tells it that its platform misbehaved
(sizes, the report data it asked for, the configfs-tsm generation counter).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from donjon.backends.errors import InvalidBinding

if TYPE_CHECKING:
    # What the evidence bytes are (snp-report, tdx-quote, sgx-quote, cca-token): the attestation
    # library's own enum, so a backend names its evidence exactly as the Steward's verifier does.
    # Re-exported here for the backends and their callers, on first use (``__getattr__`` below).
    from donjon.attestation.verify import EvidenceKind

__all__ = [
    "BINDING_SIZE",
    "Availability",
    "Backend",
    "Evidence",
    "EvidenceKind",
    "check_binding",
]


def __getattr__(name: str) -> Any:
    # The attestation library (and with it cryptography.x509, ~40 ms) loads only when a backend
    # that produces evidence asks for the enum: a ``nil`` Keep never does, and its start-up time
    # is measured (benchmarks/bench_run.py, "start hello").
    if name == "EvidenceKind":
        from donjon.attestation.verify import EvidenceKind

        return EvidenceKind
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: The binding is a SHA-512 digest, and every TEE's user-data field is 64 bytes:
#: SEV-SNP REPORT_DATA, TDX REPORTDATA, SGX REPORTDATA, the CCA realm challenge.
BINDING_SIZE = 64


@dataclass(frozen=True, kw_only=True)
class Availability:
    """Whether a backend can produce evidence here, why (not), and how to fix it.

    ``reason`` is one sentence for a human; ``fix`` is what to do about it when
    Donjon knows (a command, a kernel option, a manifest key), ``None`` when the
    backend is usable or nothing short of other hardware would help.
    ``hints`` are observations that explain the reason (``/dev/sev-guest``
    exists, the CPU flags say ``tdx_guest``...).
    """

    usable: bool
    reason: str
    fix: str | None = None
    hints: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"usable": self.usable, "reason": self.reason, "fix": self.fix, "hints": list(self.hints)}


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """Hardware evidence for one binding, as the platform returned it.

    ``data`` is the report, quote or token, byte for byte. ``certs`` are the DER
    certificates the platform handed out with it, leaf first: on SEV-SNP the
    VCEK or VLEK, then ASK/ASVK and ARK from the extended report's certificate
    table; on TDX and SGX the PCK chain the quote carries in its certification
    data (type 5). They travel in the CSR's ``certs`` so a Steward can verify
    without fetching, but the Steward decides what to trust.
    ``provider`` names what produced the bytes (the configfs-tsm provider such
    as ``sev_guest``, ``gramine-dcap``, ``sim-snp``); ``generation`` is the
    configfs-tsm generation the evidence was read at, when there is one.
    """

    kind: EvidenceKind
    data: bytes
    binding: bytes
    backend: str
    provider: str
    certs: tuple[bytes, ...] = ()
    generation: int | None = None
    simulated: bool = False

    def __post_init__(self) -> None:
        check_binding(self.binding, backend=self.backend)
        if not self.data:
            raise ValueError("evidence data must not be empty")

    def summary(self) -> dict[str, object]:
        """A JSON-friendly description (sizes and digests, not the bytes)."""
        return {
            "kind": self.kind.value,
            "backend": self.backend,
            "provider": self.provider,
            "size": len(self.data),
            "sha256": hashlib.sha256(self.data).hexdigest(),
            "binding": self.binding.hex(),
            "certs": len(self.certs),
            "generation": self.generation,
            "simulated": self.simulated,
        }


@runtime_checkable
class Backend(Protocol):
    """A way to obtain evidence on one kind of TEE (STYLE.md 7: a Protocol for the seam).

    ``attested`` is ``False`` only for ``nil``; ``simulated`` is ``True`` for the
    ``sim-*`` backends, whose evidence only a Steward that names the simulator's
    root accepts.
    """

    @property
    def name(self) -> str: ...

    @property
    def attested(self) -> bool: ...

    @property
    def simulated(self) -> bool: ...

    def probe(self) -> Availability:
        """Whether this backend can work here; never raises for an expected absence."""
        ...

    def evidence(self, binding: bytes) -> Evidence:
        """Evidence whose report data is ``binding`` (exactly 64 bytes), or a ``BackendError``."""
        ...


def check_binding(binding: object, *, backend: str) -> bytes:
    """Return ``binding`` as bytes if it is exactly :data:`BINDING_SIZE` bytes, else raise.

    A shorter binding would be zero-padded by some platforms (CCA pads to 64)
    and silently weaken what the evidence binds, so anything but 64 bytes is refused.
    """
    if not isinstance(binding, bytes | bytearray | memoryview):
        raise InvalidBinding(backend, f"binding must be bytes, not {type(binding).__name__}")
    data = bytes(binding)
    if len(data) != BINDING_SIZE:
        raise InvalidBinding(backend, f"binding must be exactly {BINDING_SIZE} bytes, got {len(data)}")
    return data
