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

``options`` is per kind: :class:`donjon.attestation.snp.SnpOptions` for SNP;
for TDX/SGX a mapping of the keyword arguments of
:func:`donjon.attestation.dcap_verify.verify_tdx_quote` (``allow_debug``,
``allowed_statuses``, ``report_data``...); for CCA a mapping with
``platform_keys`` (pinned CPAK public keys) and ``expected_challenge``; for the Azure vTPM kinds
:class:`donjon.attestation.azure.AzureOptions`.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509

from donjon.attestation.claims import VerifiedEvidence
from donjon.attestation.errors import AttestationError, MalformedEvidence
from donjon.attestation.pki import X509_DECODE_ERRORS, load_certificates, require_aware

__all__ = [
    "MAX_EVIDENCE_BYTES",
    "MAX_EVIDENCE_CERTS",
    "Collateral",
    "EvidenceKind",
    "TrustRoots",
    "verify_evidence",
]

#: No evidence Donjon knows is larger than a DCAP quote with its PEM chain (a few KiB).
MAX_EVIDENCE_BYTES = 256 * 1024
#: Certificates that may accompany one piece of evidence (a leaf and its chain, with slack).
MAX_EVIDENCE_CERTS = 16


class EvidenceKind(enum.StrEnum):
    """The kinds of evidence the library verifies (names used on the CLI, in CSRs and by the backends)."""

    SNP_REPORT = "snp-report"  # AMD SEV-SNP ABI, "ATTESTATION_REPORT" (1184 bytes)
    TDX_QUOTE = "tdx-quote"  # Intel TDX DCAP quote, version 4 or 5
    SGX_QUOTE = "sgx-quote"  # Intel SGX DCAP quote, version 3 (or 4/5 where they occur)
    CCA_TOKEN = "cca-token"  # Arm CCA attestation token (CBOR tag 399: platform + realm token)
    # Azure confidential VMs: the paravisor's HCL report + a vTPM quote, as a JSON document (v0/v1/v2)
    AZURE_SNP_VTPM = "azure-snp-vtpm"
    AZURE_TDX_VTPM = "azure-tdx-vtpm"


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


def _unsupported(kind: EvidenceKind, e: ModuleNotFoundError) -> MalformedEvidence:
    return MalformedEvidence(
        "evidence.unsupported", f"this build cannot verify {kind.value} evidence ({e.name})"
    )


def _verify_snp(
    evidence: bytes,
    certs: tuple[x509.Certificate, ...],
    collateral: Collateral,
    roots: TrustRoots,
    at: datetime,
    options: object | None,
) -> VerifiedEvidence:
    from donjon.attestation.snp import verify_snp_report

    return verify_snp_report(
        evidence, certs=certs, collateral=collateral, roots=roots, at=at, options=options
    )


def _cn(name: x509.Name) -> str:
    return " ".join(str(a.value) for a in name.get_attributes_for_oid(x509.NameOID.COMMON_NAME))


def _readable(cert: x509.Certificate) -> bool:
    # cryptography decodes names and times lazily: a certificate whose names do not decode
    # (ValueError on first access) can be nobody's issuer or signer, so it is left out
    # rather than allowed to raise a foreign exception mid-selection.
    try:
        _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc)
    except X509_DECODE_ERRORS:
        return False
    return True


def _readable_crl(crl: x509.CertificateRevocationList) -> bool:
    try:
        _ = crl.issuer
    except X509_DECODE_ERRORS:
        return False
    return True


