"""Verification of Intel TDX and SGX DCAP quotes against Intel's root and collateral.

Pure: the quote, the trust roots, the collateral (:class:`IntelCollateral`:
CRLs, TCB Info, QE Identity and their issuer chains) and the verification time
go in; a :class:`VerifiedEvidence` or a specific :class:`AttestationError`
comes out. The checks, in Intel's QVL order (Intel "Quote Verification" appendix
of the TDX DCAP QVL document):

1. the quote is well formed (:func:`donjon.attestation.dcap.parse_quote`) and
   comes from Intel's QE (QE vendor ID);
2. the PCK certificate chain in the quote reaches the trust anchor: Intel's SGX
   Root CA pinned by fingerprint, or a root the caller passes explicitly (then
   the claims say ``simulated=True`` unless it is Intel's); every certificate is
   valid at ``at`` and not revoked (root CA CRL, PCK CA CRL, each signature- and
   time-checked);
3. the QE report is signed by the PCK key, and its report data binds the
   attestation key: SHA-256(attestation key || QE auth data) then 32 zero bytes;
4. the quote (header and body) is signed by the attestation key;
5. TCB Info and QE Identity are signed by a TCB signing certificate chaining
   to the same anchor, current at ``at``, for this TEE, FMSPC and PCE-ID;
6. the QE report matches the QE Identity, the PCK TCB (and for TDX the
   TEE_TCB_SVN and the TDX module identity) matches a TCB level; statuses and
   advisories combine as Intel's QVL combines them;
7. debug TDs/enclaves are refused unless ``allow_debug``.

Signature checks whose inputs do not depend on the time (certificate signed
by issuer, CRL and TCB document signatures) are memoised on their exact input
bytes, so verifying many quotes against the same collateral costs about two
ECDSA verifications each; time checks are redone on every call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TypedDict, Unpack

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from donjon.attestation import pki
from donjon.attestation.claims import Claims, TcbStatus, TeeType, VerifiedEvidence
from donjon.attestation.dcap import INTEL_QE_VENDOR_ID, Quote, TdReportBody, parse_quote
from donjon.attestation.errors import AttestationError, CollateralError, MalformedEvidence, VerificationFailed
from donjon.attestation.intel import INTEL_SGX_ROOT_CA_SHA256, PckExtensions, parse_pck_extensions
from donjon.attestation.tcbinfo import (
    QeIdentity,
    TcbInfo,
    converge,
    match_qe_identity,
    match_tcb_level,
    parse_qe_identity,
    parse_tcb_info,
    split_signed_document,
)

__all__ = [
    "DcapOptions",
    "IntelCollateral",
    "parse_quote",
    "verify_dcap_quote",
    "verify_sgx_quote",
    "verify_tdx_quote",
]

_CACHE_SIZE = 128


@dataclass(frozen=True, kw_only=True)
class IntelCollateral:
    """Intel PCS collateral for one quote's platform, as served (bytes in, nothing parsed yet).

    ``tcb_info`` / ``qe_identity`` are the signed JSON documents; their issuer
    chains are PEM (TCB signing certificate, then the root). CRLs are PEM or DER:
    ``pck_crl`` from the PCK Platform or Processor CA that issued the quote's
    PCK certificate, ``root_crl`` from the Intel SGX Root CA. A missing QE
    Identity or missing CRLs are refused unless the verifier is told otherwise.
    """

    tcb_info: bytes
    tcb_info_issuer_chain: bytes
    qe_identity: bytes | None = None
    qe_identity_issuer_chain: bytes | None = None
    pck_crl: bytes | None = None
    root_crl: bytes | None = None


# --- memoised, time-independent building blocks -----------------------------------------------------------


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "<empty subject>"


@lru_cache(maxsize=_CACHE_SIZE)
def _load_chain(pem: bytes, what: str) -> tuple[x509.Certificate, ...]:
    certs = pki.load_certificates(pem.rstrip(b"\x00"), what=what)
    if not certs or len(certs) > pki.MAX_CHAIN_DEPTH:
        raise MalformedEvidence(
            f"{what}.length", f"{what} must hold 1..{pki.MAX_CHAIN_DEPTH} certificates", got=len(certs)
        )
    # cryptography decodes names, times and extensions lazily; decode them all now so that a
    # malformed certificate is MalformedEvidence here rather than a ValueError mid-verification.
    for cert in certs:
        try:
            cert.subject.rfc4514_string()
            cert.issuer.rfc4514_string()
            _ = (cert.not_valid_before_utc, cert.not_valid_after_utc, cert.serial_number, cert.extensions)
            cert.public_key()
        except pki.X509_DECODE_ERRORS as e:
            raise MalformedEvidence(f"{what}.parse", f"malformed certificate in {what}: {e}") from e
    return tuple(certs)


@lru_cache(maxsize=_CACHE_SIZE)
def _signed_by(child_der: bytes, issuer_der: bytes) -> bool:
    child = x509.load_der_x509_certificate(child_der)
    issuer = x509.load_der_x509_certificate(issuer_der)
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


@lru_cache(maxsize=_CACHE_SIZE)
def _pck_extensions(leaf_der: bytes) -> PckExtensions:
    return parse_pck_extensions(x509.load_der_x509_certificate(leaf_der))


@lru_cache(maxsize=_CACHE_SIZE)
def _ec_key_from_cert(der: bytes) -> ec.EllipticCurvePublicKey:
    key = x509.load_der_x509_certificate(der).public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise VerificationFailed("dcap.pck_key", "PCK certificate key is not an ECDSA P-256 key")
    return key


@lru_cache(maxsize=_CACHE_SIZE)
def _ec_key_from_point(raw: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)
    except ValueError as e:
        raise VerificationFailed("dcap.attestation_key", "attestation key is not a P-256 point") from e


def _ecdsa_ok(key: ec.EllipticCurvePublicKey, raw_sig: bytes, data: bytes) -> bool:
    """ECDSA P-256/SHA-256 with a raw r||s signature, as every DCAP structure carries it."""
    r = int.from_bytes(raw_sig[:32], "big")
    s = int.from_bytes(raw_sig[32:64], "big")
    try:
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


@lru_cache(maxsize=_CACHE_SIZE)
def _crl(data: bytes, issuer_der: bytes, what: str) -> x509.CertificateRevocationList:
    """Load a CRL and check its signature by ``issuer`` (its times are checked per call)."""
    crl = pki.load_crl(data)
    try:
        _ = (crl.issuer.rfc4514_string(), crl.last_update_utc, crl.next_update_utc, list(crl))
    except pki.X509_DECODE_ERRORS as e:
        raise CollateralError(f"{what}.parse", f"malformed CRL: {e}") from e
    pki.verify_crl_signature(crl, x509.load_der_x509_certificate(issuer_der), check=what)
    return crl


@lru_cache(maxsize=_CACHE_SIZE)
def _signed_document(data: bytes, member: str, signer_der: bytes) -> TcbInfo | QeIdentity:
    what = "tcb_info" if member == "tcbInfo" else "qe_identity"
    signed, signature = split_signed_document(data, member)
    key = _ec_key_from_cert(signer_der)
    if not _ecdsa_ok(key, signature, signed):
        raise CollateralError(f"{what}.signature", f"{member} is not signed by the TCB signing key")
    return parse_tcb_info(signed) if member == "tcbInfo" else parse_qe_identity(signed)


# --- per-call checks ---------------------------------------------------------------------------------------


def _anchor(
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate] | None,
    check: str,
    error: type[AttestationError],
) -> tuple[list[x509.Certificate], x509.Certificate]:
    """Split a chain (leaf first) into the path below the root and the trusted root."""
    path = list(chain)
    top = path[-1]
    if top.subject == top.issuer and len(path) > 1:
        path.pop()
    else:
        top = None  # type: ignore[assignment]
    if roots is None:
        if top is None or pki.fingerprint(top) != INTEL_SGX_ROOT_CA_SHA256:
            raise error(
                f"{check}.root_pin",
                "chain does not end at the pinned Intel SGX Root CA",
                expected=INTEL_SGX_ROOT_CA_SHA256,
                got=None if top is None else pki.fingerprint(top),
            )
        candidates: Sequence[x509.Certificate] = (top,)
    else:
        candidates = roots
    issuer = path[-1].issuer
    for root in candidates:
        if root.subject == issuer and _signed_by(_der(path[-1]), _der(root)):
            return path, root
    raise error(
        f"{check}.untrusted_root",
        f"{_name(path[-1])} is not issued by a trusted root",
        got=None if top is None else pki.fingerprint(top),
    )


@dataclass(frozen=True)
class _Path:
    """A certificate path whose signatures (and revocation by the CRLs it was checked
    against) are verified; only its validity window remains to check at a given time."""

    certs: tuple[x509.Certificate, ...]
    root: x509.Certificate
    start: datetime
    end: datetime


def _checked_path(
    path: Sequence[x509.Certificate],
    root: x509.Certificate,
    check: str,
    error: type[AttestationError],
    crls: Sequence[x509.CertificateRevocationList] = (),
) -> _Path:
    root_der = _der(root)
    if not _signed_by(root_der, root_der):
        raise error(f"{check}.root.signature", f"root {_name(root)} is not validly self-signed")
    issuers = [*path[1:], root]
    for cert, issuer in zip(path, issuers, strict=True):
        if cert.issuer != issuer.subject or not _signed_by(_der(cert), _der(issuer)):
            raise error(
                f"{check}.signature", f"certificate {_name(cert)} is not validly signed by {_name(issuer)}"
            )
    for cert, issuer in zip(path, issuers, strict=True):
        for crl in crls:
            if crl.issuer == issuer.subject:
                pki.check_not_revoked(cert, crl, check=check)
    everything = [*path, root]
    return _Path(
        tuple(path),
        root,
        max(c.not_valid_before_utc for c in everything),
        min(c.not_valid_after_utc for c in everything),
    )


def _check_window(path: _Path, at: datetime, check: str, error: type[AttestationError]) -> None:
    if path.start <= at <= path.end:
        return
    for cert in (*path.certs, path.root):  # outside the window: name the certificate
        pki.check_validity(cert, at, check=check, error=error)


@dataclass(frozen=True)
class _Pck:
    """The quote's PCK chain, verified up to a trust anchor (times aside)."""

    path: _Path
    leaf_key: ec.EllipticCurvePublicKey
    extensions: PckExtensions
    simulated: bool


