"""Azure's HCL report: the paravisor's wrapper of the SEV-SNP report or TD report, and its runtime claims.

On an Azure confidential VM the guest has no access to the hardware report
interface: the paravisor (Microsoft's "HCL", running at VMPL0 on SEV-SNP or as
the L1 VMM on TDX) requests the report and stores it in vTPM NV index
0x01400001 as an "HCL report". Layout (little-endian, as the paravisor writes
it and as Microsoft's ``az-cvm-vtpm`` crate reads it):

====== ====== ==================================================================
offset size   field
====== ====== ==================================================================
0x000  4      signature, ``"HCLA"``
0x004  4      header version (1 on the SEV-SNP vectors, 2 on the TDX ones)
0x008  4      report size: header + hardware area + request data + runtime claims
0x00C  4      request type (2: the attestation-key certificate request)
0x010  4      status (0)
0x014  12     reserved (zero)
0x020  1184   hardware report area: the SNP ATTESTATION_REPORT (1184 bytes) or a
              TDREPORT (1024 bytes, the rest zero)
0x4C0  4      IGVM request data: data size (20 + runtime claims size)
0x4C4  4      version (1)
0x4C8  4      report type: 2 SEV-SNP, 4 TDX
0x4CC  4      report-data hash type: 1 SHA-256 (2 SHA-384, 3 SHA-512: not seen, refused)
0x4D0  4      runtime claims size
0x4D4  n      runtime claims: UTF-8 JSON
====== ====== ==================================================================

The NV index is larger than the report; the bytes after ``report size`` are
zero. The hardware report's REPORT_DATA is the hash (the hash type's) of the
runtime claims, zero-padded to 64 bytes: that is what binds the claims' keys (the
vTPM's attestation key ``HCLAkPub``) to the hardware-signed report.

:func:`parse_hcl_report` decodes and checks the structure only; the binding and
the signatures are checked by :mod:`donjon.attestation.azure`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from donjon.attestation.errors import MalformedEvidence
from donjon.attestation.jsondoc import no_duplicate_members

__all__ = [
    "HCL_SIGNATURE",
    "HW_REPORT_SIZE",
    "MAX_HCL_BYTES",
    "REPORT_TYPE_SNP",
    "REPORT_TYPE_TDX",
    "TD_REPORT_SIZE",
    "HclReport",
    "RuntimeClaims",
    "parse_hcl_report",
    "parse_runtime_claims",
]

HCL_SIGNATURE = b"HCLA"
HEADER_SIZE = 0x20
HW_REPORT_SIZE = 1184
TD_REPORT_SIZE = 1024
REQUEST_OFFSET = HEADER_SIZE + HW_REPORT_SIZE  # 0x4C0
REQUEST_HEADER_SIZE = 20
CLAIMS_OFFSET = REQUEST_OFFSET + REQUEST_HEADER_SIZE  # 0x4D4

REPORT_TYPE_SNP = 2
REPORT_TYPE_TDX = 4
_REPORT_TYPES = {REPORT_TYPE_SNP: "sev-snp", REPORT_TYPE_TDX: "tdx"}
#: IGVM_HASH_TYPE_SHA256: the only hash type Azure's paravisor uses (and the only one accepted).
HASH_TYPE_SHA256 = 1

#: The NV index holding the report is 2600 bytes on every Azure CVM recorded; 8 KiB bounds it.
MAX_HCL_BYTES = 8192
#: Runtime claims are about 1.2 KB (two RSA-2048 JWKs, the VM configuration, user data).
MAX_CLAIMS_BYTES = 4096
#: The AK is RSA; anything outside these sizes is not a TPM's key.
_RSA_BITS = (2048, 4096)


@dataclass(frozen=True)
class RuntimeClaims:
    """The runtime claims JSON: the vTPM keys, the VM configuration and the user data."""

    raw: bytes = field(repr=False)
    ak_public: rsa.RSAPublicKey = field(repr=False)
    ak_jwk: Mapping[str, Any]
    vm_configuration: Mapping[str, Any]
    user_data: bytes | None
    key_ids: tuple[str, ...]


@dataclass(frozen=True)
class HclReport:
    """A decoded HCL report: header, the hardware report bytes and the runtime claims (unparsed)."""

    raw: bytes = field(repr=False)
    header_version: int
    report_size: int
    request_type: int
    request_version: int
    report_type: int
    hash_type: int
    hw_report: bytes = field(repr=False)  # 1184 bytes (SNP) or 1024 (TDX)
    runtime_claims: bytes = field(repr=False)

    @property
    def tee(self) -> str:
        return _REPORT_TYPES[self.report_type]

    def claims_digest(self) -> bytes:
        """SHA-256 of the runtime claims: what the hardware report's REPORT_DATA[0:32] must be."""
        return hashlib.sha256(self.runtime_claims).digest()


