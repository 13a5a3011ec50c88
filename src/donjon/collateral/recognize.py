"""Tell collateral files apart by their content, not their names (for offline bundles).

An offline bundle is whatever an operator copied from a connected machine:
PEM or DER certificates and chains, CRLs in PEM or DER, Intel TCB info and QE
identity JSON. File names are only labels. Pure: bytes in, a list of
:class:`Recognized` documents out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from donjon.attestation.detect import recognise_collateral
from donjon.attestation.errors import CollateralError
from donjon.collateral.validity import DocKind, parse_intel_json

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


def recognize(data: bytes, name: str) -> list[Recognized]:
    """The collateral documents in ``data`` (none when it is no collateral Donjon knows, or too large).

    Recognition is the attestation library's
    (:func:`donjon.attestation.detect.recognise_collateral`: PEM bundles, DER
    certificates, PkiPath, CRLs, Intel JSON), split here into one item per
    document the cache files separately: the certificates of a file together,
    each CRL alone (as DER), each JSON document as its exact bytes.
    """
    if not data or len(data) > MAX_DOCUMENT_BYTES:
        return []
    # PEM files are text; binary evidence (a DCAP quote) embeds PEM
    # certificates and must not pass for a chain.
    if b"-----BEGIN " in data and not _is_text(data):
        return []
    if data.lstrip()[:1] == b"{":
        bundled = _quote_collateral(data, name)
        if bundled is not None:
            return bundled
    try:
        found = recognise_collateral(data, source=name)
    except (CollateralError, RecursionError):
        # RecursionError: deeply nested JSON, which json.loads does not bound.
        return []
    out: list[Recognized] = []
    if found.certificates:
        out.append(Recognized(DocKind.CERTIFICATES, name, data, certificates=tuple(found.certificates)))
    for crl in found.crls:
        out.append(Recognized(DocKind.CRL, name, crl.public_bytes(serialization.Encoding.DER), crl=crl))
    for kind, raws in ((DocKind.TCB_INFO, found.tcb_info), (DocKind.QE_IDENTITY, found.qe_identity)):
        for raw in raws:
            try:
                obj = parse_intel_json(raw, kind)
            except CollateralError:
                continue
            out.append(Recognized(kind, name, raw, json=obj))
    return out


#: Keys of the "QuoteCollateralV3" JSON that dcap-qvl and Intel's QVL tools write: every
#: piece of Intel collateral for one quote in one file.
_QUOTE_COLLATERAL_KEYS = frozenset(
    {
        "pck_crl_issuer_chain",
        "root_ca_crl",
        "pck_crl",
        "tcb_info_issuer_chain",
        "tcb_info",
        "tcb_info_signature",
        "qe_identity_issuer_chain",
        "qe_identity",
        "qe_identity_signature",
    }
)


def _quote_collateral(data: bytes, name: str) -> list[Recognized] | None:
    """Split a QuoteCollateralV3 JSON into the documents Intel PCS serves, or ``None`` if it is not one.

    TCB info and QE identity travel there as the raw text of the signed inner
    object plus a hex signature; they are rebuilt as PCS serves them,
    ``{"tcbInfo":<raw text>,"signature":"<hex>"}``, keeping the signed text
    byte for byte. The CRLs are hex DER.
    """
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict) or not obj.keys() >= _QUOTE_COLLATERAL_KEYS:
        return None
    if not all(isinstance(obj[k], str) for k in _QUOTE_COLLATERAL_KEYS):
        return []
    out: list[Recognized] = []
    try:
        for key in ("pck_crl_issuer_chain", "tcb_info_issuer_chain", "qe_identity_issuer_chain"):
            pem = obj[key].encode()
            out.append(
                Recognized(
                    DocKind.CERTIFICATES,
                    f"{name}#{key}",
                    pem,
                    certificates=tuple(x509.load_pem_x509_certificates(pem)),
                )
            )
        for key in ("pck_crl", "root_ca_crl"):
            crl = x509.load_der_x509_crl(bytes.fromhex(obj[key]))
            out.append(
                Recognized(
                    DocKind.CRL, f"{name}#{key}", crl.public_bytes(serialization.Encoding.DER), crl=crl
                )
            )
        for kind, inner, outer in (
            (DocKind.TCB_INFO, "tcb_info", "tcbInfo"),
            (DocKind.QE_IDENTITY, "qe_identity", "enclaveIdentity"),
        ):
            signature = obj[f"{inner}_signature"]
            bytes.fromhex(signature)  # hex, so it cannot break out of the JSON string below
            raw = f'{{"{outer}":{obj[inner]},"signature":"{signature}"}}'.encode()
            out.append(Recognized(kind, f"{name}#{inner}", raw, json=parse_intel_json(raw, kind)))
    except (ValueError, UnsupportedAlgorithm, CollateralError):
        return []
    return out


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in data