@lru_cache(maxsize=_CACHE_SIZE)
def _pck(pem: bytes, roots: tuple[x509.Certificate, ...] | None) -> _Pck:
    chain = _load_chain(pem, "pck_chain")
    path, root = _anchor(chain, roots, "dcap.pck_chain", VerificationFailed)
    if len(path) != 2:
        raise VerificationFailed(
            "dcap.pck_chain.length", "PCK chain must be PCK leaf, PCK CA, root", expected=3, got=len(path) + 1
        )
    checked = _checked_path(path, root, "dcap.pck_chain", VerificationFailed)
    leaf_der = _der(path[0])
    return _Pck(
        checked,
        _ec_key_from_cert(leaf_der),
        _pck_extensions(leaf_der),
        pki.fingerprint(root) != INTEL_SGX_ROOT_CA_SHA256,
    )


@dataclass(frozen=True)
class _Crl:
    """A signature-checked CRL with what each verification needs precomputed."""

    crl: x509.CertificateRevocationList
    revoked: frozenset[int]
    this_update: datetime
    next_update: datetime | None

    @classmethod
    def of(cls, crl: x509.CertificateRevocationList) -> _Crl:
        return cls(
            crl, frozenset(entry.serial_number for entry in crl), crl.last_update_utc, crl.next_update_utc
        )

    def check_times(self, at: datetime, what: str) -> None:
        pki.check_current(self.this_update, self.next_update, at, check=what)

    def check_not_revoked(self, cert: x509.Certificate, check: str) -> None:
        if cert.serial_number in self.revoked:
            pki.check_not_revoked(cert, self.crl, check=check)


