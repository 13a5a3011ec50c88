"""AMD SEV-SNP attestation reports: decoding (versions 2 to 5) and verification.

Layout: AMD, "SEV Secure Nested Paging Firmware ABI Specification" (pub. 56860),
table "ATTESTATION_REPORT Structure" (every offset below is from it; all
integers little-endian). The report is 1184 (4A0h) bytes; the signature at 2A0h
covers bytes 0h-29Fh. Versions differ only in which bytes are still reserved:

- version 2: CPUID fields absent (188h-19Fh reserved); the product line comes
  from the endorsement certificate.
- versions 3 and 4 (ABI 1.55+): CPUID_FAM_ID/CPUID_MOD_ID/CPUID_STEP at 188h-18Ah.
- version 5 (ABI 1.58): LAUNCH_MIT_VECTOR at 1F8h and CURRENT_MIT_VECTOR at 200h.

TCB_VERSION (table "TCB_VERSION Structure") has two layouts: Milan and Genoa
put BOOT_LOADER, TEE, 4 reserved bytes, SNP, MICROCODE in bytes 0..7; Turin
puts FMC, BOOT_LOADER, TEE, SNP, 3 reserved bytes, MICROCODE.

:func:`parse_report` only decodes (length and version); :func:`verify_snp_report`
checks everything and is the only producer of SNP :class:`VerifiedEvidence`.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from donjon.attestation import amd
from donjon.attestation.amd import EndorsementKey, Product
from donjon.attestation.claims import Claims, TcbStatus, TeeType, VerifiedEvidence
from donjon.attestation.errors import CollateralError, MalformedEvidence, VerificationFailed
from donjon.attestation.pki import (
    X509_DECODE_ERRORS,
    check_not_revoked,
    check_validity,
    require_aware,
    verify_crl,
)
from donjon.attestation.verify import Collateral, TrustRoots

__all__ = [
    "KEY_VCEK",
    "KEY_VLEK",
    "POLICY_DEBUG",
    "POLICY_MIGRATE_MA",
    "POLICY_RESERVED_ONE",
    "POLICY_SMT",
    "REPORT_SIZE",
    "SIGNED_SIZE",
    "SUPPORTED_VERSIONS",
    "SnpChain",
    "SnpOptions",
    "SnpReport",
    "SnpTcb",
    "decode_tcb",
    "parse_report",
    "verify_endorsement_chain",
    "verify_snp_report",
]

#: ATTESTATION_REPORT size (4A0h) and the signed prefix (0h-29Fh).
REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
SUPPORTED_VERSIONS = (2, 3, 4, 5)

#: SIGNATURE_ALGO values (table "Signature Algorithm Encodings"): 1 = ECDSA P-384 with SHA-384.
SIG_ALGO_ECDSA_P384_SHA384 = 1

# Guest policy bits (table "Guest Policy Structure").
POLICY_SMT = 1 << 16
POLICY_RESERVED_ONE = 1 << 17  # reserved, must be one
POLICY_MIGRATE_MA = 1 << 18
POLICY_DEBUG = 1 << 19
POLICY_SINGLE_SOCKET = 1 << 20
POLICY_CXL_ALLOW = 1 << 21
POLICY_MEM_AES_256_XTS = 1 << 22
POLICY_RAPL_DIS = 1 << 23
POLICY_CIPHERTEXT_HIDING = 1 << 24
POLICY_PAGE_SWAP_DISABLE = 1 << 25
#: bits 63:26 are reserved and must be zero
POLICY_KNOWN_BITS = (1 << 26) - 1

# PLATFORM_INFO bits (table "PLATFORM_INFO Field"); AMD keeps adding bits here, so
# unknown ones are reported, not refused.
_PLATFORM_INFO_BITS = {
    0: "smt_enabled",
    1: "tsme_enabled",
    2: "ecc_enabled",
    3: "rapl_disabled",
    4: "ciphertext_hiding_enabled",
    5: "alias_check_complete",
    7: "tio_enabled",
}

#: KEY_INFO (48h) SIGNING_KEY values: 0 VCEK, 1 VLEK, 7 none (unsigned report).
KEY_VCEK = 0
KEY_VLEK = 1
KEY_NONE = 7
_KEY_NAMES = {KEY_VCEK: "vcek", KEY_VLEK: "vlek", KEY_NONE: "none"}


@dataclass(frozen=True)
class SnpTcb:
    """A decoded TCB_VERSION. ``fmc`` is ``None`` on Milan/Genoa (no such field)."""

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    def components(self) -> dict[str, int]:
        out = {"bootloader": self.bootloader, "tee": self.tee, "snp": self.snp, "microcode": self.microcode}
        if self.fmc is not None:
            out["fmc"] = self.fmc
        return out

    def shortfalls(self, minimum: SnpTcb) -> list[str]:
        """Names of the components below ``minimum`` (a missing ``fmc`` on either side is not compared)."""
        mine = self.components()
        return [name for name, floor in minimum.components().items() if name in mine and mine[name] < floor]

    def encode(self, product: Product) -> int:
        """The raw 64-bit TCB_VERSION for ``product`` (the inverse of :func:`decode_tcb`)."""
        if product is Product.TURIN:
            b = bytes([self.fmc or 0, self.bootloader, self.tee, self.snp, 0, 0, 0, self.microcode])
        else:
            b = bytes([self.bootloader, self.tee, 0, 0, 0, 0, self.snp, self.microcode])
        return int.from_bytes(b, "little")

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.components().items())


def decode_tcb(raw: int, product: Product | None) -> SnpTcb:
    """Decode a TCB_VERSION; Turin uses its own layout, everything else Milan's."""
    b = raw.to_bytes(8, "little")
    if product is Product.TURIN:
        return SnpTcb(fmc=b[0], bootloader=b[1], tee=b[2], snp=b[3], microcode=b[7])
    return SnpTcb(bootloader=b[0], tee=b[1], snp=b[6], microcode=b[7])


