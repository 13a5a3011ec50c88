"""Tell collateral files apart by their content, not their names (for offline bundles).

An offline bundle is whatever an operator copied from a connected machine:
PEM or DER certificates and chains, CRLs in PEM or DER, Intel TCB info and QE
identity JSON. File names are only labels. Pure: bytes in, a list of
:class:`Recognized` documents out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
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


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in data
