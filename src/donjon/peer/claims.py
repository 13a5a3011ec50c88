"""The claims of a Steward-issued certificate: find them and read them.

DESIGN.md "Certificates the Steward issues": claims are, by default, in the standard TCG DICE
``MultiTcbInfo`` extension (:mod:`donjon.dice`: the TEE with its measurement and TCB, the
workload digest), so a certificate from any Steward names its workload. An operator may add a
second, non-critical extension under an OID arc of their own: ``donjon.steward.ca`` writes it
as canonical JSON (sorted keys, no whitespace) in a DER ``UTF8String``: ``{"fresh",
"measurement", "simulated", "tcb_status", "tee", "workload_digest"}``. A relying party reads
the JSON claims when present (under the given OID, or recognised by content), else the DICE
extension; both are covered by the Steward's signature.

Pure: a certificate in, a :class:`CertificateClaims` or :class:`PeerRefused` out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cryptography import x509

from donjon.dice import MULTI_TCB_INFO_OID, DiceError, claims_values, decode_multi_tcb_info
from donjon.oids import require_certificate_safe
from donjon.peer.errors import PeerRefused

__all__ = ["MAX_CLAIMS_BYTES", "CertificateClaims", "dice_claims", "find_claims", "parse_claims_value"]

#: The Steward's claims are a few hundred bytes; anything far larger is not ours.
MAX_CLAIMS_BYTES = 16 * 1024
_UTF8STRING = 0x0C  # X.690 / X.680 universal tag 12
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class CertificateClaims:
    """The claims a certificate carries, and the extension OID they were found under."""

    oid: str
    values: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    @property
    def workload_digest(self) -> bytes | None:
        value = self.values.get("workload_digest")
        return bytes.fromhex(value) if isinstance(value, str) else None

    @property
    def simulated(self) -> bool:
        return self.values.get("simulated") is True

    @property
    def tee(self) -> str | None:
        value = self.values.get("tee")
        return value if isinstance(value, str) else None


def _utf8string(der: bytes) -> str:
    """The text of a DER ``UTF8String`` (X.690 section 8.1: tag, definite length, contents)."""
    if len(der) < 2 or der[0] != _UTF8STRING:
        raise ValueError("not a DER UTF8String")
    first = der[1]
    if first < 0x80:
        length, start = first, 2
    else:
        count = first & 0x7F
        if count == 0 or count > 3 or len(der) < 2 + count:
            raise ValueError("bad DER length")
        length = int.from_bytes(der[2 : 2 + count], "big")
        if length < 0x80 or (count > 1 and der[2] == 0):  # X.690 10.1: minimal length encoding
            raise ValueError("non-minimal DER length")
        start = 2 + count
    if start + length != len(der):
        raise ValueError("DER length does not match the value")
    return der[start:].decode("utf-8")


def parse_claims_value(oid: str, value: bytes) -> CertificateClaims:
    """Parse an extension value as the Steward's claims, or raise :class:`PeerRefused` (``claims``)."""
    if len(value) > MAX_CLAIMS_BYTES:
        raise PeerRefused("claims", f"claims extension of {len(value)} bytes exceeds {MAX_CLAIMS_BYTES}")
    try:
        doc = json.loads(_utf8string(value))
    except (ValueError, UnicodeDecodeError) as e:
        raise PeerRefused("claims", f"extension {oid} is not a UTF8String holding JSON: {e}") from e
    if not isinstance(doc, dict):
        raise PeerRefused("claims", f"extension {oid} does not hold a JSON object")
    digest = doc.get("workload_digest")
    if digest is not None and (not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX):
        raise PeerRefused("claims", "workload_digest in the claims is not 64 lowercase hex digits")
    return CertificateClaims(oid=oid, values=doc)


def _unrecognised(cert: x509.Certificate) -> list[x509.Extension[x509.UnrecognizedExtension]]:
    try:
        extensions = list(cert.extensions)
    except ValueError as e:  # cryptography parses extensions lazily
        raise PeerRefused("claims", f"the certificate's extensions do not parse: {e}") from e
    return [e for e in extensions if isinstance(e.value, x509.UnrecognizedExtension)]


def dice_claims(cert: x509.Certificate) -> CertificateClaims | None:
    """The claims of the certificate's TCG DICE ``MultiTcbInfo`` extension, or ``None``."""
    wanted = x509.ObjectIdentifier(MULTI_TCB_INFO_OID)
    for ext in _unrecognised(cert):
        if ext.oid != wanted:
            continue
        try:
            entries = decode_multi_tcb_info(ext.value.value)
        except DiceError as e:
            raise PeerRefused("claims", f"the DICE MultiTcbInfo extension does not parse: {e}") from e
        return CertificateClaims(oid=MULTI_TCB_INFO_OID, values=claims_values(entries))
    return None


def find_claims(cert: x509.Certificate, claims_oid: str | None = None) -> CertificateClaims | None:
    """The claims of ``cert``: the JSON claims if it has them, else its DICE extension's.

    With ``claims_oid`` (the Steward's configured arc): the JSON extension under it. Without:
    the one non-critical extension whose value reads as the Steward's JSON claims (any
    extension was put there by the Steward, whose signature covers it); two such extensions
    are refused as ambiguous. Either way, a certificate without JSON claims is read through
    :func:`dice_claims`; ``None`` when it has neither.
    """
    if claims_oid is not None:
        try:
            wanted = require_certificate_safe(claims_oid)
        except ValueError as e:
            raise PeerRefused("claims", f"claims OID {claims_oid!r}: {e}") from e
        for ext in _unrecognised(cert):
            if ext.oid == wanted:
                if ext.critical:
                    raise PeerRefused("claims", f"claims extension {claims_oid} is marked critical")
                return parse_claims_value(wanted.dotted_string, ext.value.value)
        return dice_claims(cert)
    found: list[CertificateClaims] = []
    for ext in _unrecognised(cert):
        if ext.critical or ext.oid.dotted_string == MULTI_TCB_INFO_OID:
            continue
        try:
            found.append(parse_claims_value(ext.oid.dotted_string, ext.value.value))
        except PeerRefused:
            continue
    if len(found) > 1:
        raise PeerRefused(
            "claims", "more than one extension reads as claims; name the Steward's claims OID", got=len(found)
        )
    return found[0] if found else dice_claims(cert)
