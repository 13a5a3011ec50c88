"""TPM 2.0 quotes: TPMS_ATTEST of a TPM2_Quote, TPMT_SIGNATURE, PCR selections and the PCR digest.

Pure decoding, no TPM needed. Layouts: TCG "TPM 2.0 Library, Part 2: Structures"
(rev. 1.59): TPMS_ATTEST (10.12.12), TPMS_QUOTE_INFO (10.12.4),
TPML_PCR_SELECTION (10.9.7), TPMS_PCR_SELECTION (10.6.2), TPMS_CLOCK_INFO
(10.11.1), TPMT_SIGNATURE (11.3.4). Every integer is big-endian; every sized
buffer (TPM2B_*) is a 2-byte size then the bytes, bounded by its type's
maximum. A quote's signature covers the whole marshalled TPMS_ATTEST; its
``pcrDigest`` is the hash (the signing scheme's hash) of the selected PCR values
concatenated in selection order: bank by bank, lowest PCR index first
(Part 1, "PCR Digest" in TPM2_Quote's description).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from donjon.attestation.errors import MalformedEvidence, VerificationFailed

__all__ = [
    "ALG_RSASSA",
    "ALG_SHA256",
    "HASH_SIZES",
    "MAX_ATTEST_BYTES",
    "PcrSelection",
    "TpmQuote",
    "TpmSignature",
    "parse_quote",
    "parse_signature",
    "pcr_digest",
]

#: TPM_GENERATED_VALUE (Part 2, 6.2): only the TPM itself writes this into a TPMS_ATTEST.
TPM_GENERATED = 0xFF544347
#: TPM_ST_ATTEST_QUOTE (Part 2, 6.9).
ST_ATTEST_QUOTE = 0x8018

# TPM_ALG_ID (TCG Algorithm Registry).
ALG_SHA1 = 0x0004
ALG_SHA256 = 0x000B
ALG_SHA384 = 0x000C
ALG_SHA512 = 0x000D
ALG_RSASSA = 0x0014
HASH_SIZES = {ALG_SHA1: 20, ALG_SHA256: 32, ALG_SHA384: 48, ALG_SHA512: 64}
_HASH_NAMES = {ALG_SHA1: "sha1", ALG_SHA256: "sha256", ALG_SHA384: "sha384", ALG_SHA512: "sha512"}

#: A quote is a few hundred bytes; TPM2B_ATTEST's buffer is bounded by sizeof(TPMS_ATTEST).
MAX_ATTEST_BYTES = 1024
#: TPM2B_NAME holds a TPMU_NAME: a digest with its 2-byte algorithm, or a 4-byte handle.
_MAX_NAME = 2 + 64
#: TPM2B_DATA (qualifying data) holds at most sizeof(TPMT_HA): 2 + 64 bytes.
_MAX_EXTRA_DATA = 2 + 64
#: HASH_COUNT: a TPM implements a handful of banks; 16 is far above any.
_MAX_BANKS = 16
#: PCR_SELECT_MAX: 24 PCRs need 3 bytes; no TPM implements more than 32 PCRs (4 bytes).
_MIN_SELECT, _MAX_SELECT = 1, 4
#: An RSA signature is at most 4096 bits.
_MAX_SIGNATURE = 512


@dataclass(frozen=True)
class PcrSelection:
    """One bank of a PCR selection: its hash algorithm and the selected PCR indices, ascending."""

    hash_alg: int
    pcrs: tuple[int, ...]

    @property
    def hash_name(self) -> str:
        return _HASH_NAMES.get(self.hash_alg, f"alg-{self.hash_alg:#06x}")


@dataclass(frozen=True)
class TpmQuote:
    """A TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE, every field decoded (Part 2, 10.12.12)."""

    raw: bytes = field(repr=False)
    qualified_signer: bytes
    extra_data: bytes  # the caller's qualifying data (nonce / binding)
    clock: int
    reset_count: int
    restart_count: int
    safe: bool
    firmware_version: int
    selections: tuple[PcrSelection, ...]
    pcr_digest: bytes

    @property
    def selected(self) -> tuple[tuple[int, int], ...]:
        """Every selected (hash algorithm, PCR index), in the order the digest covers them."""
        return tuple((s.hash_alg, i) for s in self.selections for i in s.pcrs)


@dataclass(frozen=True)
class TpmSignature:
    """A TPMT_SIGNATURE of the RSASSA scheme (the only one Azure's vTPM AK uses)."""

    sig_alg: int
    hash_alg: int
    signature: bytes


class _Reader:
    """Big-endian reads that raise MalformedEvidence (``check``) instead of struct.error."""

    def __init__(self, data: bytes, check: str) -> None:
        self.data = data
        self.pos = 0
        self.check = check

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise MalformedEvidence(
                self.check,
                f"truncated at {what}",
                field=what,
                expected=f"{n} bytes",
                got=len(self.data) - self.pos,
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int(struct.unpack(">H", self.take(2, what))[0])

    def u32(self, what: str) -> int:
        return int(struct.unpack(">I", self.take(4, what))[0])

    def u64(self, what: str) -> int:
        return int(struct.unpack(">Q", self.take(8, what))[0])

    def sized(self, what: str, maximum: int) -> bytes:
        size = self.u16(what)
        if size > maximum:
            raise MalformedEvidence(
                self.check, f"{what} is too large", field=what, expected=f"<= {maximum}", got=size
            )
        return self.take(size, what)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise MalformedEvidence(
                self.check,
                "trailing bytes after the structure",
                expected=self.pos,
                got=len(self.data),
            )


def parse_quote(data: bytes) -> TpmQuote:
    """Decode a marshalled TPMS_ATTEST that must be a quote; exact length, no trailing bytes."""
    if not isinstance(data, bytes | bytearray):
        raise MalformedEvidence("tpm.quote", "a TPM quote must be bytes")
    data = bytes(data)
    if len(data) > MAX_ATTEST_BYTES:
        raise MalformedEvidence(
            "tpm.quote", "TPM quote is too large", expected=f"<= {MAX_ATTEST_BYTES}", got=len(data)
        )
    r = _Reader(data, "tpm.quote")
    magic = r.u32("magic")
    if magic != TPM_GENERATED:
        raise MalformedEvidence(
            "tpm.quote.magic",
            "not generated by a TPM",
            field="magic",
            expected=hex(TPM_GENERATED),
            got=hex(magic),
        )
    kind = r.u16("type")
    if kind != ST_ATTEST_QUOTE:
        raise MalformedEvidence(
            "tpm.quote.type", "not a quote", field="type", expected=hex(ST_ATTEST_QUOTE), got=hex(kind)
        )
    signer = r.sized("qualifiedSigner", _MAX_NAME)
    extra = r.sized("extraData", _MAX_EXTRA_DATA)
    clock = r.u64("clockInfo.clock")
    reset_count = r.u32("clockInfo.resetCount")
    restart_count = r.u32("clockInfo.restartCount")
    safe = r.u8("clockInfo.safe")
    if safe > 1:
        raise MalformedEvidence(
            "tpm.quote", "TPMI_YES_NO is neither 0 nor 1", field="clockInfo.safe", got=safe
        )
    firmware = r.u64("firmwareVersion")
    banks = r.u32("pcrSelect.count")
    if banks > _MAX_BANKS:
        raise MalformedEvidence(
            "tpm.quote", "too many PCR banks", field="pcrSelect.count", expected=f"<= {_MAX_BANKS}", got=banks
        )
    selections: list[PcrSelection] = []
    for n in range(banks):
        alg = r.u16(f"pcrSelect[{n}].hash")
        if alg not in HASH_SIZES:
            raise MalformedEvidence(
                "tpm.quote.pcr_select", "unknown PCR bank hash", field=f"pcrSelect[{n}].hash", got=hex(alg)
            )
        size = r.u8(f"pcrSelect[{n}].sizeofSelect")
        if not _MIN_SELECT <= size <= _MAX_SELECT:
            raise MalformedEvidence(
                "tpm.quote.pcr_select",
                "PCR select size out of range",
                field=f"pcrSelect[{n}].sizeofSelect",
                expected=f"{_MIN_SELECT}..{_MAX_SELECT}",
                got=size,
            )
        bitmap = r.take(size, f"pcrSelect[{n}].pcrSelect")
        # Bit i of byte j selects PCR 8*j + i (Part 2, 10.6.2).
        pcrs = tuple(8 * j + i for j, byte in enumerate(bitmap) for i in range(8) if byte >> i & 1)
        if any(s.hash_alg == alg for s in selections):
            raise MalformedEvidence(
                "tpm.quote.pcr_select",
                "a PCR bank is selected twice",
                field=f"pcrSelect[{n}].hash",
                got=hex(alg),
            )
        selections.append(PcrSelection(alg, pcrs))
    digest = r.sized("pcrDigest", 64)
    r.end()
    return TpmQuote(
        raw=data,
        qualified_signer=signer,
        extra_data=extra,
        clock=clock,
        reset_count=reset_count,
        restart_count=restart_count,
        safe=bool(safe),
        firmware_version=firmware,
        selections=tuple(selections),
        pcr_digest=digest,
    )


def parse_signature(data: bytes) -> TpmSignature:
    """Decode a TPMT_SIGNATURE; only RSASSA (what an RSA AK's quote carries) is accepted."""
    r = _Reader(bytes(data), "tpm.signature")
    alg = r.u16("sigAlg")
    if alg != ALG_RSASSA:
        raise MalformedEvidence(
            "tpm.signature",
            "unsupported signature scheme",
            field="sigAlg",
            expected=hex(ALG_RSASSA),
            got=hex(alg),
        )
    hash_alg = r.u16("hash")
    if hash_alg not in HASH_SIZES:
        raise MalformedEvidence("tpm.signature", "unknown hash algorithm", field="hash", got=hex(hash_alg))
    sig = r.sized("sig", _MAX_SIGNATURE)
    r.end()
    return TpmSignature(alg, hash_alg, sig)


def pcr_digest(quote: TpmQuote, values: Sequence[bytes], hash_alg: int = ALG_SHA256) -> bytes:
    """The digest ``quote`` should carry for ``values``: one per selected PCR, in selection order.

    ``hash_alg`` is the signing scheme's hash (the digest's algorithm); each value
    must be as long as its own bank's digest. Raises VerificationFailed
    (``tpm.pcrs``) when the values do not fit the selection.
    """
    selected = quote.selected
    if len(values) != len(selected):
        raise VerificationFailed(
            "tpm.pcrs",
            "the number of PCR values is not the number the quote selects",
            expected=len(selected),
            got=len(values),
        )
    h = hashlib.new(_HASH_NAMES[hash_alg])
    for (alg, index), value in zip(selected, values, strict=True):
        if len(value) != HASH_SIZES[alg]:
            raise VerificationFailed(
                "tpm.pcrs",
                f"PCR {index} value has the wrong length for its bank",
                field=f"pcr{index}",
                expected=HASH_SIZES[alg],
                got=len(value),
            )
        h.update(value)
    return h.digest()