@dataclass(frozen=True)
class SnpReport:
    """Every field of an ATTESTATION_REPORT (offsets from pub. 56860, "ATTESTATION_REPORT Structure").

    TCB fields are kept raw (64-bit integers): their meaning depends on the
    product line (see :func:`decode_tcb`). Version-specific fields are ``None``
    in versions that do not have them. ``reserved`` lists each reserved byte
    range of *this* version as (offset, bytes), for the must-be-zero check.
    """

    raw: bytes = field(repr=False)
    version: int  # 000h
    guest_svn: int  # 004h
    policy: int  # 008h
    family_id: bytes  # 010h, 16 bytes
    image_id: bytes  # 020h, 16 bytes
    vmpl: int  # 030h
    signature_algo: int  # 034h
    current_tcb: int  # 038h
    platform_info: int  # 040h
    key_info: int  # 048h: bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 4:2 SIGNING_KEY
    report_data: bytes  # 050h, 64 bytes
    measurement: bytes  # 090h, 48 bytes
    host_data: bytes  # 0C0h, 32 bytes
    id_key_digest: bytes  # 0E0h, 48 bytes
    author_key_digest: bytes  # 110h, 48 bytes
    report_id: bytes  # 140h, 32 bytes
    report_id_ma: bytes  # 160h, 32 bytes
    reported_tcb: int  # 180h
    cpuid_fam_id: int | None  # 188h (version >= 3)
    cpuid_mod_id: int | None  # 189h (version >= 3)
    cpuid_step: int | None  # 18Ah (version >= 3)
    chip_id: bytes  # 1A0h, 64 bytes
    committed_tcb: int  # 1E0h
    current_build: int  # 1E8h
    current_minor: int  # 1E9h
    current_major: int  # 1EAh
    committed_build: int  # 1ECh
    committed_minor: int  # 1EDh
    committed_major: int  # 1EEh
    launch_tcb: int  # 1F0h
    launch_mit_vector: int | None  # 1F8h (version >= 5)
    current_mit_vector: int | None  # 200h (version >= 5)
    signature_r: bytes  # 2A0h, 72 bytes little-endian (zero-extended)
    signature_s: bytes  # 2E8h, 72 bytes little-endian (zero-extended)
    reserved: tuple[tuple[int, bytes], ...] = field(repr=False)

    @property
    def signed_region(self) -> bytes:
        return self.raw[:SIGNED_SIZE]

    @property
    def author_key_en(self) -> bool:
        return bool(self.key_info & 1)

    @property
    def mask_chip_key(self) -> bool:
        return bool(self.key_info & 2)

    @property
    def signing_key(self) -> int:
        return (self.key_info >> 2) & 7

    @property
    def signing_key_name(self) -> str:
        return _KEY_NAMES.get(self.signing_key, f"reserved({self.signing_key})")

    @property
    def chip_id_masked(self) -> bool:
        """CHIP_ID is all zero when the host set MaskChipId (and in VLEK-signed reports)."""
        return not any(self.chip_id)

    @property
    def debug(self) -> bool:
        return bool(self.policy & POLICY_DEBUG)

    @property
    def cpuid_product(self) -> Product | None:
        if self.cpuid_fam_id is None or self.cpuid_mod_id is None:
            return None
        return amd.product_from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)

    def platform_flags(self) -> dict[str, bool]:
        return {name: bool(self.platform_info >> bit & 1) for bit, name in _PLATFORM_INFO_BITS.items()}

    def policy_flags(self) -> dict[str, Any]:
        p = self.policy
        return {
            "abi_minor": p & 0xFF,
            "abi_major": (p >> 8) & 0xFF,
            "smt": bool(p & POLICY_SMT),
            "migrate_ma": bool(p & POLICY_MIGRATE_MA),
            "debug": bool(p & POLICY_DEBUG),
            "single_socket": bool(p & POLICY_SINGLE_SOCKET),
            "cxl_allow": bool(p & POLICY_CXL_ALLOW),
            "mem_aes_256_xts": bool(p & POLICY_MEM_AES_256_XTS),
            "rapl_dis": bool(p & POLICY_RAPL_DIS),
            "ciphertext_hiding": bool(p & POLICY_CIPHERTEXT_HIDING),
            "page_swap_disable": bool(p & POLICY_PAGE_SWAP_DISABLE),
        }