def _zero(data: bytes, check: str, what: str) -> None:
    if any(data):
        raise MalformedEvidence(check, f"{what} is not zero", field=what, expected="zero", got=data[:16])


def parse_hcl_report(data: bytes) -> HclReport:
    """Decode an HCL report with exact sizes, zero reserved bytes and zero padding."""
    if not isinstance(data, bytes | bytearray):
        raise MalformedEvidence("hcl.report", "an HCL report must be bytes")
    data = bytes(data)
    if len(data) > MAX_HCL_BYTES:
        raise MalformedEvidence(
            "hcl.size", "HCL report is too large", expected=f"<= {MAX_HCL_BYTES}", got=len(data)
        )
    if len(data) < CLAIMS_OFFSET:
        raise MalformedEvidence(
            "hcl.size", "HCL report is truncated", expected=f">= {CLAIMS_OFFSET}", got=len(data)
        )
    if data[:4] != HCL_SIGNATURE:
        raise MalformedEvidence(
            "hcl.signature", "not an HCL report", field="signature", expected=HCL_SIGNATURE, got=data[:4]
        )
    version, report_size, request_type, status = struct.unpack_from("<4I", data, 4)
    if version not in (1, 2):
        raise MalformedEvidence("hcl.version", "unknown HCL header version", field="version", got=version)
    if status != 0:
        raise MalformedEvidence("hcl.status", "the paravisor reported a failure", field="status", got=status)
    _zero(data[0x14:HEADER_SIZE], "hcl.reserved", "reserved")
    data_size, request_version, report_type, hash_type, claims_size = struct.unpack_from(
        "<5I", data, REQUEST_OFFSET
    )
    if report_type not in _REPORT_TYPES:
        raise MalformedEvidence(
            "hcl.report_type",
            "unknown hardware report type",
            field="report_type",
            expected="2 or 4",
            got=report_type,
        )
    if request_version != 1:
        raise MalformedEvidence(
            "hcl.version",
            "unknown IGVM request data version",
            field="request.version",
            expected=1,
            got=request_version,
        )
    if hash_type != HASH_TYPE_SHA256:
        raise MalformedEvidence(
            "hcl.hash_type",
            "unsupported report-data hash type",
            field="report_data_hash_type",
            expected=HASH_TYPE_SHA256,
            got=hash_type,
        )
    if claims_size > MAX_CLAIMS_BYTES:
        raise MalformedEvidence(
            "hcl.size",
            "runtime claims are too large",
            field="variable_data_size",
            expected=f"<= {MAX_CLAIMS_BYTES}",
            got=claims_size,
        )
    if data_size != REQUEST_HEADER_SIZE + claims_size:
        raise MalformedEvidence(
            "hcl.size",
            "IGVM request data size does not match the runtime claims size",
            field="data_size",
            expected=REQUEST_HEADER_SIZE + claims_size,
            got=data_size,
        )
    end = CLAIMS_OFFSET + claims_size
    if report_size != end:
        raise MalformedEvidence(
            "hcl.size",
            "report size does not match its parts",
            field="report_size",
            expected=end,
            got=report_size,
        )
    if end > len(data):
        raise MalformedEvidence("hcl.size", "runtime claims run past the end", expected=end, got=len(data))
    # The NV index is bigger than the report: the rest must be padding.
    _zero(data[end:], "hcl.padding", "padding")
    hw_size = HW_REPORT_SIZE if report_type == REPORT_TYPE_SNP else TD_REPORT_SIZE
    hw_area = data[HEADER_SIZE:REQUEST_OFFSET]
    _zero(hw_area[hw_size:], "hcl.reserved", "hardware report area after the TD report")
    return HclReport(
        raw=data,
        header_version=version,
        report_size=report_size,
        request_type=request_type,
        request_version=request_version,
        report_type=report_type,
        hash_type=hash_type,
        hw_report=hw_area[:hw_size],
        runtime_claims=data[CLAIMS_OFFSET:end],
    )