@dataclass(frozen=True)
class _Prepared:
    """Collateral whose signatures are verified for one root and PCK CA (times aside)."""

    root_crl: _Crl | None
    pck_crl: _Crl | None
    tcb_info: TcbInfo
    tcb_path: _Path
    qe_identity: QeIdentity | None
    qe_path: _Path | None


def _static_document(
    data: bytes,
    chain_pem: bytes | None,
    member: str,
    root: x509.Certificate,
    pinned: bool,
    crls: Sequence[x509.CertificateRevocationList],
) -> tuple[TcbInfo | QeIdentity, _Path]:
    what = "tcb_info" if member == "tcbInfo" else "qe_identity"
    if chain_pem is None:
        raise CollateralError(f"{what}.issuer_chain", f"no issuer chain for {member}")
    try:
        chain = _load_chain(chain_pem, f"{what}_issuer_chain")
    except MalformedEvidence as e:
        raise CollateralError(e.check, e.reason) from e
    path, doc_root = _anchor(chain, None if pinned else (root,), f"{what}.chain", CollateralError)
    if _der(doc_root) != _der(root):
        raise CollateralError(
            f"{what}.chain.untrusted_root", f"{member} is not signed under the quote's root"
        )
    checked = _checked_path(path, root, f"{what}.chain", CollateralError, crls)
    return _signed_document(data, member, _der(path[0])), checked


