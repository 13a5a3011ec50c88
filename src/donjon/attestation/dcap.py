"""Intel DCAP quotes (SGX v3/v4/v5, TDX v4/v5): decoding only, no verification.

Layouts follow Intel's "Intel SGX ECDSA Quote Library API" (quote v3, appendix
"Quote Format") and "Intel TDX DCAP Quote Generation Library and Quote
Verification Library" (quote v4 and v5, appendix "Quote Format"). All integers
are little-endian. A quote is::

    header (48) | body | signature data length (u32) | signature data | [trailing bytes]

where v5 puts a body descriptor (type u16, size u32) in front of the body. The
quote signature covers everything before the signature data length. Several
real quote producers pad the buffer after the signature data, so trailing bytes
are tolerated and counted (``Quote.trailing``) but never interpreted.

:func:`parse_quote` never verifies anything; it only refuses bytes that are not
a well-formed quote, with :class:`MalformedEvidence` naming the field.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import Any

from donjon.attestation.errors import MalformedEvidence

__all__ = [
    "ATTESTATION_KEY_TYPE_ECDSA_P256",
    "BODY_SGX_ENCLAVE",
    "BODY_TD_REPORT10",
    "BODY_TD_REPORT15",
    "CERT_DATA_PCK_CHAIN",
    "CERT_DATA_QE_REPORT",
    "INTEL_QE_VENDOR_ID",
    "MAX_QUOTE_BYTES",
    "TEE_TYPE_SGX",
    "TEE_TYPE_TDX",
    "Quote",
    "QuoteHeader",
    "QuoteSignature",
    "SgxReportBody",
    "TdReportBody",
    "parse_quote",
    "parse_sgx_report_body",
]

#: Quotes with a PEM PCK chain are about 5 KiB; padding seen in the wild is a few KiB more.
MAX_QUOTE_BYTES = 64 * 1024

HEADER_LEN = 48
SGX_REPORT_BODY_LEN = 384
TD_REPORT10_LEN = 584
TD_REPORT15_LEN = 648
ECDSA_SIG_LEN = 64
ECDSA_KEY_LEN = 64

#: Header "Attestation Key Type": 2 = ECDSA-256-with-P-256 curve (the only one DCAP uses).
ATTESTATION_KEY_TYPE_ECDSA_P256 = 2
#: Header "TEE Type" (v4/v5): 0x00000000 SGX, 0x00000081 TDX.
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
#: v5 body descriptor "Type": 1 SGX enclave report, 2 TD report (TDX 1.0), 3 TD report (TDX 1.5).
BODY_SGX_ENCLAVE = 1
BODY_TD_REPORT10 = 2
BODY_TD_REPORT15 = 3
#: Certification data types: 5 = concatenated PCK cert chain (PEM), 6 = QE report certification data.
CERT_DATA_PCK_CHAIN = 5
CERT_DATA_QE_REPORT = 6
#: Intel's QE vendor ID, 939A7233-F79C-4CA9-940A-0DB3957F0607.
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

_BODY_LENGTHS = {
    BODY_SGX_ENCLAVE: SGX_REPORT_BODY_LEN,
    BODY_TD_REPORT10: TD_REPORT10_LEN,
    BODY_TD_REPORT15: TD_REPORT15_LEN,
}


@dataclass(frozen=True)
class QuoteHeader:
    """The 48-byte quote header ("Quote Header" table).

    In v3 bytes 4..8 are reserved (SGX only) and bytes 8..12 hold QE SVN and PCE
    SVN; v4 and v5 put the TEE type at 4..8 and keep QE/PCE SVN at 8..12 (the TDX
    document calls them reserved; the QE fills them).
    """

    version: int
    attestation_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes


@dataclass(frozen=True)
class SgxReportBody:
    """An SGX enclave report body, 384 bytes ("Enclave Report Body" table): the
    quoted enclave's body in SGX quotes, and the QE report in every quote."""

    cpu_svn: bytes
    miscselect: int
    isv_ext_prod_id: bytes
    attributes: bytes
    mrenclave: bytes
    mrsigner: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    isv_family_id: bytes
    report_data: bytes
    raw: bytes

    @property
    def debug(self) -> bool:
        """ATTRIBUTES.DEBUG is bit 1 of the first attributes byte (SGX SDM, SECS.ATTRIBUTES)."""
        return bool(self.attributes[0] & 0x02)