def _verify_intel(
    kind: EvidenceKind,
    evidence: bytes,
    certs: tuple[x509.Certificate, ...],
    collateral: Collateral,
    roots: TrustRoots,
    at: datetime,
    options: object | None,
) -> VerifiedEvidence:
    # Intel's verifier (donjon.attestation.dcap_verify) takes its collateral as PCS
    # serves it (documents with their issuer chains); this maps the bundle recognised
    # by content onto that shape, once per trust anchor: Intel's pinned root first,
    # then (only when the caller named some) the explicitly trusted roots.
    try:
        from donjon.attestation import dcap_verify
        from donjon.attestation.intel import INTEL_SGX_ROOT_CA_SHA256
    except ModuleNotFoundError as e:
        raise _unsupported(kind, e) from e
    from cryptography.hazmat.primitives.serialization import Encoding

    from donjon.attestation.errors import CollateralError, VerificationFailed
    from donjon.attestation.pki import fingerprint

    if not collateral.tcb_info:
        raise CollateralError(f"{kind.value}.tcb_info.missing", "no TCB info document in the collateral")
    pool = [
        c
        for c in (*certs, *collateral.certificates, *roots.certificates, *roots.extra_trusted)
        if _readable(c)
    ]
    crls = [c for c in collateral.crls if _readable_crl(c)]
    signers = [c for c in pool if "TCB Signing" in _cn(c.subject)]
    function = (
        dcap_verify.verify_tdx_quote if kind is EvidenceKind.TDX_QUOTE else dcap_verify.verify_sgx_quote
    )
    kwargs = dict(_mapping(options))

    # The PCK CRL to apply is the one from the CA that issued this quote's PCK
    # certificate (Platform or Processor CA): a Keep may send both.
    pck_leaf = _pck_leaf(evidence)
    pck_ca_name = None if pck_leaf is None else pck_leaf.issuer
    # The collateral may hold documents for several platforms (a Steward's directory):
    # hand the verifier the ones for this quote's TEE and platform.
    tcb_info = _pick_tcb_info(collateral.tcb_info, kind, pck_leaf, at)
    qe_identity = _pick_qe_identity(collateral.qe_identity, kind, at)

    def attempt(anchor: x509.Certificate | None, trusted: list[x509.Certificate] | None) -> VerifiedEvidence:
        mine = [c for c in signers if anchor is not None and c.issuer == anchor.subject]
        current = [c for c in mine if c.not_valid_before_utc <= at <= c.not_valid_after_utc] or mine
        chain = [*current[:1], *([anchor] if anchor is not None else [])]
        chain_pem = b"".join(c.public_bytes(Encoding.PEM) for c in chain)
        root_crl = next((c for c in crls if anchor is not None and c.issuer == anchor.subject), None)
        pck_crl = next((c for c in crls if c.issuer == pck_ca_name), None)
        intel = dcap_verify.IntelCollateral(
            tcb_info=tcb_info,
            tcb_info_issuer_chain=chain_pem,
            qe_identity=qe_identity,
            qe_identity_issuer_chain=chain_pem if qe_identity is not None else None,
            pck_crl=None if pck_crl is None else pck_crl.public_bytes(Encoding.DER),
            root_crl=None if root_crl is None else root_crl.public_bytes(Encoding.DER),
        )
        return function(evidence, collateral=intel, roots=trusted, at=at, **kwargs)

    intel_root = next((c for c in pool if fingerprint(c) == INTEL_SGX_ROOT_CA_SHA256), None)
    try:
        return attempt(intel_root, None)
    except VerificationFailed as e:
        if not roots.extra_trusted or not e.check.endswith("root_pin"):
            raise
    # The quote does not chain to Intel's root: try the roots the caller trusts explicitly.
    last: VerificationFailed | None = None
    for anchor in (c for c in roots.extra_trusted if _readable(c)):
        try:
            return attempt(anchor, [anchor])
        except VerificationFailed as e:
            if not e.check.endswith(("untrusted_root", "root_pin")):
                raise
            last = e
    raise last or VerificationFailed(f"{kind.value}.root", "no trusted root")


def _pck_leaf(quote: bytes) -> x509.Certificate | None:
    from donjon.attestation.dcap import parse_quote

    chain = parse_quote(quote).signature.pck_cert_chain
    certs = load_certificates(chain.rstrip(b"\x00"), what="PCK certificate chain") if chain else []
    # An unreadable PCK certificate selects nothing; the verifier then refuses the chain itself.
    return certs[0] if certs and _readable(certs[0]) else None


def _newest_current(
    candidates: list[tuple[bytes, datetime, datetime]], at: datetime, fallback: bytes | None
) -> bytes | None:
    # Prefer a document current at ``at`` (the latest issued); else the first candidate; else
    # ``fallback``, which the verifier then refuses with the precise reason.
    current = [c for c in candidates if c[1] <= at <= c[2]]
    if current:
        return max(current, key=lambda c: c[1])[0]
    return candidates[0][0] if candidates else fallback


# The collateral is the same bytes for every quote of a platform (a Steward's directory): the
# unverified parses that choose among its documents are remembered, like the verifier's own.
@functools.lru_cache(maxsize=256)
def _tcb_info_header(doc: bytes) -> tuple[str, bytes, bytes, datetime, datetime] | None:
    """TCB Info's id, FMSPC, PCE-ID, issue date and next update, or None if it does not parse."""
    from donjon.attestation.tcbinfo import parse_tcb_info, split_signed_document

    try:
        info = parse_tcb_info(split_signed_document(doc, "tcbInfo")[0])
    except AttestationError:
        return None
    return info.id, info.fmspc, info.pce_id, info.issue_date, info.next_update


