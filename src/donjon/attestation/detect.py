"""Recognise evidence and collateral by content, so callers need not say what a file is.

Used by the ``donjon evidence`` CLI: ``--collateral`` takes any mix of
certificates (PEM bundles, DER, DER PkiPath, an SEV-SNP extended report's
certificate table), CRLs (PEM or DER), Intel TCB info and QE identity JSON;
the evidence file may be raw binary or hex text. Pure: bytes in, a
:class:`Collateral` or an :class:`EvidenceKind` out.
"""

from __future__ import annotations

import binascii
import json
import re
import struct
import uuid

from cryptography import x509

from donjon.attestation.amd import parse_cert_table
from donjon.attestation.errors import CollateralError, MalformedEvidence
from donjon.attestation.pki import MAX_PEM_BYTES, X509_DECODE_ERRORS
from donjon.attestation.verify import MAX_EVIDENCE_BYTES, Collateral, EvidenceKind

__all__ = [
    "decode_evidence",
    "detect_evidence_kind",
    "recognise_collateral",
]

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.DOTALL)
_HEX_TEXT = re.compile(rb"^[0-9a-fA-F\s]+$")

#: SEV-SNP ATTESTATION_REPORT size; DCAP quote header fields (Intel "Quote Header").
_SNP_REPORT_SIZE = 0x4A0
_QUOTE_TEE_SGX = 0x00000000
_QUOTE_TEE_TDX = 0x00000081
#: GUIDs (as stored, little-endian fields) that open an SNP extended-report certificate table.
_CERT_TABLE_GUIDS = frozenset(
    uuid.UUID(text).bytes_le
    for text in (
        "63da758d-e664-4564-adc5-f4b93be8accd",  # VCEK
        "a8074bc2-a25a-483e-aae6-39c045a0b8a1",  # VLEK
        "4ab7b379-bbac-4fe4-a02f-05aef327c782",  # ASK
        "c0b406a4-a803-4952-9743-3fb6014cd0ae",  # ARK
    )
)
#: What ``cryptography`` raises for bytes that are not a certificate or CRL.
_X509_ERRORS = X509_DECODE_ERRORS
_CERT_KINDS = frozenset({"vcek", "vlek", "ask", "ark"})
#: CBOR tag 399 (0xd9 0x01 0x8f) wraps a CCA attestation token (collection).
_CCA_TAG = b"\xd9\x01\x8f"


def decode_evidence(data: bytes) -> bytes:
    """The evidence bytes of a file holding them raw or as hex text (whitespace allowed)."""
    if len(data) > 2 * MAX_EVIDENCE_BYTES + 4096:
        raise MalformedEvidence("evidence.size", "evidence file is too large", got=len(data))
    stripped = data.strip()
    if stripped and _HEX_TEXT.match(stripped):
        compact = b"".join(stripped.split())
        if len(compact) % 2 == 0:
            try:
                return binascii.unhexlify(compact)
            except binascii.Error:  # pragma: no cover - the regex admits only hex digits
                pass
    return data


def detect_evidence_kind(evidence: bytes) -> EvidenceKind:
    """Which kind of evidence ``evidence`` is, from its header (not a verification)."""
    if evidence.startswith(_CCA_TAG):
        return EvidenceKind.CCA_TOKEN
    if evidence.lstrip().startswith(b"{"):
        # Azure vTPM evidence is a JSON document; its hardware member names the TEE.
        azure = _azure_kind(evidence)
        if azure is not None:
            return azure
    if len(evidence) >= 48:
        version, key_type, tee_type = struct.unpack_from("<HHI", evidence, 0)
        # DCAP quote header: version 3 (SGX only) or 4/5 (TEE type at offset 4),
        # attestation key type 2 (ECDSA P-256) or 3 (P-384).
        if version in (3, 4, 5) and key_type in (2, 3):
            if version == 3 or tee_type == _QUOTE_TEE_SGX:
                return EvidenceKind.SGX_QUOTE
            if tee_type == _QUOTE_TEE_TDX:
                return EvidenceKind.TDX_QUOTE
    if len(evidence) == _SNP_REPORT_SIZE:
        (version,) = struct.unpack_from("<I", evidence, 0)
        if 2 <= version <= 5:
            return EvidenceKind.SNP_REPORT
    raise MalformedEvidence(
        "evidence.kind",
        f"not a recognised SEV-SNP report, DCAP quote or CCA token ({len(evidence)} bytes, "
        f"starting {evidence[:8].hex()})",
    )


def _azure_kind(evidence: bytes) -> EvidenceKind | None:
    try:
        doc = json.loads(evidence)
    except (ValueError, RecursionError):
        return None
    if isinstance(doc, dict) and ("hcl_report" in doc or "report" in doc):
        if "vcek" in doc:
            return EvidenceKind.AZURE_SNP_VTPM
        if "td_quote" in doc:
            return EvidenceKind.AZURE_TDX_VTPM
    return None