@lru_cache(maxsize=_CACHE_SIZE)
def _prepare(
    collateral: IntelCollateral, pck_pem: bytes, roots: tuple[x509.Certificate, ...] | None
) -> _Prepared:
    # Keyed by the PCK chain's bytes rather than by certificates: hashing bytes is cached by
    # Python, hashing a Certificate is not.
    path = _pck(pck_pem, roots).path
    root, pck_ca, pinned = path.root, path.certs[1], roots is None
    root_der = _der(root)
    root_crl = pck_crl = None
    if collateral.root_crl is not None:
        root_crl = _Crl.of(_crl(collateral.root_crl, root_der, "dcap.root_crl"))
    if collateral.pck_crl is not None:
        pck_crl = _Crl.of(_crl(collateral.pck_crl, _der(pck_ca), "dcap.pck_crl"))
    crls = () if root_crl is None else (root_crl.crl,)
    info, tcb_path = _static_document(
        collateral.tcb_info, collateral.tcb_info_issuer_chain, "tcbInfo", root, pinned, crls
    )
    assert isinstance(info, TcbInfo)
    identity: QeIdentity | None = None
    qe_path: _Path | None = None
    if collateral.qe_identity is not None:
        doc, qe_path = _static_document(
            collateral.qe_identity, collateral.qe_identity_issuer_chain, "enclaveIdentity", root, pinned, crls
        )
        assert isinstance(doc, QeIdentity)
        identity = doc
    return _Prepared(root_crl, pck_crl, info, tcb_path, identity, qe_path)


def _check_document_times(doc: TcbInfo | QeIdentity, at: datetime, what: str) -> None:
    pki.check_current(doc.issue_date, doc.next_update, at, check=what, what="document")