def _reserved_ranges(version: int) -> list[tuple[int, int]]:
    # Half-open [start, end) ranges that are reserved (must be zero) in ``version``.
    ranges = [(0x04C, 0x050)]
    ranges.append((0x188, 0x1A0) if version == 2 else (0x18B, 0x1A0))
    ranges += [(0x1EB, 0x1EC), (0x1EF, 0x1F0)]
    ranges.append((0x1F8, 0x2A0) if version < 5 else (0x208, 0x2A0))
    # SIGNATURE (ECDSA P-384 format): R 0h-47h, S 48h-8Fh, 90h-1FFh reserved.
    ranges.append((SIGNED_SIZE + 0x90, REPORT_SIZE))
    return ranges


def parse_report(data: bytes) -> SnpReport:
    """Decode an ATTESTATION_REPORT. Raises :class:`MalformedEvidence` for a wrong size or version.

    Decoding checks nothing else: reserved bytes, the signature and every
    semantic rule are :func:`verify_snp_report`'s job.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedEvidence("snp.type", f"report must be bytes, not {type(data).__name__}")
    raw = bytes(data)
    if len(raw) != REPORT_SIZE:
        raise MalformedEvidence(
            "snp.size", "an SEV-SNP report is 1184 bytes", expected=REPORT_SIZE, got=len(raw)
        )
    version, guest_svn, policy = struct.unpack_from("<IIQ", raw, 0x000)
    if version not in SUPPORTED_VERSIONS:
        raise MalformedEvidence(
            "snp.version", "unsupported report version", field="VERSION", expected="2..5", got=version
        )
    vmpl, signature_algo, current_tcb, platform_info, key_info = struct.unpack_from("<IIQQI", raw, 0x030)
    (reported_tcb,) = struct.unpack_from("<Q", raw, 0x180)
    (committed_tcb,) = struct.unpack_from("<Q", raw, 0x1E0)
    (launch_tcb,) = struct.unpack_from("<Q", raw, 0x1F0)
    v3 = version >= 3
    v5 = version >= 5
    return SnpReport(
        raw=raw,
        version=version,
        guest_svn=guest_svn,
        policy=policy,
        family_id=raw[0x010:0x020],
        image_id=raw[0x020:0x030],
        vmpl=vmpl,
        signature_algo=signature_algo,
        current_tcb=current_tcb,
        platform_info=platform_info,
        key_info=key_info,
        report_data=raw[0x050:0x090],
        measurement=raw[0x090:0x0C0],
        host_data=raw[0x0C0:0x0E0],
        id_key_digest=raw[0x0E0:0x110],
        author_key_digest=raw[0x110:0x140],
        report_id=raw[0x140:0x160],
        report_id_ma=raw[0x160:0x180],
        reported_tcb=reported_tcb,
        cpuid_fam_id=raw[0x188] if v3 else None,
        cpuid_mod_id=raw[0x189] if v3 else None,
        cpuid_step=raw[0x18A] if v3 else None,
        chip_id=raw[0x1A0:0x1E0],
        committed_tcb=committed_tcb,
        current_build=raw[0x1E8],
        current_minor=raw[0x1E9],
        current_major=raw[0x1EA],
        committed_build=raw[0x1EC],
        committed_minor=raw[0x1ED],
        committed_major=raw[0x1EE],
        launch_tcb=launch_tcb,
        launch_mit_vector=struct.unpack_from("<Q", raw, 0x1F8)[0] if v5 else None,
        current_mit_vector=struct.unpack_from("<Q", raw, 0x200)[0] if v5 else None,
        signature_r=raw[0x2A0:0x2E8],
        signature_s=raw[0x2E8:0x330],
        reserved=tuple((a, raw[a:b]) for a, b in _reserved_ranges(version)),
    )


@dataclass(frozen=True, kw_only=True)
class SnpOptions:
    """What the caller demands of an SNP report beyond authenticity (strict defaults).

    - ``max_vmpl``: highest VMPL (privilege level) allowed to have requested the report.
    - ``allow_debug``: accept a guest whose policy allows debugging (its memory is readable by the host).
    - ``allow_migration_agent``: accept a policy that allows a migration agent.
    - ``forbid_smt``: refuse a policy that allows SMT on the host.
    - ``min_abi``: minimum (major, minor) of the policy's ABI field.
    - ``min_firmware``: minimum (major, minor) of the running firmware (CURRENT_MAJOR/MINOR).
    - ``min_tcb`` / ``min_launch_tcb``: component-wise floors; ``min_tcb`` applies to the
      reported, current and committed TCB, ``min_launch_tcb`` (default ``min_tcb``) to the launch TCB.
    - ``report_data``: when given, REPORT_DATA must equal it (64 bytes).
    - ``product``: when given, the report must come from this product line.
    - ``signing_key``: ``"vcek"`` or ``"vlek"`` to accept only that kind of key.
    - ``require_crl``: refuse unless a current ARK-signed CRL for the product is in the collateral.
    - ``min_version``: lowest report version accepted.
    """

    max_vmpl: int = 0
    allow_debug: bool = False
    allow_migration_agent: bool = False
    forbid_smt: bool = False
    min_abi: tuple[int, int] | None = None
    min_firmware: tuple[int, int] | None = None
    min_tcb: SnpTcb | None = None
    min_launch_tcb: SnpTcb | None = None
    report_data: bytes | None = None
    product: Product | str | None = None
    signing_key: str | None = None
    require_crl: bool = False
    min_version: int = 2


def _check_structure(report: SnpReport) -> None:
    # Reserved fields of this version must be zero; the rest of the checks rely on it.
    for offset, value in report.reserved:
        if any(value):
            first = offset + next(i for i, b in enumerate(value) if b)
            raise MalformedEvidence(
                "snp.reserved",
                f"reserved bytes are not zero (first at 0x{first:03x})",
                field=f"reserved@0x{offset:03x}",
                expected="zero",
                got=value,
            )
    if report.signature_algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise MalformedEvidence(
            "snp.signature_algo",
            "unknown signature algorithm",
            field="SIGNATURE_ALGO",
            expected=SIG_ALGO_ECDSA_P384_SHA384,
            got=report.signature_algo,
        )
    if report.key_info >> 5:
        raise MalformedEvidence(
            "snp.reserved",
            "KEY_INFO reserved bits are set",
            field="KEY_INFO[31:5]",
            expected=0,
            got=report.key_info,
        )
    if report.signing_key == KEY_NONE or report.mask_chip_key:
        raise VerificationFailed(
            "snp.unsigned", "the report is not signed (SIGNING_KEY none or MASK_CHIP_KEY)"
        )
    if report.signing_key not in (KEY_VCEK, KEY_VLEK):
        raise MalformedEvidence(
            "snp.signing_key", "reserved SIGNING_KEY value", field="KEY_INFO[4:2]", got=report.signing_key
        )
    if not report.policy & POLICY_RESERVED_ONE:
        raise MalformedEvidence(
            "snp.reserved", "policy bit 17 must be one", field="POLICY[17]", expected=1, got=0
        )
    if report.policy & ~POLICY_KNOWN_BITS:
        raise MalformedEvidence(
            "snp.reserved",
            "reserved guest policy bits are set",
            field="POLICY[63:26]",
            expected=0,
            got=hex(report.policy & ~POLICY_KNOWN_BITS),
        )


def _all_certs(
    certs: Sequence[x509.Certificate], collateral: Collateral, roots: TrustRoots
) -> list[x509.Certificate]:
    return amd.unique([*certs, *collateral.certificates, *roots.certificates, *roots.extra_trusted])


def _endorsement_candidates(
    report: SnpReport, pool: Sequence[x509.Certificate], kind: str
) -> list[EndorsementKey]:
    found: list[EndorsementKey] = []
    malformed: MalformedEvidence | None = None
    for cert in pool:
        if not amd.is_endorsement_candidate(cert):
            continue
        # One malformed look-alike among the certificates must not hide the real key.
        try:
            key = amd.parse_endorsement_key(cert)
        except MalformedEvidence as e:
            malformed = malformed or e
            continue
        if key.kind == kind:
            found.append(key)
    if not found and malformed is not None:
        raise malformed
    if not found:
        raise CollateralError(
            f"snp.{kind}.missing",
            f"the report is signed by a {kind.upper()} but no {kind.upper()} certificate was given",
        )

    # Prefer keys issued for this chip and this TCB: they are the ones that can have signed it.
    def rank(key: EndorsementKey) -> tuple[int, int]:
        chip = key.hwid is not None and _hwid_matches(key.hwid, report.chip_id)
        tcb = decode_tcb(report.reported_tcb, key.product) == _cert_tcb(key)
        return (0 if chip else 1, 0 if tcb else 1)

    return sorted(found, key=rank)[:8]


def _hwid_matches(hwid: bytes, chip_id: bytes) -> bool:
    # Turin VCEKs carry the 8-byte chip ID; the report zero-fills CHIP_ID after it.
    return chip_id[: len(hwid)] == hwid and not any(chip_id[len(hwid) :])


def _cert_tcb(key: EndorsementKey) -> SnpTcb:
    return SnpTcb(
        bootloader=key.bootloader,
        tee=key.tee,
        snp=key.snp,
        microcode=key.microcode,
        fmc=key.fmc if key.product is Product.TURIN else None,
    )


def _report_signature(report: SnpReport) -> bytes:
    # R and S are little-endian and zero-extended to 72 bytes ("ECDSA P-384 with
    # SHA-384 Signature Format"); P-384 scalars fit in 48.
    if any(report.signature_r[48:]) or any(report.signature_s[48:]):
        raise VerificationFailed("snp.signature", "signature component does not fit in 48 bytes")
    r = int.from_bytes(report.signature_r, "little")
    s = int.from_bytes(report.signature_s, "little")
    if r == 0 or s == 0:
        raise VerificationFailed("snp.signature", "signature is zero")
    return encode_dss_signature(r, s)


def _signature_valid(report: SnpReport, key: EndorsementKey, signature: bytes) -> bool:
    try:
        key.public_key.verify(signature, report.signed_region, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class SnpChain:
    """A verified endorsement chain: VCEK/VLEK, ASK/ASVK, ARK, and the product line it proves."""

    key: EndorsementKey
    intermediate: x509.Certificate
    root: x509.Certificate
    product: Product
    simulated: bool


def _root_product(root: x509.Certificate, roots: TrustRoots) -> tuple[Product, bool] | None:
    # A root is trusted when AMD's pin matches, or when the caller named it in extra_trusted.
    pinned = amd.product_of_root(root)
    if pinned is not None:
        return pinned, False
    root_der = amd.cert_info(root).der
    for extra in roots.extra_trusted:
        if amd.cert_info(extra).der == root_der:
            product = amd.product_of_root(root, pinned_only=False)
            return (product, True) if product is not None else None
    return None


def verify_endorsement_chain(
    cert: x509.Certificate | EndorsementKey,
    *,
    pool: Sequence[x509.Certificate],
    roots: TrustRoots,
    at: datetime,
) -> SnpChain:
    """Verify a VCEK/VLEK's chain at ``at``: its ASK/ASVK and ARK found in ``pool`` or ``roots``.

    Checks every signature, AMD's pins for the product line (or that the root is
    in ``roots.extra_trusted``) and every certificate's validity. The collateral
    code uses it to vet a fetched VCEK; :func:`verify_snp_report` uses it for the
    report's key.
    """
    require_aware(at)
    key = cert if isinstance(cert, EndorsementKey) else amd.parse_endorsement_key(cert)
    pool = amd.unique([*pool, *roots.certificates, *roots.extra_trusted])
    kind = key.kind
    intermediates = amd.find_issuer(key.certificate, pool)
    if not intermediates:
        raise CollateralError(
            "snp.chain.intermediate",
            f"no certificate named {key.certificate.issuer.rfc4514_string()} (the issuer of the "
            f"{key.product_name} {kind.upper()}) was given: is the right product line's chain there?",
        )
    errors: list[Exception] = []
    for intermediate in intermediates[:4]:
        for root in amd.find_issuer(intermediate, pool)[:4]:
            trusted = _root_product(root, roots)
            if trusted is None:
                errors.append(
                    VerificationFailed(
                        "snp.chain.root",
                        f"{root.subject.rfc4514_string()} is neither pinned nor explicitly trusted",
                        expected="a pinned AMD ARK or a root in TrustRoots.extra_trusted",
                        got=amd.fingerprint(root),
                    )
                )
                continue
            product, simulated = trusted
            try:
                if not simulated:
                    pins = amd.ASK_FINGERPRINTS if kind == "vcek" else amd.ASVK_FINGERPRINTS
                    if amd.fingerprint(intermediate) != pins[product]:
                        raise VerificationFailed(
                            "snp.chain.intermediate_pin",
                            f"{intermediate.subject.rfc4514_string()} is not AMD's pinned "
                            f"{'ASK' if kind == 'vcek' else 'ASVK'} for {product.value}",
                            expected=pins[product],
                            got=amd.fingerprint(intermediate),
                        )
                amd.signature_verified(root, root, "snp.chain.root")
                amd.signature_verified(intermediate, root, "snp.chain")
                amd.signature_verified(key.certificate, intermediate, "snp.chain")
            except VerificationFailed as e:
                errors.append(e)
                continue
            chain = SnpChain(
                key=key, intermediate=intermediate, root=root, product=product, simulated=simulated
            )
            for member in (key.certificate, intermediate, root):
                check_validity(member, at, check="snp.chain")
            return chain
    if errors:
        raise errors[0]
    raise CollateralError(
        "snp.chain.root",
        f"no root certificate named {intermediates[0].issuer.rfc4514_string()} was given "
        f"(the {key.product_name} ARK)",
    )


def _check_crls(chain: SnpChain, collateral: Collateral, at: datetime, *, required: bool) -> bool:
    # AMD's CRL (KDS /vcek/v1/<product>/crl) is issued and signed by the ARK and lists
    # revoked ASK/ASVK serial numbers. A CRL from this ARK that does not verify is an
    # error, not something to skip.
    applied = False
    for crl in collateral.crls:
        # cryptography decodes CRL fields lazily: a malformed one fails on first access.
        try:
            if crl.issuer != chain.root.subject:
                continue
            verify_crl(crl, chain.root, at, check="snp.crl")
            check_not_revoked(chain.intermediate, crl, check="snp.chain")
        except X509_DECODE_ERRORS as e:
            raise CollateralError("snp.crl.parse", f"malformed CRL: {e}") from e
        applied = True
    if required and not applied:
        raise CollateralError(
            "snp.crl.missing", f"no CRL from {chain.root.subject.rfc4514_string()} in the collateral"
        )
    return applied


def _check_tcb(report: SnpReport, chain: SnpChain, options: SnpOptions) -> dict[str, SnpTcb]:
    product = chain.product
    tcbs = {
        "reported_tcb": decode_tcb(report.reported_tcb, product),
        "current_tcb": decode_tcb(report.current_tcb, product),
        "committed_tcb": decode_tcb(report.committed_tcb, product),
        "launch_tcb": decode_tcb(report.launch_tcb, product),
    }
    certified = _cert_tcb(chain.key)
    # The endorsement key is derived from REPORTED_TCB: the certificate must be for exactly that TCB.
    if tcbs["reported_tcb"] != certified:
        raise VerificationFailed(
            "snp.tcb.mismatch",
            f"REPORTED_TCB differs from the TCB the {chain.key.kind.upper()} certifies",
            field="REPORTED_TCB",
            expected=str(certified),
            got=str(tcbs["reported_tcb"]),
        )
    # The platform never runs below what it reports; the guest was never launched below it.
    for name in ("current_tcb", "committed_tcb", "launch_tcb"):
        short = tcbs[name].shortfalls(certified)
        if short:
            raise VerificationFailed(
                f"snp.tcb.{name.removesuffix('_tcb')}_below_certified",
                f"{name.upper()} is below the certified TCB in {', '.join(short)}",
                field=name.upper(),
                expected=f">= {certified}",
                got=str(tcbs[name]),
            )
    for name, floor in (
        ("reported_tcb", options.min_tcb),
        ("current_tcb", options.min_tcb),
        ("committed_tcb", options.min_tcb),
        ("launch_tcb", options.min_launch_tcb or options.min_tcb),
    ):
        if floor is None:
            continue
        short = tcbs[name].shortfalls(floor)
        if short:
            raise VerificationFailed(
                "snp.tcb.minimum",
                f"{name.upper()} is below the required minimum in {', '.join(short)}",
                field=name.upper(),
                expected=f">= {floor}",
                got=str(tcbs[name]),
            )
    return tcbs


def _check_policy(report: SnpReport, options: SnpOptions) -> None:
    if report.vmpl > options.max_vmpl:
        raise VerificationFailed(
            "snp.vmpl",
            "report requested from a less privileged VMPL than allowed",
            field="VMPL",
            expected=f"<= {options.max_vmpl}",
            got=report.vmpl,
        )
    if report.policy & POLICY_DEBUG and not options.allow_debug:
        raise VerificationFailed(
            "snp.policy.debug", "the guest policy allows debugging", field="POLICY.DEBUG"
        )
    if report.policy & POLICY_MIGRATE_MA and not options.allow_migration_agent:
        raise VerificationFailed(
            "snp.policy.migrate_ma", "the guest policy allows a migration agent", field="POLICY.MIGRATE_MA"
        )
    if report.policy & POLICY_SMT and options.forbid_smt:
        raise VerificationFailed("snp.policy.smt", "the guest policy allows SMT", field="POLICY.SMT")
    if options.min_abi is not None:
        abi = ((report.policy >> 8) & 0xFF, report.policy & 0xFF)
        if abi < options.min_abi:
            raise VerificationFailed(
                "snp.policy.abi",
                "the guest policy's minimum ABI is below the required one",
                field="POLICY.ABI",
                expected=f">= {options.min_abi[0]}.{options.min_abi[1]}",
                got=f"{abi[0]}.{abi[1]}",
            )
    if options.min_firmware is not None:
        fw = (report.current_major, report.current_minor)
        if fw < options.min_firmware:
            raise VerificationFailed(
                "snp.firmware",
                "the running firmware is older than required",
                field="CURRENT_VERSION",
                expected=f">= {options.min_firmware[0]}.{options.min_firmware[1]}",
                got=f"{fw[0]}.{fw[1]}",
            )


def _check_product(report: SnpReport, chain: SnpChain, options: SnpOptions) -> None:
    product = chain.product
    if chain.key.product is not product:
        raise VerificationFailed(
            "snp.product",
            f"the {chain.key.kind.upper()} is for another product line than its root",
            expected=product.value,
            got=chain.key.product_name,
        )
    # All-zero CPUID fields in a v3+ report mean the firmware did not fill them in: the
    # certificate chain alone then decides, as for version 2.
    if report.version >= 3 and (report.cpuid_fam_id or report.cpuid_mod_id or report.cpuid_step):
        from_cpuid = report.cpuid_product
        if from_cpuid is None:
            raise VerificationFailed(
                "snp.product.cpuid",
                "the report's CPUID is not a known SEV-SNP product",
                got=f"family {report.cpuid_fam_id:#x} model {report.cpuid_mod_id:#x}",
            )
        if from_cpuid is not product:
            raise VerificationFailed(
                "snp.product",
                "the report's CPUID names another product line than the certificate chain",
                expected=product.value,
                got=from_cpuid.value,
            )
    if options.product is not None and Product(options.product) is not product:
        raise VerificationFailed(
            "snp.product", "wrong product line", expected=Product(options.product).value, got=product.value
        )


def verify_snp_report(
    evidence: bytes,
    *,
    certs: Sequence[x509.Certificate] = (),
    collateral: Collateral | None = None,
    roots: TrustRoots,
    at: datetime,
    options: object | None = None,
) -> VerifiedEvidence:
    """Verify an SEV-SNP report at time ``at``; return its claims or raise.

    Checks, in order: size and version; reserved fields of that version,
    signature algorithm, KEY_INFO; the VCEK or VLEK (as KEY_INFO selects) among
    ``certs``, the collateral's and the roots' certificates; its chain
    (ARK -> ASK -> VCEK or ARK -> ASVK -> VLEK) to the pinned ARK of its product
    line, or to a root in ``roots.extra_trusted`` (then ``simulated=True``);
    every certificate's validity at ``at``; AMD's ARK-signed CRL when given; the
    ECDSA P-384 report signature; the product line (certificate, CPUID,
    ``options.product``); CHIP_ID against the VCEK's hwID (unless masked);
    REPORTED_TCB equal to the certified TCB, current/committed/launch TCB not
    below it, and the caller's minimums; VMPL and guest policy; REPORT_DATA.
    """
    require_aware(at)
    if options is None:
        options = SnpOptions()
    if not isinstance(options, SnpOptions):
        raise TypeError(f"SNP options must be SnpOptions, not {type(options).__name__}")
    collateral = collateral if collateral is not None else Collateral()
    report = parse_report(evidence)
    if report.version < options.min_version:
        raise VerificationFailed(
            "snp.version",
            "report version below the required minimum",
            field="VERSION",
            expected=f">= {options.min_version}",
            got=report.version,
        )
    _check_structure(report)
    kind = "vcek" if report.signing_key == KEY_VCEK else "vlek"
    if options.signing_key is not None and options.signing_key != kind:
        raise VerificationFailed(
            "snp.signing_key",
            "report signed by the wrong kind of key",
            expected=options.signing_key,
            got=kind,
        )
    pool = _all_certs(certs, collateral, roots)
    signature = _report_signature(report)
    # Several candidate keys may be offered (e.g. VCEKs for several TCBs); the one
    # whose chain verifies and whose key verifies the signature is the signer.
    chain: SnpChain | None = None
    first_error: Exception | None = None
    for key in _endorsement_candidates(report, pool, kind):
        try:
            candidate = verify_endorsement_chain(key, pool=pool, roots=roots, at=at)
        except (VerificationFailed, CollateralError) as e:
            first_error = first_error or e
            continue
        if _signature_valid(report, key, signature):
            chain = candidate
            break
        first_error = first_error or VerificationFailed(
            "snp.signature", f"the report's signature does not verify with the {kind.upper()}"
        )
    if chain is None:
        raise first_error or VerificationFailed("snp.signature", "no endorsement key verifies the report")
    crl_checked = _check_crls(chain, collateral, at, required=options.require_crl)
    _check_product(report, chain, options)
    # A VCEK names its chip (hwID); a masked CHIP_ID (all zero) cannot be compared and is
    # reported as "masked"; a VLEK names no chip.
    hwid = chain.key.hwid
    if hwid is not None and not report.chip_id_masked and not _hwid_matches(hwid, report.chip_id):
        raise VerificationFailed(
            "snp.chip_id",
            "CHIP_ID is not the chip the VCEK was issued for",
            field="CHIP_ID",
            expected=hwid,
            got=report.chip_id,
        )
    tcbs = _check_tcb(report, chain, options)
    _check_policy(report, options)
    if options.report_data is not None and report.report_data != options.report_data:
        raise VerificationFailed(
            "snp.report_data",
            "REPORT_DATA is not the expected value",
            field="REPORT_DATA",
            expected=options.report_data,
            got=report.report_data,
        )
    claims = _claims(report, chain, tcbs, crl_checked=crl_checked)
    return VerifiedEvidence._create(claims, hashlib.sha256(report.raw).digest(), at)


def _claims(report: SnpReport, chain: SnpChain, tcbs: dict[str, SnpTcb], *, crl_checked: bool) -> Claims:
    raw: dict[str, Any] = {
        # False when no CRL from this ARK was in the collateral (allowed unless options.require_crl):
        # the ASK/ASVK's revocation was then not checked.
        "crl_checked": crl_checked,
        "version": report.version,
        "vmpl": report.vmpl,
        "policy": report.policy,
        "policy_flags": report.policy_flags(),
        "guest_svn": report.guest_svn,
        "platform_info": report.platform_info,
        "platform_flags": report.platform_flags(),
        "chip_id": "masked" if report.chip_id_masked else report.chip_id,
        "signing_key": chain.key.kind,
        "author_key_en": report.author_key_en,
        "product_name": chain.key.product_name,
        "report_id": report.report_id,
        "report_id_ma": report.report_id_ma,
        "current_version": f"{report.current_major}.{report.current_minor}.{report.current_build}",
        "committed_version": f"{report.committed_major}.{report.committed_minor}.{report.committed_build}",
        **{name: tcb.components() for name, tcb in tcbs.items()},
        **{f"{name}_raw": f"{getattr(report, name):016x}" for name in tcbs},
    }
    if report.cpuid_fam_id is not None:
        raw["cpuid"] = {
            "family": report.cpuid_fam_id,
            "model": report.cpuid_mod_id,
            "stepping": report.cpuid_step,
        }
    if report.launch_mit_vector is not None:
        raw["launch_mit_vector"] = report.launch_mit_vector
        raw["current_mit_vector"] = report.current_mit_vector
    if chain.key.csp_id is not None:
        raw["csp_id"] = chain.key.csp_id
    id_key = report.id_key_digest if any(report.id_key_digest) else None
    author_key = report.author_key_digest if report.author_key_en and any(report.author_key_digest) else None
    return Claims(
        tee=TeeType.SNP,
        platform=chain.product.value,
        measurement=report.measurement,
        report_data=report.report_data,
        debug=report.debug,
        tcb_status=TcbStatus.UP_TO_DATE,
        signer=author_key or id_key,
        id_key_digest=id_key,
        measurements={
            "measurement": report.measurement,
            "host_data": report.host_data,
            "family_id": report.family_id,
            "image_id": report.image_id,
            "id_key_digest": report.id_key_digest,
            "author_key_digest": report.author_key_digest,
        },
        raw=raw,
        simulated=chain.simulated,
    )
