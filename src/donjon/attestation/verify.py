"""One entry point for every kind of evidence: :func:`verify_evidence`.

The Steward, the relying-party CLI and tests call this function; it only picks
the vendor verifier for the evidence kind and hands it the same four inputs
every verifier takes (STYLE.md 2): the evidence bytes, the certificates that
came with it, the caller's *own* collateral and trust roots, and the time of
verification. Nothing here reads a file, the network or the clock.

Vendor modules are imported lazily, so verifying an SNP report never imports
the Intel code and a build without a vendor module says so with a clear
:class:`MalformedEvidence` (check ``evidence.unsupported``) instead of an
``ImportError``.

Contract for a vendor verifier (SNP: :func:`donjon.attestation.snp.verify_snp_report`;
Intel: ``donjon.attestation.tdx.verify_tdx_quote`` / ``donjon.attestation.sgx.verify_sgx_quote``
or the same names in ``donjon.attestation.dcap``)::

    verify_xxx(evidence: bytes, *, certs: Sequence[x509.Certificate], collateral: Collateral,
               roots: TrustRoots, at: datetime, options: object | None) -> VerifiedEvidence
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509

from donjon.attestation.claims import VerifiedEvidence
from donjon.attestation.errors import AttestationError, MalformedEvidence
from donjon.attestation.pki import load_certificates, require_aware

__all__ = [
    "MAX_EVIDENCE_BYTES",
    "Collateral",
    "EvidenceKind",
    "TrustRoots",
    "verify_evidence",
]

#: No evidence Donjon knows is larger than a DCAP quote with its PEM chain (a few KiB).
MAX_EVIDENCE_BYTES = 256 * 1024


class EvidenceKind(enum.StrEnum):
    """The kinds of evidence the library verifies (names used on the CLI and in CSRs)."""

    SNP_REPORT = "snp-report"
    TDX_QUOTE = "tdx-quote"
    SGX_QUOTE = "sgx-quote"
    CCA_TOKEN = "cca-token"


@dataclass(frozen=True)
class TrustRoots:
    """What the caller trusts.

    ``certificates`` are vendor roots and intermediates the caller supplies
    (files, fetchers): each vendor verifier accepts one only when its SHA-256
    fingerprint matches a pin compiled into the library (AMD ARK/ASK/ASVK in
    :mod:`donjon.attestation.amd`). ``extra_trusted`` are self-signed roots the
    caller explicitly trusts without a pin — a simulated vendor, a test root.
    Evidence that chains to one of those is verified like any other, and its
    claims say ``simulated=True``. Nothing is trusted by default.
    """

    certificates: tuple[x509.Certificate, ...] = ()
    extra_trusted: tuple[x509.Certificate, ...] = ()

    @classmethod
    def from_bytes(cls, *blobs: bytes, extra_trusted: Iterable[bytes] = ()) -> TrustRoots:
        """Roots from PEM bundles or DER certificates (``blobs``), plus explicitly trusted roots."""
        certs: list[x509.Certificate] = []
        for blob in blobs:
            certs.extend(load_certificates(blob, what="root certificate"))
        extra: list[x509.Certificate] = []
        for blob in extra_trusted:
            extra.extend(load_certificates(blob, what="trusted root certificate"))
        return cls(certificates=tuple(certs), extra_trusted=tuple(extra))

    def __add__(self, other: TrustRoots) -> TrustRoots:
        return TrustRoots(
            certificates=self.certificates + other.certificates,
            extra_trusted=self.extra_trusted + other.extra_trusted,
        )


@dataclass(frozen=True)
class Collateral:
    """Vendor collateral the caller holds (its own, fetched and cached, or sent with the evidence).

    ``certificates``: any certificates (VCEK/VLEK, ASK/ARK, PCK chains, TCB
    signing chains); ``crls``: parsed CRLs (AMD ARK CRL, Intel PCK/root CRLs);
    ``tcb_info`` and ``qe_identity``: the raw JSON documents as served by Intel
    PCS (raw, because their signature covers the exact bytes). Verifiers check
    every piece before using it; :mod:`donjon.attestation.detect` builds this
    bundle from files by content.
    """

    certificates: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    tcb_info: tuple[bytes, ...] = ()
    qe_identity: tuple[bytes, ...] = ()
    #: where each piece came from (file names), for messages only
    sources: tuple[str, ...] = field(default=(), compare=False)

    def __add__(self, other: Collateral) -> Collateral:
        return Collateral(
            certificates=self.certificates + other.certificates,
            crls=self.crls + other.crls,
            tcb_info=self.tcb_info + other.tcb_info,
            qe_identity=self.qe_identity + other.qe_identity,
            sources=self.sources + other.sources,
        )


#: evidence kind -> candidate (module, function) pairs, tried in order.
_VERIFIERS: dict[EvidenceKind, tuple[tuple[str, str], ...]] = {
    EvidenceKind.SNP_REPORT: (("donjon.attestation.snp", "verify_snp_report"),),
    EvidenceKind.TDX_QUOTE: (
        ("donjon.attestation.tdx", "verify_tdx_quote"),
        ("donjon.attestation.dcap", "verify_tdx_quote"),
    ),
    EvidenceKind.SGX_QUOTE: (
        ("donjon.attestation.sgx", "verify_sgx_quote"),
        ("donjon.attestation.dcap", "verify_sgx_quote"),
    ),
    EvidenceKind.CCA_TOKEN: (("donjon.attestation.cca", "verify_cca_token"),),
}


def _verifier(kind: EvidenceKind) -> Callable[..., VerifiedEvidence]:
    for module_name, function in _VERIFIERS[kind]:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue
        found = getattr(module, function, None)
        if callable(found):
            return found  # type: ignore[no-any-return]
    raise MalformedEvidence("evidence.unsupported", f"this build cannot verify {kind.value} evidence")


def _kind(kind: EvidenceKind | str) -> EvidenceKind:
    try:
        return EvidenceKind(kind)
    except ValueError as e:
        known = ", ".join(k.value for k in EvidenceKind)
        raise MalformedEvidence("evidence.kind", f"unknown evidence kind {kind!r} (known: {known})") from e


def verify_evidence(
    kind: EvidenceKind | str,
    evidence: bytes,
    *,
    certs: Sequence[bytes | x509.Certificate] = (),
    collateral: Collateral | None = None,
    roots: TrustRoots,
    at: datetime,
    options: object | None = None,
) -> VerifiedEvidence:
    """Verify ``evidence`` of ``kind`` at time ``at``; return its claims or raise.

    ``certs`` are certificates that arrived with the evidence (PEM bundles, DER
    or parsed), e.g. the VCEK/VLEK from an extended report or a CSR; they are
    never trusted by themselves. ``options`` is the vendor's options object
    (:class:`donjon.attestation.snp.SnpOptions` for SNP); ``None`` means the
    strict defaults. Raises an :class:`AttestationError` subclass naming the
    failed check; never returns an unverified result.
    """
    require_aware(at)
    which = _kind(kind)
    if not isinstance(evidence, bytes | bytearray | memoryview):
        raise MalformedEvidence("evidence.type", f"evidence must be bytes, not {type(evidence).__name__}")
    data = bytes(evidence)
    if len(data) > MAX_EVIDENCE_BYTES:
        raise MalformedEvidence(
            "evidence.size", "evidence is too large", expected=f"<= {MAX_EVIDENCE_BYTES}", got=len(data)
        )
    parsed: list[x509.Certificate] = []
    for item in certs:
        if isinstance(item, x509.Certificate):
            parsed.append(item)
        else:
            parsed.extend(load_certificates(bytes(item), what="evidence certificate"))
    verifier = _verifier(which)
    result: Any = verifier(
        data,
        certs=tuple(parsed),
        collateral=collateral if collateral is not None else Collateral(),
        roots=roots,
        at=at,
        options=options,
    )
    if not isinstance(result, VerifiedEvidence):  # pragma: no cover - a vendor module's bug
        raise AttestationError(
            "evidence.verifier", f"{which.value} verifier returned {type(result).__name__}"
        )
    return result