def verify_dcap_quote(
    quote: bytes,
    *,
    collateral: IntelCollateral,
    roots: Sequence[x509.Certificate] | None = None,
    at: datetime,
    tee: TeeType | None = None,
    allow_debug: bool = False,
    allow_missing_qe_identity: bool = False,
    allow_missing_crls: bool = False,
    allowed_statuses: Collection[TcbStatus] | None = None,
    allowed_advisories: Collection[str] | None = None,
    report_data: bytes | None = None,
) -> VerifiedEvidence:
    """Verify an SGX or TDX DCAP quote (``tee`` restricts which); see the module docstring.

    ``roots=None`` trusts only Intel's pinned SGX Root CA. ``allowed_statuses``
    (default: any except Revoked, which is always refused) and
    ``allowed_advisories`` (default: any) let the caller refuse here; otherwise
    the status and advisories are reported in the claims for the policy.
    ``allow_missing_qe_identity`` and ``allow_missing_crls`` accept collateral
    without them (insecure: the QE's TCB or revocations go unchecked).
    ``report_data``, when given, must equal the quote's 64-byte REPORTDATA.
    """
    pki.require_aware(at)
    q = parse_quote(quote)
    expect = TeeType.TDX if q.is_tdx else TeeType.SGX
    if tee is not None and tee != expect:
        raise VerificationFailed(
            "dcap.tee_type", "quote is for another TEE", expected=tee.value, got=expect.value
        )
    if q.header.qe_vendor_id != INTEL_QE_VENDOR_ID:
        raise VerificationFailed(
            "dcap.qe_vendor_id",
            "quote is not from Intel's quoting enclave",
            expected=INTEL_QE_VENDOR_ID,
            got=q.header.qe_vendor_id,
        )
    sig = q.signature

    # 2. PCK chain to the anchor (memoised), CRLs, revocation and validity at ``at``.
    roots_key = None if roots is None else tuple(roots)
    pck_chain = _pck(sig.pck_cert_chain, roots_key)
    leaf, pck_ca = pck_chain.path.certs
    if (collateral.root_crl is None or collateral.pck_crl is None) and not allow_missing_crls:
        raise CollateralError("dcap.crl.missing", "the root CA CRL and the PCK CA CRL are required")
    prepared = _prepare(collateral, sig.pck_cert_chain, roots_key)
    if prepared.root_crl is not None:
        prepared.root_crl.check_times(at, "dcap.root_crl")
        prepared.root_crl.check_not_revoked(pck_ca, "dcap.pck_chain")
    if prepared.pck_crl is not None:
        prepared.pck_crl.check_times(at, "dcap.pck_crl")
        prepared.pck_crl.check_not_revoked(leaf, "dcap.pck_chain")
    _check_window(pck_chain.path, at, "dcap.pck_chain", VerificationFailed)

    # 3. QE report: signed by the PCK key, binding the attestation key.
    if not _ecdsa_ok(pck_chain.leaf_key, sig.qe_report_signature, sig.qe_report.raw):
        raise VerificationFailed(
            "dcap.qe_report.signature", "QE report is not signed by the PCK certificate's key"
        )
    binding = hashlib.sha256(sig.attestation_key + sig.qe_auth_data).digest() + bytes(32)
    if sig.qe_report.report_data != binding:
        raise VerificationFailed(
            "dcap.qe_report.binding",
            "QE report data does not bind the attestation key",
            expected=binding,
            got=sig.qe_report.report_data,
        )
    if sig.qe_report.debug:
        raise VerificationFailed("dcap.qe_report.debug", "the quoting enclave runs in debug mode")

    # 4. The quote itself.
    if not _ecdsa_ok(_ec_key_from_point(sig.attestation_key), sig.signature, q.signed_data):
        raise VerificationFailed("dcap.quote.signature", "quote is not signed by the attestation key")

    # 5. Collateral: signatures were checked once (memoised); times, TEE and platform now.
    pck = pck_chain.extensions
    info = prepared.tcb_info
    _check_window(prepared.tcb_path, at, "tcb_info.chain", CollateralError)
    _check_document_times(info, at, "tcb_info")
    if info.id != ("TDX" if q.is_tdx else "SGX") or (q.is_tdx and info.version < 3):
        raise CollateralError(
            "tcb_info.id", "TCB Info is for another TEE", expected=expect.value, got=info.id
        )
    if info.fmspc != pck.fmspc or info.pce_id != pck.pce_id:
        raise CollateralError(
            "tcb_info.fmspc",
            "TCB Info is for another platform (FMSPC/PCE-ID)",
            expected=(pck.fmspc + pck.pce_id).hex(),
            got=(info.fmspc + info.pce_id).hex(),
        )
    if info.tcb_type != 0:
        raise CollateralError("tcb_info.tcb_type", "unsupported TCB type", expected=0, got=info.tcb_type)
    identity = prepared.qe_identity
    if identity is not None:
        assert prepared.qe_path is not None
        _check_window(prepared.qe_path, at, "qe_identity.chain", CollateralError)
        _check_document_times(identity, at, "qe_identity")
        want = "TD_QE" if q.is_tdx else "QE"
        if identity.id != want:
            raise CollateralError(
                "qe_identity.id", "QE Identity is for another enclave", expected=want, got=identity.id
            )
    elif not allow_missing_qe_identity:
        raise CollateralError("dcap.qe_identity.missing", "QE Identity is required")

    # 6. TCB levels and statuses.
    body = q.body
    if isinstance(body, TdReportBody):
        match = match_tcb_level(
            info,
            pck.tcb_comp_svns,
            pck.pce_svn,
            tee_tcb_svn=body.tee_tcb_svn,
            mrsignerseam=body.mrsignerseam,
            seam_attributes=body.seam_attributes,
        )
    else:
        match = match_tcb_level(info, pck.tcb_comp_svns, pck.pce_svn)
    status, advisories = match.status, match.advisory_ids
    qe_status: TcbStatus | None = None
    if identity is not None:
        qe = sig.qe_report
        qe_level = match_qe_identity(
            identity, qe.miscselect, qe.attributes, qe.mrsigner, qe.isv_prod_id, qe.isv_svn
        )
        qe_status = qe_level.status
        status = converge(status, qe_status)
        advisories = advisories + tuple(a for a in qe_level.advisory_ids if a not in advisories)

    # 7. Caller's refusals.
    if body.debug and not allow_debug:
        raise VerificationFailed(
            "dcap.debug",
            "debug TDs and enclaves are refused unless allowed",
            field="attributes",
            got=(body.td_attributes if isinstance(body, TdReportBody) else body.attributes),
        )
    if status == TcbStatus.REVOKED:
        raise VerificationFailed("dcap.tcb.revoked", "the platform's TCB is revoked")
    if allowed_statuses is not None and status not in allowed_statuses:
        raise VerificationFailed(
            "dcap.tcb.status",
            "TCB status is not allowed",
            expected=", ".join(sorted(s.value for s in allowed_statuses)),
            got=status.value,
        )
    if allowed_advisories is not None:
        extra = [a for a in advisories if a not in allowed_advisories]
        if extra:
            raise VerificationFailed(
                "dcap.tcb.advisories", "TCB has advisories that are not allowed", got=", ".join(extra)
            )

    if report_data is not None and body.report_data != report_data:
        raise VerificationFailed(
            "dcap.report_data",
            "REPORTDATA is not the expected binding",
            expected=report_data,
            got=body.report_data,
        )
    simulated = pck_chain.simulated
    # Not silent when allow_missing_crls let a quote through without revocation checks.
    crl_checked = prepared.root_crl is not None and prepared.pck_crl is not None
    claims = _claims(
        q, pck, info, match.level.tcb_date, status, advisories, match.module_status, qe_status, simulated,
        crl_checked,
    )  # fmt: skip
    return VerifiedEvidence._create(claims, hashlib.sha256(quote).digest(), at)


