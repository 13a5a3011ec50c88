"""X.509 building blocks shared by the vendor verifiers: loading, chains, CRLs, pins.

Pure: certificates, CRLs and the verification time are arguments. ``cryptography``
does the signature work (RSA PKCS#1, RSA-PSS as AMD uses, ECDSA as Intel uses);
this module decides what is checked and turns every failure into the library's
exceptions, naming the certificate that failed.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from donjon.attestation.errors import AttestationError, CollateralError, MalformedEvidence, VerificationFailed

__all__ = [
    "MAX_CHAIN_DEPTH",
    "MAX_PEM_BYTES",
    "X509_DECODE_ERRORS",
    "check_current",
    "check_not_revoked",
    "check_signed_by",
    "check_validity",
    "fingerprint",
    "load_certificates",
    "load_crl",
    "require_aware",
    "verify_crl",
    "verify_crl_signature",
]

#: No vendor chain is longer than root, intermediate, leaf; allow a little slack.
MAX_CHAIN_DEPTH = 5
#: Certificate or CRL input larger than this is refused before parsing.
MAX_PEM_BYTES = 1 << 20
#: What ``cryptography`` raises for malformed certificates and CRLs, at load time or later when
#: a lazily decoded part (names, extensions, times) is first read: TypeError, for instance,
#: for a name attribute of the wrong ASN.1 type; InvalidVersion and DuplicateExtension are no
#: ValueErrors.
X509_DECODE_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
)


def require_aware(at: datetime) -> datetime:
    """Verification times must carry a timezone: a naive time is a bug, not UTC."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("verification time must be timezone-aware (e.g. datetime.now(timezone.utc))")
    return at


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, lowercase hex: the form roots are pinned in."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "<empty subject>"


def load_certificates(data: bytes, *, what: str = "certificate") -> list[x509.Certificate]:
    """Certificates from PEM (one or many) or a single DER certificate."""
    if len(data) > MAX_PEM_BYTES:
        raise MalformedEvidence(f"{what}.size", f"{what} input of {len(data)} bytes exceeds {MAX_PEM_BYTES}")
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except X509_DECODE_ERRORS as e:
        raise MalformedEvidence(f"{what}.parse", f"not a valid X.509 {what}: {e}") from e
    return certs


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from PEM or DER (Intel serves both)."""
    if len(data) > MAX_PEM_BYTES:
        raise CollateralError("crl.size", f"CRL of {len(data)} bytes exceeds {MAX_PEM_BYTES}")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except X509_DECODE_ERRORS as e:
        raise CollateralError("crl.parse", f"not a valid CRL: {e}") from e


def check_validity(
    cert: x509.Certificate,
    at: datetime,
    *,
    check: str,
    error: type[AttestationError] = VerificationFailed,
) -> None:
    """Raise ``error`` (``{check}.not_yet_valid`` or ``.expired``) unless ``cert`` is valid at ``at``."""
    if at < cert.not_valid_before_utc:
        raise error(
            f"{check}.not_yet_valid",
            f"certificate {_name(cert)} is not valid before {cert.not_valid_before_utc.isoformat()}",
            expected=f">= {cert.not_valid_before_utc.isoformat()}",
            got=at.isoformat(),
        )
    if at > cert.not_valid_after_utc:
        raise error(
            f"{check}.expired",
            f"certificate {_name(cert)} expired at {cert.not_valid_after_utc.isoformat()}",
            expected=f"<= {cert.not_valid_after_utc.isoformat()}",
            got=at.isoformat(),
        )


def check_signed_by(cert: x509.Certificate, issuer: x509.Certificate, check: str) -> None:
    """Raise ``{check}.signature`` unless ``issuer`` issued ``cert`` (issuer name and signature)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as e:
        raise VerificationFailed(
            f"{check}.signature",
            f"certificate {_name(cert)} is not validly signed by {_name(issuer)}: {e or type(e).__name__}",
        ) from e


def verify_crl(
    crl: x509.CertificateRevocationList,
    issuer: x509.Certificate,
    at: datetime,
    *,
    check: str = "crl",
) -> None:
    """Accept a CRL only if ``issuer`` signed it and it is current at ``at``."""
    require_aware(at)
    verify_crl_signature(crl, issuer, check=check)
    check_current(crl.last_update_utc, crl.next_update_utc, at, check=check)


def verify_crl_signature(
    crl: x509.CertificateRevocationList, issuer: x509.Certificate, *, check: str = "crl"
) -> None:
    """The time-independent half of :func:`verify_crl`: ``issuer`` is the CRL's issuer and signed it."""
    if crl.issuer != issuer.subject:
        raise CollateralError(
            f"{check}.issuer",
            "CRL issuer does not match the certificate expected to sign it",
            expected=issuer.subject.rfc4514_string(),
            got=crl.issuer.rfc4514_string(),
        )
    try:
        valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm) as e:
        raise CollateralError(f"{check}.signature", f"cannot check CRL signature: {e}") from e
    if not valid:
        raise CollateralError(f"{check}.signature", f"CRL is not signed by {_name(issuer)}")


def check_current(
    issued: datetime, next_update: datetime | None, at: datetime, *, check: str, what: str = "CRL"
) -> None:
    """Collateral issued at ``issued`` and due for renewal at ``next_update`` is current at ``at``.

    For CRLs (the time half of :func:`verify_crl`) and Intel's TCB Info / QE Identity. Without a
    next update it is never current: RFC 5280 5.1.2.5 has conforming CAs always set nextUpdate, and
    a stale document would otherwise be accepted forever.
    """
    if at < issued:
        raise CollateralError(
            f"{check}.not_yet_valid",
            f"{what} was issued after the verification time",
            expected=f">= {issued.isoformat()}",
            got=at.isoformat(),
        )
    if next_update is None or at > next_update:
        raise CollateralError(
            f"{check}.expired",
            f"{what} is not current at the verification time",
            expected=f"<= {next_update.isoformat() if next_update else 'a nextUpdate'}",
            got=at.isoformat(),
        )


def check_not_revoked(
    cert: x509.Certificate, crl: x509.CertificateRevocationList, *, check: str = "chain"
) -> None:
    """Raise if ``cert``'s serial number is listed in ``crl``."""
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is not None:
        raise VerificationFailed(
            f"{check}.revoked",
            f"certificate {_name(cert)} (serial {cert.serial_number:x}) is revoked since "
            f"{entry.revocation_date_utc.isoformat()}",
        )
