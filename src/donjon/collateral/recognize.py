"""Tell collateral files apart by their content, not their names.

An offline bundle is whatever an operator copied from a connected machine:
PEM or DER certificates and chains, CRLs in PEM or DER, Intel TCB info and QE
identity JSON. File names are only labels. Pure: bytes in, a
:class:`Recognized` or ``None`` out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from donjon.collateral.validity import DocKind

__all__ = ["MAX_DOCUMENT_BYTES", "Recognized", "recognize"]

#: No collateral document is larger than this (the largest, a PCK CRL, is tens of KiB).
MAX_DOCUMENT_BYTES = 1 << 20


@dataclass(frozen=True)
class Recognized:
    """One recognised document. Exactly one of ``certificates``, ``crl``, ``json`` is set."""

    kind: DocKind
    name: str
    body: bytes
    certificates: tuple[x509.Certificate, ...] = ()
    crl: x509.CertificateRevocationList | None = None
    json: dict[str, Any] = field(default_factory=dict)


def recognize(data: bytes, name: str) -> Recognized | None:
    """What ``data`` is, or ``None`` when it is no collateral Donjon knows (or too large)."""
    if not data or len(data) > MAX_DOCUMENT_BYTES:
        return None
    head = data.lstrip()[:1]
    if head == b"{":
        return _json(data, name)
    if _is_text(data) and b"-----BEGIN CERTIFICATE-----" in data:
        try:
            certs = tuple(x509.load_pem_x509_certificates(data))
        except (ValueError, UnsupportedAlgorithm):
            return None
        return Recognized(DocKind.CERTIFICATES, name, data, certificates=certs)
    if _is_text(data) and b"-----BEGIN X509 CRL-----" in data:
        try:
            crl = x509.load_pem_x509_crl(data)
        except ValueError:
            return None
        return Recognized(DocKind.CRL, name, data, crl=crl)
    if data[:1] != b"\x30":  # DER: a SEQUENCE
        return None
    try:
        cert = x509.load_der_x509_certificate(data)
        return Recognized(DocKind.CERTIFICATES, name, data, certificates=(cert,))
    except (ValueError, UnsupportedAlgorithm):
        pass
    try:
        crl = x509.load_der_x509_crl(data)
    except ValueError:
        return None
    return Recognized(DocKind.CRL, name, data, crl=crl)


def _is_text(data: bytes) -> bool:
    """PEM files are text; binary evidence (a quote) can embed PEM and must not pass for a chain."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in data


def _json(data: bytes, name: str) -> Recognized | None:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    # Intel PCS: TCB info is {"tcbInfo": {...}, "signature": hex}; QE identity
    # is {"enclaveIdentity": {...}, "signature": hex}.
    if isinstance(obj.get("tcbInfo"), dict):
        return Recognized(DocKind.TCB_INFO, name, data, json=obj)
    if isinstance(obj.get("enclaveIdentity"), dict):
        return Recognized(DocKind.QE_IDENTITY, name, data, json=obj)
    return None
