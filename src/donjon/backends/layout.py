"""Where the platforms put the binding, and the PCK chain a DCAP quote carries.

A backend reads two things out of the evidence it just obtained, before any
verification: the report-data field (to check the platform bound what it was
asked to bind, which catches a raced or stale configfs-tsm entry) and, for
DCAP quotes, the PCK certificate chain (so ``Evidence.certs`` is filled the
same way for every TEE). Both are located by fixed offsets from public specs;
nothing here verifies a signature. Pure: bytes in, bytes out, or
:class:`MalformedPlatformOutput`.

Layouts used:

- SEV-SNP: AMD SEV-SNP Firmware ABI, Table 23 "ATTESTATION_REPORT":
  REPORT_DATA at 0x50, 64 bytes; the report is 0x4A0 (1184) bytes.
- DCAP quotes (Intel "SGX ECDSA Quote Library API", Appendix A "Quote
  Format"; "TDX DCAP Quoting Library API", Appendix 4/5): a 48-byte header
  (``version`` u16 at 0, ``att_key_type`` u16 at 2, ``tee_type`` u32 at 4:
  0 = SGX, 0x81 = TDX). Version 3 (SGX) and 4 (TDX) put the report body right
  after the header (SGX REPORT body 384 bytes, REPORTDATA at body + 320; TD
  quote body 584 bytes, REPORTDATA at body + 520). Version 5 inserts a body
  descriptor ``{u16 type; u32 size}`` before the body (type 2 = TD 1.0, type 3
  = TD 1.5 with 648 bytes; REPORTDATA stays at body + 520; type 1 = SGX).
  Then ``u32 signature_data_len`` and the signature data: ECDSA signature (64),
  attestation public key (64), then certification data ``{u16 type; u32 size;
  data}``. For type 6 (QE report certification data) the data is the QE
  report (384), its signature (64), QE authentication data ``{u16 size; data}``
  and, nested, certification data of type 5: the PCK chain in PEM.
  Version 3 has no outer type-6 wrapper: the QE report follows the key directly.
"""

from __future__ import annotations

import struct

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from donjon.backends.base import BINDING_SIZE, EvidenceKind
from donjon.backends.errors import MalformedPlatformOutput

__all__ = [
    "SNP_REPORT_SIZE",
    "dcap_pck_chain",
    "report_data_of",
]

SNP_REPORT_SIZE = 0x4A0
_SNP_REPORT_DATA = 0x50

_QUOTE_HEADER = 48
_SGX_BODY = 384
_SGX_REPORT_DATA = 320
_TD10_BODY = 584
_TD15_BODY = 648
_TD_REPORT_DATA = 520
_TEE_SGX = 0x00000000
_TEE_TDX = 0x00000081
_QE_REPORT = 384
_SIGNATURE = 64
_ATTESTATION_KEY = 64
_CERT_PCK_CHAIN = 5
_CERT_QE_REPORT = 6
#: A PCK chain is three certificates; allow some slack, refuse anything absurd.
_MAX_CHAIN = 8


def _u16(data: bytes, offset: int, what: str, backend: str) -> int:
    _need(data, offset + 2, what, backend)
    value: int = struct.unpack_from("<H", data, offset)[0]
    return value


def _u32(data: bytes, offset: int, what: str, backend: str) -> int:
    _need(data, offset + 4, what, backend)
    value: int = struct.unpack_from("<I", data, offset)[0]
    return value


def _need(data: bytes, end: int, what: str, backend: str) -> None:
    if end > len(data):
        raise MalformedPlatformOutput(backend, f"quote truncated: {what} needs {end} bytes, have {len(data)}")


