"""The 64 bytes a Keep's evidence must carry, tying it to a key, a workload and a nonce.

Native binding (DESIGN.md "One run, as data")::

    SHA-512("donjon-keep-v1" || 0x00 || SPKI DER || workload digest || nonce)

It goes into SNP ``REPORT_DATA``, TDX/SGX ``REPORTDATA`` (64 bytes each). The
nonce comes from the Steward's challenge, so a report cannot be replayed under
another key, for another workload, or after the nonce expires.

Behind a vTPM (Azure confidential VMs) the binding goes into a TPM2 quote's
qualifying data (TPM2B_DATA), whose buffer is ``sizeof(TPMT_HA)``: 2 bytes plus
the largest digest the TPM implements, so 34 bytes on a SHA-256-only TPM and 50
with SHA-384 (TCG TPM 2.0 Part 2, 10.4.3). The 64 bytes do not fit every TPM,
so the qualifying data is ``SHA-256(binding)`` (32 bytes, which every TPM 2.0
accepts); SHA-256 keeps the binding's collision resistance at 128 bits.

Legacy Enarx bindings (enarx/enarx ``src/backend/*/attestation``): SNP
``report_data[0:48] = SHA-384(SPKI DER)`` and SGX ``reportdata[0:32] =
SHA-256(SPKI DER)``, the rest zero. They bind the key only: no workload, no
freshness.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = [
    "BINDING_DOMAIN",
    "BINDING_SIZE",
    "WORKLOAD_DIGEST_SIZE",
    "BindingMismatch",
    "check_binding",
    "check_legacy_binding",
    "check_vtpm_binding",
    "keep_binding",
    "legacy_binding",
    "vtpm_qualifying_data",
]

BINDING_DOMAIN = b"donjon-keep-v1"
BINDING_SIZE = 64
WORKLOAD_DIGEST_SIZE = 32
#: A nonce longer than this is not one of ours (see donjon.steward.nonce).
MAX_NONCE_SIZE = 256


class BindingMismatch(Exception):
    """The evidence's report data is not the binding the Steward computed."""

    def __init__(self, reason: str, *, expected: bytes, got: bytes) -> None:
        self.reason = reason
        self.expected = expected
        self.got = got
        super().__init__(f"{reason} (expected {expected.hex()}, got {got.hex()})")


def keep_binding(spki_der: bytes, workload_digest: bytes, nonce: bytes) -> bytes:
    """The native 64-byte binding for a Keep key, workload digest and Steward nonce."""
    if len(workload_digest) != WORKLOAD_DIGEST_SIZE:
        raise ValueError(f"workload digest must be {WORKLOAD_DIGEST_SIZE} bytes, got {len(workload_digest)}")
    if not 0 < len(nonce) <= MAX_NONCE_SIZE:
        raise ValueError(f"nonce must be 1..{MAX_NONCE_SIZE} bytes, got {len(nonce)}")
    # The 0x00 separates the domain string from the key; the SPKI is DER, so
    # self-delimiting, and the digest has a fixed size: the concatenation is
    # unambiguous and the nonce may take the rest.
    return hashlib.sha512(BINDING_DOMAIN + b"\x00" + spki_der + workload_digest + nonce).digest()


def legacy_binding(kind: str, spki_der: bytes) -> bytes:
    """Enarx's 64-byte report data for ``kind`` ``"snp-report"`` or ``"sgx-quote"``."""
    if kind == "snp-report":
        return hashlib.sha384(spki_der).digest().ljust(BINDING_SIZE, b"\x00")
    if kind == "sgx-quote":
        return hashlib.sha256(spki_der).digest().ljust(BINDING_SIZE, b"\x00")
    raise ValueError(f"no legacy Enarx binding for evidence kind {kind!r}")


def check_binding(report_data: bytes, spki_der: bytes, workload_digest: bytes, nonce: bytes) -> None:
    """Raise :class:`BindingMismatch` unless ``report_data`` is exactly the native binding."""
    expected = keep_binding(spki_der, workload_digest, nonce)
    if not hmac.compare_digest(bytes(report_data), expected):
        raise BindingMismatch(
            "report data is not the binding of this key, workload and nonce",
            expected=expected,
            got=bytes(report_data),
        )


def vtpm_qualifying_data(binding: bytes) -> bytes:
    """The TPM2 quote's qualifying data for a 64-byte ``binding``: SHA-256 of it (see the module doc)."""
    if len(binding) != BINDING_SIZE:
        raise ValueError(f"binding must be {BINDING_SIZE} bytes, got {len(binding)}")
    return hashlib.sha256(binding).digest()


def check_vtpm_binding(qualifying_data: bytes, spki_der: bytes, workload_digest: bytes, nonce: bytes) -> None:
    """Raise :class:`BindingMismatch` unless a vTPM quote's qualifying data carries the native binding."""
    expected = vtpm_qualifying_data(keep_binding(spki_der, workload_digest, nonce))
    if not hmac.compare_digest(bytes(qualifying_data), expected):
        raise BindingMismatch(
            "qualifying data is not the vTPM binding of this key, workload and nonce",
            expected=expected,
            got=bytes(qualifying_data),
        )


def check_legacy_binding(kind: str, report_data: bytes, spki_der: bytes) -> None:
    """Raise :class:`BindingMismatch` unless ``report_data`` is Enarx's binding of the key."""
    expected = legacy_binding(kind, spki_der)
    if not hmac.compare_digest(bytes(report_data), expected):
        raise BindingMismatch(
            "report data is not the legacy Enarx binding of this key",
            expected=expected,
            got=bytes(report_data),
        )
