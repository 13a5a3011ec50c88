"""How long a collateral document says it is current, read from the document itself.

The cache uses this to decide when to refetch. Nothing here checks a
signature: the attestation library does that when it uses the document. A
document that cannot be parsed is refused (it would only fail later, and must
not be cached).
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from donjon.attestation.errors import CollateralError, MalformedEvidence
from donjon.attestation.pki import load_certificates, load_crl

__all__ = ["DocKind", "chain_validity", "document_validity", "parse_intel_json", "parse_pcs_date"]

#: TCB info / QE identity JSON larger than this is refused (real ones are 5-30 KiB).
MAX_JSON_BYTES = 1 << 20


class DocKind(enum.StrEnum):
    CERTIFICATES = "certificates"
    CRL = "crl"
    TCB_INFO = "tcb_info"
    QE_IDENTITY = "qe_identity"


def parse_pcs_date(value: Any, what: str) -> datetime:
    """An ISO 8601 UTC date as Intel PCS writes them (``2023-07-18T08:42:58Z``)."""
    if not isinstance(value, str) or len(value) > 40:
        raise CollateralError("collateral.date", f"{what} is not a date string", got=value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise CollateralError("collateral.date", f"{what} is not an ISO 8601 date", got=value) from e
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def parse_intel_json(body: bytes, kind: DocKind) -> dict[str, Any]:
    """The outer object of a TCB info (``{"tcbInfo": ..., "signature": ...}``) or QE identity document."""
    if len(body) > MAX_JSON_BYTES:
        raise CollateralError("collateral.size", f"{kind} document is too large", got=len(body))
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CollateralError("collateral.parse", f"{kind} is not JSON: {e}") from e
    inner_key = "tcbInfo" if kind is DocKind.TCB_INFO else "enclaveIdentity"
    if not isinstance(obj, dict) or not isinstance(obj.get(inner_key), dict):
        raise CollateralError("collateral.parse", f"{kind} document has no {inner_key!r} object")
    return obj


def chain_validity(certs: list[x509.Certificate]) -> datetime | None:
    """The earliest notAfter of a chain (the chain is only usable until then)."""
    return min((c.not_valid_after_utc for c in certs), default=None)


def document_validity(body: bytes, kind: DocKind) -> datetime | None:
    """The end of ``body``'s own validity, or raise :class:`CollateralError` if it does not parse."""
    try:
        if kind is DocKind.CERTIFICATES:
            return chain_validity(load_certificates(body, what="collateral certificate"))
        if kind is DocKind.CRL:
            return load_crl(body).next_update_utc
    except MalformedEvidence as e:
        raise CollateralError("collateral.parse", e.reason) from e
    except (ValueError, UnsupportedAlgorithm) as e:
        raise CollateralError("collateral.parse", f"cannot parse {kind}: {e}") from e
    inner = parse_intel_json(body, kind)["tcbInfo" if kind is DocKind.TCB_INFO else "enclaveIdentity"]
    # Intel PCS API v4, "TCB Info" / "Enclave Identity" JSON: nextUpdate is
    # the date by which Intel will have issued a newer document.
    return parse_pcs_date(inner.get("nextUpdate"), f"{kind} nextUpdate")