def _quote_body(quote: bytes, backend: str) -> tuple[int, int, int, int]:
    """``(version, tee_type, body_offset, body_size)`` of a DCAP quote."""
    version = _u16(quote, 0, "header.version", backend)
    tee_type = _u32(quote, 4, "header.tee_type", backend)
    _need(quote, _QUOTE_HEADER, "header", backend)
    if version == 3:
        if tee_type != _TEE_SGX:
            raise MalformedPlatformOutput(backend, f"quote v3 with tee_type {tee_type:#x} (v3 is SGX only)")
        return version, tee_type, _QUOTE_HEADER, _SGX_BODY
    if version == 4:
        size = _TD10_BODY if tee_type == _TEE_TDX else _SGX_BODY
        return version, tee_type, _QUOTE_HEADER, size
    if version == 5:
        body_type = _u16(quote, _QUOTE_HEADER, "body.type", backend)
        body_size = _u32(quote, _QUOTE_HEADER + 2, "body.size", backend)
        expected = {1: _SGX_BODY, 2: _TD10_BODY, 3: _TD15_BODY}.get(body_type)
        if expected is None or body_size != expected:
            raise MalformedPlatformOutput(backend, f"quote v5 body type {body_type} with size {body_size}")
        return version, tee_type, _QUOTE_HEADER + 6, body_size
    raise MalformedPlatformOutput(backend, f"unsupported DCAP quote version {version}")


def report_data_of(kind: EvidenceKind, data: bytes, *, backend: str) -> bytes | None:
    """The 64-byte report-data field of ``data``, or ``None`` where Donjon does not locate it (CCA)."""
    if kind is EvidenceKind.SNP_REPORT:
        if len(data) < SNP_REPORT_SIZE:
            raise MalformedPlatformOutput(
                backend, f"SEV-SNP report is {len(data)} bytes, expected at least {SNP_REPORT_SIZE}"
            )
        return data[_SNP_REPORT_DATA : _SNP_REPORT_DATA + BINDING_SIZE]
    if kind in (EvidenceKind.TDX_QUOTE, EvidenceKind.SGX_QUOTE):
        _, tee_type, body, size = _quote_body(data, backend)
        want = _TEE_TDX if kind is EvidenceKind.TDX_QUOTE else _TEE_SGX
        if tee_type != want:
            raise MalformedPlatformOutput(backend, f"{kind.value}: quote header says tee_type {tee_type:#x}")
        _need(data, body + size, "report body", backend)
        offset = body + (_TD_REPORT_DATA if tee_type == _TEE_TDX else _SGX_REPORT_DATA)
        return data[offset : offset + BINDING_SIZE]
    # The CCA realm challenge sits inside a COSE_Sign1 payload; the verifier decodes it.
    return None


def dcap_pck_chain(quote: bytes, *, backend: str) -> tuple[bytes, ...]:
    """The PCK certificate chain (DER, leaf first) from a DCAP quote's certification data.

    Returns ``()`` when the quote carries another certification-data type
    (a PCK identifier, types 1-4: the verifier must fetch the PCK itself).
    """
    version, _, body, size = _quote_body(quote, backend)
    pos = body + size
    sig_len = _u32(quote, pos, "signature_data_len", backend)
    pos += 4
    end = pos + sig_len
    _need(quote, end, "signature data", backend)
    pos += _SIGNATURE + _ATTESTATION_KEY
    if version >= 4:
        outer_type = _u16(quote, pos, "certification_data.type", backend)
        outer_size = _u32(quote, pos + 2, "certification_data.size", backend)
        pos += 6
        if outer_type != _CERT_QE_REPORT:
            return ()
        _need(quote, pos + outer_size, "QE report certification data", backend)
        end = min(end, pos + outer_size)
    pos += _QE_REPORT + _SIGNATURE
    auth_len = _u16(quote, pos, "qe_auth_data.size", backend)
    pos += 2 + auth_len
    cert_type = _u16(quote, pos, "pck_certification_data.type", backend)
    cert_size = _u32(quote, pos + 2, "pck_certification_data.size", backend)
    pos += 6
    if pos + cert_size > end:
        raise MalformedPlatformOutput(
            backend, "quote truncated: PCK certification data runs past the signature data"
        )
    if cert_type != _CERT_PCK_CHAIN:
        return ()
    pem = quote[pos : pos + cert_size].rstrip(b"\x00")
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        raise MalformedPlatformOutput(backend, f"quote's PCK chain is not PEM certificates: {e}") from e
    if not certs or len(certs) > _MAX_CHAIN:
        raise MalformedPlatformOutput(backend, f"quote's PCK chain has {len(certs)} certificates")
    return tuple(cert.public_bytes(serialization.Encoding.DER) for cert in certs)