def _claims(
    q: Quote,
    pck: PckExtensions,
    info: TcbInfo,
    tcb_date: str,
    status: TcbStatus,
    advisories: tuple[str, ...],
    module_status: TcbStatus | None,
    qe_status: TcbStatus | None,
    simulated: bool,
    crl_checked: bool,
) -> Claims:
    sig = q.signature
    raw: dict[str, object] = {
        "crl_checked": crl_checked,
        "quote_version": q.header.version,
        "body_type": q.body_type,
        "fmspc": pck.fmspc,
        "pce_id": pck.pce_id,
        "pce_svn": pck.pce_svn,
        "cpu_svn": pck.cpu_svn,
        "tcb_comp_svns": pck.tcb_comp_svns,
        "sgx_type": pck.sgx_type,
        "qe_svn": sig.qe_report.isv_svn,
        "qe_status": None if qe_status is None else qe_status.value,
        "tcb_date": tcb_date,
        "tcb_evaluation_data_number": info.evaluation_data_number,
    }
    body = q.body
    measurement: bytes
    signer: bytes | None
    measurements: dict[str, bytes]
    if isinstance(body, TdReportBody):
        tee, measurement, signer = TeeType.TDX, body.mrtd, None
        measurements = {
            "mrtd": body.mrtd,
            "rtmr0": body.rtmrs[0],
            "rtmr1": body.rtmrs[1],
            "rtmr2": body.rtmrs[2],
            "rtmr3": body.rtmrs[3],
            "mrconfigid": body.mrconfigid,
            "mrowner": body.mrowner,
            "mrownerconfig": body.mrownerconfig,
            "mrseam": body.mrseam,
        }
        if body.mrservicetd is not None:
            measurements["mrservicetd"] = body.mrservicetd
        raw.update(
            tee_tcb_svn=body.tee_tcb_svn,
            tee_tcb_svn2=body.tee_tcb_svn2,
            mrsignerseam=body.mrsignerseam,
            seam_attributes=body.seam_attributes,
            attributes=body.td_attributes,
            xfam=body.xfam,
            tdx_module_status=None if module_status is None else module_status.value,
        )
    else:
        tee, measurement, signer = TeeType.SGX, body.mrenclave, body.mrsigner
        measurements = {"mrenclave": body.mrenclave, "mrsigner": body.mrsigner, "config_id": body.config_id}
        raw.update(
            isv_prod_id=body.isv_prod_id,
            isv_svn=body.isv_svn,
            attributes=body.attributes,
            miscselect=body.miscselect,
            enclave_cpu_svn=body.cpu_svn,
            config_svn=body.config_svn,
            isv_ext_prod_id=body.isv_ext_prod_id,
            isv_family_id=body.isv_family_id,
        )
    return Claims(
        tee=tee,
        platform=pck.fmspc.hex(),
        measurement=measurement,
        report_data=body.report_data,
        debug=body.debug,
        tcb_status=status,
        advisory_ids=advisories,
        signer=signer,
        measurements=measurements,
        raw=raw,
        simulated=simulated,
    )


class DcapOptions(TypedDict, total=False):
    """The optional keyword arguments of :func:`verify_dcap_quote` (and its TDX/SGX forms)."""

    roots: Sequence[x509.Certificate] | None
    allow_debug: bool
    allow_missing_qe_identity: bool
    allow_missing_crls: bool
    allowed_statuses: Collection[TcbStatus] | None
    allowed_advisories: Collection[str] | None
    report_data: bytes | None


def verify_tdx_quote(
    quote: bytes, *, collateral: IntelCollateral, at: datetime, **options: Unpack[DcapOptions]
) -> VerifiedEvidence:
    """Verify an Intel TDX quote (v4 or v5); see :func:`verify_dcap_quote`."""
    return verify_dcap_quote(quote, collateral=collateral, at=at, tee=TeeType.TDX, **options)


def verify_sgx_quote(
    quote: bytes, *, collateral: IntelCollateral, at: datetime, **options: Unpack[DcapOptions]
) -> VerifiedEvidence:
    """Verify an Intel SGX DCAP quote (v3, or v4/v5 with an SGX body); see :func:`verify_dcap_quote`."""
    return verify_dcap_quote(quote, collateral=collateral, at=at, tee=TeeType.SGX, **options)