def _b64url_int(text: Any, what: str) -> int:
    if not isinstance(text, str) or not text or len(text) > 1024:
        raise MalformedEvidence("hcl.claims.ak", f"AK {what} is not a base64url string", field=what)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise MalformedEvidence("hcl.claims.ak", f"AK {what} is not base64url", field=what) from e
    return int.from_bytes(raw, "big")


def parse_runtime_claims(raw: bytes) -> RuntimeClaims:
    """Decode the runtime claims JSON and the AK (JWK ``kid`` ``HCLAkPub``, RSA) in it.

    Duplicate members are refused (two parsers could pick different ones);
    exactly one ``HCLAkPub`` key must be present. A VM's claims are the same
    bytes in every report until its user data changes: the decoding (and the
    AK's construction) is remembered by the bytes, like the SNP verifier's
    parsed certificates.
    """
    return _parse_runtime_claims(bytes(raw))


@functools.lru_cache(maxsize=256)
def _parse_runtime_claims(raw: bytes) -> RuntimeClaims:
    if len(raw) > MAX_CLAIMS_BYTES:
        raise MalformedEvidence(
            "hcl.size", "runtime claims are too large", expected=f"<= {MAX_CLAIMS_BYTES}", got=len(raw)
        )
    try:
        text = raw.decode("utf-8")
        # The size bound above bounds the nesting too (deeper input fails as RecursionError).
        doc = json.loads(text, object_pairs_hook=no_duplicate_members)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise MalformedEvidence("hcl.claims", f"runtime claims are not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise MalformedEvidence("hcl.claims", "runtime claims are not a JSON object")
    keys = doc.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise MalformedEvidence("hcl.claims", "runtime claims have no list of keys", field="keys")
    kids = tuple(str(k.get("kid")) for k in keys)
    aks = [k for k in keys if k.get("kid") == "HCLAkPub"]
    if len(aks) != 1:
        raise MalformedEvidence(
            "hcl.claims.ak", "runtime claims must hold exactly one HCLAkPub key", expected=1, got=len(aks)
        )
    ak = aks[0]
    if ak.get("kty") != "RSA":
        raise MalformedEvidence(
            "hcl.claims.ak", "the AK is not an RSA key", field="kty", expected="RSA", got=ak.get("kty")
        )
    n = _b64url_int(ak.get("n"), "n")
    exponent = _b64url_int(ak.get("e"), "e")
    if n.bit_length() not in _RSA_BITS or exponent < 3 or exponent % 2 == 0 or exponent >= n:
        raise MalformedEvidence(
            "hcl.claims.ak",
            "the AK is not a usable RSA key",
            field="n",
            got=f"{n.bit_length()} bits, e={exponent}",
        )
    public = rsa.RSAPublicNumbers(exponent, n).public_key()
    config = doc.get("vm-configuration", {})
    if not isinstance(config, dict):
        raise MalformedEvidence("hcl.claims", "vm-configuration is not an object", field="vm-configuration")
    user_data: bytes | None = None
    if "user-data" in doc:
        value = doc["user-data"]
        try:
            if not isinstance(value, str) or len(value) > 256:
                raise ValueError("not a short string")
            user_data = bytes.fromhex(value)
        except ValueError as e:
            raise MalformedEvidence("hcl.claims", "user-data is not hex", field="user-data") from e
    return RuntimeClaims(
        raw=raw,
        ak_public=public,
        ak_jwk=MappingProxyType(dict(ak)),
        vm_configuration=MappingProxyType(dict(config)),
        user_data=user_data,
        key_ids=kids,
    )
