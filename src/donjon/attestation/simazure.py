"""A simulated Azure paravisor and vTPM: HCL reports and TPM2 quotes for tests and demos.

Azure's paravisor cannot be run outside Azure. This builds what it would
produce, byte for byte in the layouts :mod:`donjon.attestation.hcl` and
:mod:`donjon.attestation.tpm` decode: runtime claims holding an attestation key
(AK) generated here, an HCL report wrapping a hardware report from a
simulated vendor (:mod:`donjon.attestation.simsnp` or
:mod:`donjon.attestation.simtdx`) whose report data binds those claims, and a
TPM2 quote by the AK over 24 SHA-256 PCRs with the caller's qualifying data.

Nothing here is trusted: evidence verifies only against the simulated vendor's
root given as ``extra_trusted``, so its claims say ``simulated``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from donjon.attestation import hcl, tpm

__all__ = ["DEFAULT_PCRS", "SimulatedVtpm", "runtime_claims"]

#: 24 distinct, recognisable PCR values (SHA-256 of "pcr<i>").
DEFAULT_PCRS = tuple(hashlib.sha256(f"pcr{i}".encode()).digest() for i in range(24))
_NV_INDEX_SIZE = 2600  # the HCL report's NV index on Azure


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def runtime_claims(
    ak: rsa.RSAPublicKey, vm_configuration: Mapping[str, Any], user_data: bytes = bytes(64)
) -> bytes:
    """Runtime claims as the paravisor writes them, for the AK ``ak`` (e.g. a software TPM's)."""
    numbers = ak.public_numbers()
    jwk = {
        "kid": "HCLAkPub",
        "key_ops": ["sign"],
        "kty": "RSA",
        "e": _b64url(_uint(numbers.e)),
        "n": _b64url(_uint(numbers.n)),
    }
    doc = {"keys": [jwk], "vm-configuration": dict(vm_configuration), "user-data": user_data.hex().upper()}
    return json.dumps(doc, separators=(",", ":")).encode()


class SimulatedVtpm:
    """A paravisor's vTPM: an RSA-2048 AK, PCR values, runtime claims, quotes."""

    def __init__(
        self,
        *,
        ak: rsa.RSAPrivateKey | None = None,
        pcrs: Sequence[bytes] = DEFAULT_PCRS,
        vm_configuration: Mapping[str, Any] | None = None,
    ) -> None:
        self.ak = ak if ak is not None else rsa.generate_private_key(65537, 2048)
        self.pcrs = tuple(pcrs)
        self.vm_configuration = dict(
            vm_configuration
            if vm_configuration is not None
            else {
                "console-enabled": False,
                "secure-boot": True,
                "tpm-enabled": True,
                "vmUniqueId": "SIMULATED",
            }
        )
        self.clock = 1000

    def runtime_claims(self, user_data: bytes = bytes(64)) -> bytes:
        """The runtime claims JSON: the AK as JWK ``HCLAkPub``, the VM configuration, user data."""
        return runtime_claims(self.ak.public_key(), self.vm_configuration, user_data)

    @staticmethod
    def report_data(claims: bytes) -> bytes:
        """What the hardware report's report data must be: SHA-256 of the claims, zero-padded."""
        return hashlib.sha256(claims).digest() + bytes(32)

    @staticmethod
    def hcl_report(
        hw_report: bytes, claims: bytes, *, tdx: bool = False, nv_size: int = _NV_INDEX_SIZE
    ) -> bytes:
        """An HCL report around ``hw_report`` and ``claims``, zero-padded to ``nv_size`` (Azure's NV size)."""
        report_type = hcl.REPORT_TYPE_TDX if tdx else hcl.REPORT_TYPE_SNP
        size = hcl.CLAIMS_OFFSET + len(claims)
        header = hcl.HCL_SIGNATURE + struct.pack("<4I", 2 if tdx else 1, size, 2, 0) + bytes(12)
        area = hw_report.ljust(hcl.HW_REPORT_SIZE, b"\x00")
        request = struct.pack("<5I", hcl.REQUEST_HEADER_SIZE + len(claims), 1, report_type, 1, len(claims))
        return (header + area + request + claims).ljust(max(nv_size, size), b"\x00")

    def quote(self, qualifying_data: bytes, pcr_indices: Sequence[int] = range(24)) -> tuple[bytes, bytes]:
        """A marshalled TPMS_ATTEST (quote over ``pcr_indices`` of the SHA-256 bank) and its signature."""
        self.clock += 1
        bitmap = bytearray(3)
        for i in pcr_indices:
            bitmap[i // 8] |= 1 << (i % 8)
        digest = hashlib.sha256(b"".join(self.pcrs[i] for i in sorted(pcr_indices))).digest()
        name = struct.pack(">H", tpm.ALG_SHA256) + hashlib.sha256(b"simulated AK").digest()
        message = (
            struct.pack(">IH", tpm.TPM_GENERATED, tpm.ST_ATTEST_QUOTE)
            + struct.pack(">H", len(name))
            + name
            + struct.pack(">H", len(qualifying_data))
            + qualifying_data
            + struct.pack(">QIIB", self.clock, 1, 0, 1)
            + struct.pack(">Q", 0x2020031200120003)
            + struct.pack(">IHB", 1, tpm.ALG_SHA256, 3)
            + bytes(bitmap)
            + struct.pack(">H", len(digest))
            + digest
        )
        return message, self.ak.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def evidence(
        self,
        hw_report: bytes,
        claims: bytes,
        qualifying_data: bytes,
        *,
        vcek_der: bytes | None = None,
        td_quote: bytes | None = None,
        version: int = 1,
    ) -> bytes:
        """Evidence JSON (form ``version`` 1 or 2): SEV-SNP with ``vcek_der``, TDX with ``td_quote``."""
        message, signature = self.quote(qualifying_data)
        hw_name, hw = ("vcek", vcek_der) if td_quote is None else ("td_quote", td_quote)
        assert hw is not None
        doc = {
            "version": version,
            "tpm_quote": {
                "signature": signature.hex(),
                "message": message.hex(),
                "pcrs": [p.hex() for p in self.pcrs],
            },
            "hcl_report": _b64url(self.hcl_report(hw_report, claims, tdx=td_quote is not None)),
            hw_name: _b64url(hw),
        }
        return json.dumps(doc).encode()
