"""Donjon's attestation library: pure parsers and verifiers for TEE evidence.

Bytes, trust roots, collateral and the verification time go in; a
:class:`VerifiedEvidence` with normalised :class:`Claims` or a specific
:class:`AttestationError` comes out. No network, no clock, no files.
"""

from donjon.attestation.claims import Claims, TcbStatus, TeeType, VerifiedEvidence
from donjon.attestation.errors import (
    AttestationError,
    CollateralError,
    MalformedEvidence,
    VerificationFailed,
)

__all__ = [
    "AttestationError",
    "Claims",
    "CollateralError",
    "MalformedEvidence",
    "TcbStatus",
    "TeeType",
    "VerificationFailed",
    "VerifiedEvidence",
]
