"""Intel's trust anchor and the SGX extensions of PCK certificates.

The Intel SGX Root CA is pinned by the SHA-256 of its DER encoding (the
certificate itself travels at the top of every PCK chain and of every
collateral issuer chain, so only its fingerprint lives in code).

PCK certificates carry the platform's TCB in a private extension, "Intel SGX
PCK Certificate and Certificate Revocation List Profile Specification", section
"SGX Extensions" (OID 1.2.840.113741.1.13.1)::

    SGXExtensions ::= SEQUENCE OF SEQUENCE { sgxExtensionId OBJECT IDENTIFIER, sgxExtensionValue ANY }

with PPID (.1, OCTET STRING 16), TCB (.2, a SEQUENCE of (OID, INTEGER) for the 16
component SVNs .2.1-.2.16, PCESVN .2.17, and (OID, OCTET STRING) CPUSVN .2.18),
PCE-ID (.3, OCTET STRING 2), FMSPC (.4, OCTET STRING 6), SGX Type (.5, ENUMERATED),
and for Platform CA issued certificates PlatformInstanceID (.6) and Configuration
(.7). A small bounded DER walker decodes it: the input is a certificate from the
quote, so every length is checked and every failure is MalformedEvidence.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from donjon.attestation.errors import MalformedEvidence
from donjon.attestation.pki import X509_DECODE_ERRORS

__all__ = [
    "INTEL_SGX_ROOT_CA_SHA256",
    "SGX_EXTENSIONS_OID",
    "PckExtensions",
    "parse_pck_extensions",
    "parse_sgx_extensions",
]

#: SHA-256 of the DER of "CN=Intel SGX Root CA, O=Intel Corporation, L=Santa Clara, ST=CA, C=US"
#: (valid 2018-05-21 .. 2049-12-31), as served by Intel PCS and shipped in Intel's QVL.
INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

SGX_EXTENSIONS_OID = "1.2.840.113741.1.13.1"
_MAX_EXTENSION_BYTES = 4096


@dataclass(frozen=True)
class PckExtensions:
    """The decoded SGX extensions of a PCK certificate."""

    ppid: bytes
    tcb_comp_svns: tuple[int, ...]
    pce_svn: int
    cpu_svn: bytes
    pce_id: bytes
    fmspc: bytes
    sgx_type: int
    platform_instance_id: bytes | None = None


def _bad(reason: str, field: str | None = None) -> MalformedEvidence:
    return MalformedEvidence("dcap.pck_extensions", reason, field=field)


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """One DER TLV inside buf[pos:end]: (tag, content start, content end)."""
    if pos + 2 > end:
        raise _bad("truncated DER")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise _bad("multi-byte DER tags are not used in SGX extensions")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 2 or pos + n > end:
            raise _bad("unsupported DER length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        if length < 0x80 or (n == 2 and length < 0x100):
            raise _bad("non-minimal DER length")
        pos += n
    if pos + length > end:
        raise _bad("DER length overruns its container")
    return tag, pos, pos + length


def _children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    pos = start
    while pos < end:
        tag, cs, ce = _tlv(buf, pos, end)
        out.append((tag, cs, ce))
        pos = ce
        if len(out) > 64:
            raise _bad("too many DER elements")
    return out


def _oid(raw: bytes) -> str:
    if not raw:
        raise _bad("empty OID")
    parts: list[int] = []
    value = 0
    for i, b in enumerate(raw):
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(value)
            value = 0
        elif i == len(raw) - 1:
            raise _bad("truncated OID")
    first = parts[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(p) for p in head + parts[1:])


def _int(raw: bytes, field: str) -> int:
    if not raw or len(raw) > 3:
        raise _bad("INTEGER out of range", field)
    value = int.from_bytes(raw, "big", signed=True)
    if value < 0:
        raise _bad("negative SVN", field)
    return value


def _pairs(buf: bytes, start: int, end: int) -> dict[str, tuple[int, bytes]]:
    """SEQUENCE OF SEQUENCE { OID, value } -> {oid: (value tag, value bytes)}."""
    out: dict[str, tuple[int, bytes]] = {}
    for tag, cs, ce in _children(buf, start, end):
        if tag != 0x30:
            raise _bad("expected SEQUENCE { OID, value }")
        kids = _children(buf, cs, ce)
        if len(kids) != 2 or kids[0][0] != 0x06:
            raise _bad("expected SEQUENCE { OID, value }")
        oid = _oid(buf[kids[0][1] : kids[0][2]])
        if oid in out:
            raise _bad("duplicate SGX extension", oid)
        out[oid] = (kids[1][0], buf[kids[1][1] : kids[1][2]])
    return out


def parse_sgx_extensions(der: bytes) -> PckExtensions:
    """Decode the DER value of the SGX extensions (OID 1.2.840.113741.1.13.1)."""
    if len(der) > _MAX_EXTENSION_BYTES:
        raise _bad("SGX extension is too large")
    tag, cs, ce = _tlv(der, 0, len(der))
    if tag != 0x30 or ce != len(der):
        raise _bad("SGX extensions must be one SEQUENCE")
    top = _pairs(der, cs, ce)
    base = SGX_EXTENSIONS_OID

    def need(oid: str, want_tag: int, size: int | None, field: str) -> bytes:
        if oid not in top:
            raise _bad("missing SGX extension", field)
        got_tag, value = top[oid]
        if got_tag != want_tag or (size is not None and len(value) != size):
            raise _bad("SGX extension has the wrong type or size", field)
        return value

    ppid = need(f"{base}.1", 0x04, 16, "ppid")
    tcb_raw = need(f"{base}.2", 0x30, None, "tcb")
    tcb = _pairs(tcb_raw, 0, len(tcb_raw))
    comps = []
    for i in range(1, 17):
        entry = tcb.get(f"{base}.2.{i}")
        if entry is None or entry[0] != 0x02:
            raise _bad("missing TCB component SVN", f"tcb.comp{i:02d}")
        comps.append(_int(entry[1], f"tcb.comp{i:02d}"))
    pce = tcb.get(f"{base}.2.17")
    if pce is None or pce[0] != 0x02:
        raise _bad("missing PCESVN", "tcb.pcesvn")
    cpu = tcb.get(f"{base}.2.18")
    if cpu is None or cpu[0] != 0x04 or len(cpu[1]) != 16:
        raise _bad("missing CPUSVN", "tcb.cpusvn")
    pce_id = need(f"{base}.3", 0x04, 2, "pceid")
    fmspc = need(f"{base}.4", 0x04, 6, "fmspc")
    sgx_type_raw = need(f"{base}.5", 0x0A, None, "sgx_type")
    pii = top.get(f"{base}.6")
    return PckExtensions(
        ppid=ppid,
        tcb_comp_svns=tuple(comps),
        pce_svn=_int(pce[1], "tcb.pcesvn"),
        cpu_svn=cpu[1],
        pce_id=pce_id,
        fmspc=fmspc,
        sgx_type=_int(sgx_type_raw, "sgx_type"),
        platform_instance_id=pii[1] if pii is not None and pii[0] == 0x04 else None,
    )


def parse_pck_extensions(cert: x509.Certificate) -> PckExtensions:
    """The SGX extensions of a PCK certificate; MalformedEvidence if absent or malformed."""
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSIONS_OID))
    except x509.ExtensionNotFound as e:
        raise _bad("PCK certificate has no SGX extensions") from e
    except X509_DECODE_ERRORS as e:
        raise _bad(f"cannot read certificate extensions: {e}") from e
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise _bad("SGX extensions decoded unexpectedly")
    return parse_sgx_extensions(value.value)