@functools.lru_cache(maxsize=256)
def _qe_identity_header(doc: bytes) -> tuple[str, datetime, datetime] | None:
    """QE Identity's id, issue date and next update, or None if it does not parse."""
    from donjon.attestation.tcbinfo import parse_qe_identity, split_signed_document

    try:
        identity = parse_qe_identity(split_signed_document(doc, "enclaveIdentity")[0])
    except AttestationError:
        return None
    return identity.id, identity.issue_date, identity.next_update


@functools.lru_cache(maxsize=256)
def _pck_platform(leaf_der: bytes) -> tuple[bytes, bytes] | None:
    """The PCK certificate's FMSPC and PCE-ID, or None if its SGX extensions do not parse."""
    from donjon.attestation.intel import parse_pck_extensions

    try:
        pck = parse_pck_extensions(x509.load_der_x509_certificate(leaf_der))
    except AttestationError:
        return None
    return pck.fmspc, pck.pce_id


def _pick_tcb_info(
    docs: tuple[bytes, ...], kind: EvidenceKind, pck_leaf: x509.Certificate | None, at: datetime
) -> bytes:
    """The TCB Info for this TEE and the PCK's FMSPC/PCE-ID (chosen unverified; verified later)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    want_id = "TDX" if kind is EvidenceKind.TDX_QUOTE else "SGX"
    platform = None if pck_leaf is None else _pck_platform(pck_leaf.public_bytes(Encoding.DER))
    found: list[tuple[bytes, datetime, datetime]] = []
    for doc in docs:
        header = _tcb_info_header(doc)
        if header is None:
            continue
        info_id, fmspc, pce_id, issued, next_update = header
        if info_id == want_id and (platform is None or (fmspc, pce_id) == platform):
            found.append((doc, issued, next_update))
    picked = _newest_current(found, at, docs[0])
    assert picked is not None
    return picked


def _pick_qe_identity(docs: tuple[bytes, ...], kind: EvidenceKind, at: datetime) -> bytes | None:
    """The QE Identity of the quoting enclave this kind of quote comes from (TD_QE or QE)."""
    want_id = "TD_QE" if kind is EvidenceKind.TDX_QUOTE else "QE"
    found: list[tuple[bytes, datetime, datetime]] = []
    for doc in docs:
        header = _qe_identity_header(doc)
        if header is not None and header[0] == want_id:
            found.append((doc, header[1], header[2]))
    return _newest_current(found, at, docs[0] if docs else None)


def _verify_cca(evidence: bytes, at: datetime, options: object | None) -> VerifiedEvidence:
    try:
        from donjon.attestation.cca import verify_cca_token
    except ModuleNotFoundError as e:
        raise _unsupported(EvidenceKind.CCA_TOKEN, e) from e
    # A CCA platform key has no vendor chain: the caller pins it (options["platform_keys"]).
    return verify_cca_token(evidence, at=at, **_mapping(options))


def _mapping(options: object | None) -> Mapping[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"options for this evidence kind are keyword arguments (a mapping), not {options!r}")
    return options


@functools.lru_cache(maxsize=256)
def _load_cached(blob: bytes) -> tuple[x509.Certificate, ...]:
    # The same VCEK arrives with every report of a chip: parse it once.
    return tuple(load_certificates(blob, what="evidence certificate"))


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
            parsed.extend(_load_cached(bytes(item)))
        if len(parsed) > MAX_EVIDENCE_CERTS:
            raise MalformedEvidence(
                "evidence.certs",
                "too many certificates with the evidence",
                expected=f"<= {MAX_EVIDENCE_CERTS}",
            )
    bundle = collateral if collateral is not None else Collateral()
    result: Any
    if which is EvidenceKind.SNP_REPORT:
        result = _verify_snp(data, tuple(parsed), bundle, roots, at, options)
    elif which is EvidenceKind.CCA_TOKEN:
        result = _verify_cca(data, at, options)
    elif which in (EvidenceKind.AZURE_SNP_VTPM, EvidenceKind.AZURE_TDX_VTPM):
        from donjon.attestation.azure import verify_azure_vtpm

        result = verify_azure_vtpm(
            which, data, certs=tuple(parsed), collateral=bundle, roots=roots, at=at, options=options
        )
    else:
        result = _verify_intel(which, data, tuple(parsed), bundle, roots, at, options)
    if not isinstance(result, VerifiedEvidence):  # pragma: no cover - a vendor module's bug
        raise AttestationError(
            "evidence.verifier", f"{which.value} verifier returned {type(result).__name__}"
        )
    return result