@dataclass(frozen=True)
class TdReportBody:
    """A TD report body: TDX 1.0 (584 bytes) or TDX 1.5 (648 bytes, adding
    TEE_TCB_SVN2 and MRSERVICETD) ("TD Quote Body" / "TD Quote Body v1.5")."""

    tee_tcb_svn: bytes
    mrseam: bytes
    mrsignerseam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mrtd: bytes
    mrconfigid: bytes
    mrowner: bytes
    mrownerconfig: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes
    tee_tcb_svn2: bytes | None
    mrservicetd: bytes | None
    raw: bytes

    @property
    def debug(self) -> bool:
        """TDATTRIBUTES.DEBUG is bit 0 of TD_ATTRIBUTES (TDX module ABI, "TD_ATTRIBUTES")."""
        return bool(self.td_attributes[0] & 0x01)


@dataclass(frozen=True)
class QuoteSignature:
    """The signature data: quote signature, attestation key, and the QE's
    certification of that key (QE report, its PCK signature, QE auth data) with
    the PCK certificate chain."""

    signature: bytes
    attestation_key: bytes
    qe_report: SgxReportBody
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_cert_chain: bytes


@dataclass(frozen=True)
class Quote:
    header: QuoteHeader
    body_type: int
    body: SgxReportBody | TdReportBody
    signed_data: bytes
    signature: QuoteSignature
    trailing: int

    @property
    def is_tdx(self) -> bool:
        return self.body_type in (BODY_TD_REPORT10, BODY_TD_REPORT15)