def _pem(data: bytes, source: str) -> Collateral:
    certs: list[x509.Certificate] = []
    crls: list[x509.CertificateRevocationList] = []
    for match in _PEM_BLOCK.finditer(data):
        label = match.group(1)
        try:
            if label in (b"CERTIFICATE", b"TRUSTED CERTIFICATE"):
                certs.append(x509.load_pem_x509_certificate(match.group(0)))
            elif label == b"X509 CRL":
                crls.append(x509.load_pem_x509_crl(match.group(0)))
        except _X509_ERRORS as e:
            raise CollateralError("collateral.parse", f"{source}: invalid PEM {label.decode()}: {e}") from e
    if not certs and not crls:
        raise CollateralError("collateral.unrecognised", f"{source}: PEM holds no certificate or CRL")
    return Collateral(certificates=tuple(certs), crls=tuple(crls), sources=(source,))


def _der_items(data: bytes) -> list[bytes]:
    # Split a DER SEQUENCE's content into its elements (for a PkiPath: SEQUENCE OF Certificate).
    def header(buf: bytes, pos: int) -> tuple[int, int]:
        if pos + 2 > len(buf):
            raise ValueError("truncated")
        first = buf[pos + 1]
        if first < 0x80:
            return pos + 2, first
        n = first & 0x7F
        if n == 0 or n > 4 or pos + 2 + n > len(buf):
            raise ValueError("bad length")
        return pos + 2 + n, int.from_bytes(buf[pos + 2 : pos + 2 + n], "big")

    if not data or data[0] != 0x30:
        raise ValueError("not a SEQUENCE")
    start, length = header(data, 0)
    if start + length != len(data):
        raise ValueError("trailing bytes")
    items: list[bytes] = []
    pos = start
    while pos < len(data):
        if data[pos] != 0x30:
            raise ValueError("element is not a SEQUENCE")
        body, size = header(data, pos)
        if body + size > len(data):
            raise ValueError("truncated element")
        items.append(data[pos : body + size])
        pos = body + size
        if len(items) > 16:
            raise ValueError("too many elements")
    return items


def _der(data: bytes, source: str) -> Collateral:
    try:
        return Collateral(certificates=(x509.load_der_x509_certificate(data),), sources=(source,))
    except _X509_ERRORS:
        pass
    try:
        return Collateral(crls=(x509.load_der_x509_crl(data),), sources=(source,))
    except _X509_ERRORS:
        pass
    try:
        certs = tuple(x509.load_der_x509_certificate(item) for item in _der_items(data))
    except _X509_ERRORS:
        certs = ()
    if certs:
        return Collateral(certificates=certs, sources=(source,))
    if len(data) >= 24 and data[:16] in _CERT_TABLE_GUIDS:
        # An SEV-SNP extended report's certificate table (configfs-tsm "auxblob").
        try:
            entries = parse_cert_table(data)
            certs = tuple(x509.load_der_x509_certificate(der) for kind, der in entries if kind in _CERT_KINDS)
        except (MalformedEvidence, *_X509_ERRORS) as e:
            raise CollateralError("collateral.parse", f"{source}: invalid SNP certificate table: {e}") from e
        return Collateral(certificates=certs, sources=(source,))
    raise CollateralError(
        "collateral.unrecognised", f"{source}: not a certificate, CRL, PkiPath, TCB info or QE identity"
    )


def _json(data: bytes, source: str) -> Collateral:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise CollateralError("collateral.parse", f"{source}: invalid JSON: {type(e).__name__}") from e
    if isinstance(doc, dict):
        if "tcbInfo" in doc:
            return Collateral(tcb_info=(data,), sources=(source,))
        if "enclaveIdentity" in doc or "qeIdentity" in doc:
            return Collateral(qe_identity=(data,), sources=(source,))
    raise CollateralError(
        "collateral.unrecognised",
        f"{source}: JSON is neither Intel TCB info nor QE identity (a QuoteCollateralV3 file is an "
        "offline bundle: donjon.collateral.import_bundle splits it; docs/collateral.md)",
    )


def recognise_collateral(data: bytes, *, source: str = "<collateral>") -> Collateral:
    """A :class:`Collateral` holding whatever ``data`` is, recognised by content.

    Raises :class:`CollateralError` (``collateral.unrecognised``) for anything
    else; nothing in the result has been verified yet.
    """
    if len(data) > MAX_PEM_BYTES:
        raise CollateralError("collateral.size", f"{source}: {len(data)} bytes exceeds {MAX_PEM_BYTES}")
    # JSON first: a JSON document may quote PEM inside strings (a "QuoteCollateralV3" file holds
    # escaped issuer chains), and must then be judged as JSON, not as broken PEM.
    if data.lstrip().startswith(b"{"):
        return _json(data, source)
    if b"-----BEGIN " in data:
        return _pem(data, source)
    return _der(data, source)
