"""Donjon's attestation library: pure parsers and verifiers for TEE evidence.

Bytes, trust roots, collateral and the verification time go in; a
:class:`VerifiedEvidence` with normalised :class:`Claims` or a specific
:class:`AttestationError` comes out. No network, no clock, no files.

:func:`verify_evidence` is the one entry point for every kind of evidence
(SEV-SNP reports, TDX and SGX quotes, CCA tokens); the per-vendor modules
(``snp``, ``dcap_verify``, ``cca``) expose the details.
"""

from donjon.attestation.claims import Claims, TcbStatus, TeeType, VerifiedEvidence
from donjon.attestation.errors import (
    AttestationError,
    CollateralError,
    MalformedEvidence,
    VerificationFailed,
)
from donjon.attestation.verify import Collateral, EvidenceKind, TrustRoots, verify_evidence

__all__ = [
    "AttestationError",
    "Claims",
    "Collateral",
    "CollateralError",
    "EvidenceKind",
    "MalformedEvidence",
    "TcbStatus",
    "TeeType",
    "TrustRoots",
    "VerificationFailed",
    "VerifiedEvidence",
    "verify_evidence",
]