class _Reader:
    """Bounded little-endian reads; every overrun is MalformedEvidence naming the field."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def take(self, n: int, field: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise MalformedEvidence(
                "dcap.truncated",
                "quote ends inside a field",
                field=field,
                expected=f"{n} bytes",
                got=f"{max(self.end - self.pos, 0)} bytes",
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def fields(self, layout: struct.Struct, field: str) -> tuple[Any, ...]:
        """Several fixed-size fields at once (one bounds check, one unpack)."""
        if self.pos + layout.size > self.end:
            self.take(layout.size, field)  # raises, naming the field
        out = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return out

    def u32(self, field: str) -> int:
        value: int = struct.unpack("<I", self.take(4, field))[0]
        return value


#: "Quote Header": version, attestation key type, TEE type (v3: reserved), QE SVN, PCE SVN,
#: QE vendor ID, user data.
_HEADER = struct.Struct("<HHIHH16s20s")
_SIG_AND_KEY = struct.Struct("<64s64s")
_TYPE_SIZE = struct.Struct("<HI")
_QE_REPORT_AND_SIG = struct.Struct("<384s64sH")


def _parse_header(r: _Reader) -> QuoteHeader:
    version, key_type, tee_type, qe_svn, pce_svn, vendor, user_data = r.fields(_HEADER, "header")
    if version not in (3, 4, 5):
        raise MalformedEvidence(
            "dcap.version",
            "quote format not supported",
            field="header.version",
            expected="3, 4 or 5",
            got=version,
        )
    if key_type != ATTESTATION_KEY_TYPE_ECDSA_P256:
        raise MalformedEvidence(
            "dcap.attestation_key_type",
            "only ECDSA P-256 attestation keys exist in DCAP",
            field="header.attestation_key_type",
            expected=2,
            got=key_type,
        )
    if version == 3:
        # v3 is SGX only; bytes 4..8 are reserved and must be zero.
        if tee_type != 0:
            raise MalformedEvidence(
                "dcap.reserved",
                "reserved header bytes are not zero",
                field="header.reserved",
                expected=0,
                got=tee_type,
            )
        tee_type = TEE_TYPE_SGX
    elif tee_type not in (TEE_TYPE_SGX, TEE_TYPE_TDX):
        raise MalformedEvidence(
            "dcap.tee_type",
            "unknown TEE type",
            field="header.tee_type",
            expected="0x0 or 0x81",
            got=hex(tee_type),
        )
    return QuoteHeader(version, key_type, tee_type, qe_svn, pce_svn, vendor, user_data)


#: "Enclave Report Body": CPUSVN, MISCSELECT, reserved(12), ISVEXTPRODID, ATTRIBUTES, MRENCLAVE,
#: reserved(32), MRSIGNER, reserved(32), CONFIGID, ISVPRODID, ISVSVN, CONFIGSVN, reserved(42),
#: ISVFAMILYID, REPORTDATA.
_SGX_BODY = struct.Struct("<16sI12x16s16s32s32x32s32x64sHHH42x16s64s")
_SGX_BODY_FIELDS = tuple(f.name for f in dataclasses.fields(SgxReportBody) if f.name != "raw")
#: "TD Quote Body": TEE_TCB_SVN, MRSEAM, MRSIGNERSEAM, SEAM_ATTRIBUTES, TD_ATTRIBUTES, XFAM, MRTD,
#: MRCONFIGID, MROWNER, MROWNERCONFIG, RTMR0..3, REPORTDATA; v1.5 adds TEE_TCB_SVN2, MRSERVICETD.
_TD_BODY = struct.Struct("<16s48s48s8s8s8s48s48s48s48s48s48s48s48s64s")
_TD15_TAIL = struct.Struct("<16s48s")


def parse_sgx_report_body(raw: bytes) -> SgxReportBody:
    """Decode a 384-byte SGX report body ("Enclave Report Body" table offsets)."""
    if len(raw) != SGX_REPORT_BODY_LEN:
        raise MalformedEvidence(
            "dcap.report_body",
            "SGX report body has the wrong size",
            expected=SGX_REPORT_BODY_LEN,
            got=len(raw),
        )
    # _SGX_BODY's fields are SgxReportBody's, in order (raw aside).
    return SgxReportBody(**dict(zip(_SGX_BODY_FIELDS, _SGX_BODY.unpack(raw), strict=True)), raw=raw)


def _parse_td_report(raw: bytes) -> TdReportBody:
    (tcb, mrseam, mrsignerseam, seam_attr, td_attr, xfam, mrtd, cfg, owner, owner_cfg, r0, r1, r2, r3, rd) = (
        _TD_BODY.unpack_from(raw)
    )
    svn2: bytes | None = None
    servicetd: bytes | None = None
    if len(raw) == TD_REPORT15_LEN:
        svn2, servicetd = _TD15_TAIL.unpack_from(raw, TD_REPORT10_LEN)
    rtmrs = (r0, r1, r2, r3)
    return TdReportBody(
        tcb,
        mrseam,
        mrsignerseam,
        seam_attr,
        td_attr,
        xfam,
        mrtd,
        cfg,
        owner,
        owner_cfg,
        rtmrs,
        rd,
        svn2,
        servicetd,
        raw,
    )


def _parse_qe_report_block(r: _Reader) -> tuple[SgxReportBody, bytes, bytes, bytes]:
    """QE report (384) | QE report signature (64) | QE auth data (u16 size + data) |
    certification data (type u16, size u32, data), which must be the PCK chain."""
    raw_report, qe_sig, auth_len = r.fields(_QE_REPORT_AND_SIG, "qe_report")
    qe_report = parse_sgx_report_body(raw_report)
    auth = r.take(auth_len, "qe_auth_data")
    cert_type, cert_size = r.fields(_TYPE_SIZE, "certification_data")
    if cert_type != CERT_DATA_PCK_CHAIN:
        raise MalformedEvidence(
            "dcap.certification_data_type",
            "PCK certification data must be a PEM chain",
            field="certification_data.type",
            expected=CERT_DATA_PCK_CHAIN,
            got=cert_type,
        )
    chain = r.take(cert_size, "certification_data")
    return qe_report, qe_sig, auth, chain


def parse_quote(data: bytes) -> Quote:
    """Decode an SGX or TDX DCAP quote without verifying it.

    Raises :class:`MalformedEvidence` for anything that is not a well-formed
    quote: unknown version, TEE type, body type or key type, a length that
    overruns the buffer or does not account exactly for its content.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedEvidence("dcap.type", "a quote is bytes", got=type(data).__name__)
    data = bytes(data)
    if len(data) > MAX_QUOTE_BYTES:
        raise MalformedEvidence(
            "dcap.size", "quote is too large", expected=f"<= {MAX_QUOTE_BYTES}", got=len(data)
        )
    r = _Reader(data)
    header = _parse_header(r)
    if header.version == 5:
        body_type, body_size = r.fields(_TYPE_SIZE, "body")
        expected = _BODY_LENGTHS.get(body_type)
        if expected is None:
            raise MalformedEvidence(
                "dcap.body_type",
                "unknown quote body type",
                field="body.type",
                expected="1, 2 or 3",
                got=body_type,
            )
        if body_size != expected:
            raise MalformedEvidence(
                "dcap.body_size",
                "body size does not match its type",
                field="body.size",
                expected=expected,
                got=body_size,
            )
        if (body_type == BODY_SGX_ENCLAVE) != (header.tee_type == TEE_TYPE_SGX):
            raise MalformedEvidence(
                "dcap.body_type",
                "body type does not match the header's TEE type",
                field="body.type",
                got=body_type,
            )
    elif header.tee_type == TEE_TYPE_TDX:
        body_type, body_size = BODY_TD_REPORT10, TD_REPORT10_LEN
    else:
        body_type, body_size = BODY_SGX_ENCLAVE, SGX_REPORT_BODY_LEN
    raw_body = r.take(body_size, "body")
    body: SgxReportBody | TdReportBody
    body = parse_sgx_report_body(raw_body) if body_type == BODY_SGX_ENCLAVE else _parse_td_report(raw_body)
    signed_end = r.pos
    sig_len = r.u32("signature_data.size")
    sig_end = r.pos + sig_len
    if sig_end > len(data):
        raise MalformedEvidence(
            "dcap.signature_data_size",
            "signature data length overruns the quote",
            field="signature_data.size",
            expected=f"<= {len(data) - r.pos}",
            got=sig_len,
        )
    s = _Reader(data, r.pos, sig_end)
    signature, att_key = s.fields(_SIG_AND_KEY, "signature")
    if header.version == 3:
        qe_report, qe_sig, auth, chain = _parse_qe_report_block(s)
    else:
        # v4/v5: the certification data is type 6, wrapping the QE report block.
        cert_type, cert_size = s.fields(_TYPE_SIZE, "certification_data")
        if cert_type != CERT_DATA_QE_REPORT:
            raise MalformedEvidence(
                "dcap.certification_data_type",
                "v4/v5 quotes carry QE report certification data",
                field="certification_data.type",
                expected=CERT_DATA_QE_REPORT,
                got=cert_type,
            )
        inner_end = s.pos + cert_size
        if inner_end != s.end:
            raise MalformedEvidence(
                "dcap.certification_data_size",
                "certification data size does not match the signature data length",
                field="certification_data.size",
                expected=s.end - s.pos,
                got=cert_size,
            )
        qe_report, qe_sig, auth, chain = _parse_qe_report_block(s)
    if s.pos != s.end:
        raise MalformedEvidence(
            "dcap.signature_data_size",
            "signature data length does not match its content",
            field="signature_data.size",
            expected=s.pos - (sig_end - sig_len),
            got=sig_len,
        )
    return Quote(
        header=header,
        body_type=body_type,
        body=body,
        signed_data=data[:signed_end],
        signature=QuoteSignature(signature, att_key, qe_report, qe_sig, auth, chain),
        trailing=len(data) - sig_end,
    )
