"""AMD's SEV-SNP public key infrastructure: pinned roots, endorsement certificates, chains.

AMD signs SEV-SNP reports with a per-chip, per-TCB *VCEK* or a per-cloud-provider
*VLEK* (EC P-384). The Key Distribution Service (KDS) certifies them::

    ARK-<product> (RSA-4096, self-signed, RSASSA-PSS SHA-384)
      -> SEV-<product>       (the ASK)  -> VCEK   ("SEV-VCEK")
      -> SEV-VLEK-<product>  (the ASVK) -> VLEK   ("SEV-VLEK")

one ARK per product line (Milan, Genoa, Turin). Source: AMD, "Versioned Chip
Endorsement Key (VCEK) Certificate and KDS Interface Specification" (pub.
57230) and "Versioned Loaded Endorsement Key (VLEK) Certificate Definition"
(pub. 58369): certificate profile, the ``1.3.6.1.4.1.3704.1`` extensions below,
and the ARK-signed CRL listing revoked ASK/ASVK serial numbers.

Trust is pinned here by the SHA-256 of each AMD certificate's DER (STYLE.md 3):
the certificates themselves come from the caller and are used only when their
fingerprint matches. The fingerprints were computed from AMD's own
certificates as served by KDS ``/vcek/v1/<product>/cert_chain`` and
``/vlek/v1/<product>/cert_chain`` (the copies in the test vectors).

Pure: no network, no clock, no files.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
import struct
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

try:  # the warning class moved between releases; only its identity matters
    from cryptography.utils import CryptographyDeprecationWarning
except ImportError:  # pragma: no cover
    CryptographyDeprecationWarning = DeprecationWarning  # type: ignore[misc, assignment]

from donjon.attestation.errors import MalformedEvidence
from donjon.attestation.pki import X509_DECODE_ERRORS, check_signed_by

__all__ = [
    "ARK_FINGERPRINTS",
    "ASK_FINGERPRINTS",
    "ASVK_FINGERPRINTS",
    "OID_BL_SPL",
    "OID_CSP_ID",
    "OID_FMC_SPL",
    "OID_HWID",
    "OID_PRODUCT_NAME",
    "OID_SNP_SPL",
    "OID_STRUCT_VERSION",
    "OID_TEE_SPL",
    "OID_UCODE_SPL",
    "EndorsementKey",
    "Product",
    "cert_info",
    "clear_caches",
    "parse_cert_table",
    "parse_endorsement_key",
    "product_from_cpuid",
    "product_of_root",
    "signature_verified",
]

# AMD KDS certificates (VCEK, all of them) carry serial number 0, which RFC 5280
# forbids; cryptography warns on each load. The warning is about AMD's
# certificates, not about anything a caller can act on, so it is silenced for
# exactly that message.
warnings.filterwarnings(
    "ignore",
    message="Parsed a serial number which wasn't positive",
    category=CryptographyDeprecationWarning,
)


class Product(enum.StrEnum):
    """AMD EPYC product lines with an SEV-SNP ARK (KDS ``{product_name}``)."""

    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"


#: SHA-256 of the DER of AMD's root keys (ARK), per product line.
ARK_FINGERPRINTS: Mapping[Product, str] = MappingProxyType(
    {
        Product.MILAN: "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
        Product.GENOA: "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
        Product.TURIN: "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    }
)
#: SHA-256 of the DER of AMD's SEV signing keys (ASK, "SEV-<product>"), which certify VCEKs.
ASK_FINGERPRINTS: Mapping[Product, str] = MappingProxyType(
    {
        Product.MILAN: "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
        Product.GENOA: "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
        Product.TURIN: "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
    }
)
#: SHA-256 of the DER of AMD's VLEK signing keys (ASVK, "SEV-VLEK-<product>"), which certify VLEKs.
ASVK_FINGERPRINTS: Mapping[Product, str] = MappingProxyType(
    {
        Product.MILAN: "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
        Product.GENOA: "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
        Product.TURIN: "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c",
    }
)

# VCEK/VLEK extensions (pub. 57230 "VCEK Certificate Extensions"; pub. 58369).
_ARC = "1.3.6.1.4.1.3704.1"
OID_STRUCT_VERSION = x509.ObjectIdentifier(f"{_ARC}.1")  # INTEGER
OID_PRODUCT_NAME = x509.ObjectIdentifier(f"{_ARC}.2")  # IA5String, e.g. "Milan-B0", "Genoa", "Turin"
OID_BL_SPL = x509.ObjectIdentifier(f"{_ARC}.3.1")  # INTEGER, boot loader SPL
OID_TEE_SPL = x509.ObjectIdentifier(f"{_ARC}.3.2")  # INTEGER, PSP OS SPL
OID_SNP_SPL = x509.ObjectIdentifier(f"{_ARC}.3.3")  # INTEGER, SNP firmware SPL
#: spl_4 .. spl_7: the TCB_VERSION bytes AMD keeps reserved (all zero today)
OID_SPL_RESERVED = tuple(x509.ObjectIdentifier(f"{_ARC}.3.{n}") for n in (4, 5, 6, 7))
OID_UCODE_SPL = x509.ObjectIdentifier(f"{_ARC}.3.8")  # INTEGER, microcode SPL
OID_FMC_SPL = x509.ObjectIdentifier(f"{_ARC}.3.9")  # INTEGER, Turin and later: FMC SPL
OID_HWID = x509.ObjectIdentifier(f"{_ARC}.4")  # OCTET STRING: CHIP_ID (64 bytes; 8 on Turin); VCEK only
OID_CSP_ID = x509.ObjectIdentifier(f"{_ARC}.5")  # IA5String: the cloud provider a VLEK is issued to

_ARK_CN = re.compile(r"^ARK-(Milan|Genoa|Turin)\b")


def product_of_root(root: x509.Certificate, *, pinned_only: bool = True) -> Product | None:
    """The product line of an ARK: by pin, or (``pinned_only=False``) by its ``ARK-<product>`` name.

    The name is only consulted for roots the caller trusts explicitly
    (simulated vendors); a real AMD root is identified by its fingerprint.
    """
    fp = _fingerprint(root)
    for product, pinned in ARK_FINGERPRINTS.items():
        if fp == pinned:
            return product
    if pinned_only:
        return None
    for attr in root.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("ascii", "replace")
        match = _ARK_CN.match(value)
        if match:
            return Product(match.group(1))
    return None


def product_from_cpuid(family: int, model: int) -> Product | None:
    """Product line from the report's CPUID_FAM_ID / CPUID_MOD_ID (report version 3 and later).

    Family 19h: models 00h-0Fh are Milan, 10h-1Fh Genoa, A0h-AFh Genoa-class
    Bergamo/Siena (KDS serves them as "Genoa"); family 1Ah models 00h-1Fh are
    Turin. Anything else is unknown (``None``); callers refuse it.
    """
    if family == 0x19:
        if model <= 0x0F:
            return Product.MILAN
        if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:
            return Product.GENOA
    elif family == 0x1A and model <= 0x1F:
        return Product.TURIN
    return None


@dataclass(frozen=True)
class CertInfo:
    """What the verifier derives from a certificate object, computed once per object.

    ``cryptography`` re-encodes a certificate on every ``public_bytes`` call (tens
    of microseconds), and a report's verification needs the DER, fingerprint and
    names of four certificates several times; a Steward verifying a stream of
    reports holds the same certificate objects. Entries are keyed by object
    identity and keep the object alive, so an id is never confused with a
    recycled one.
    """

    cert: x509.Certificate
    der: bytes
    fingerprint: str
    subject: str
    issuer: str
    endorsement_candidate: bool


#: What ``cryptography`` raises for a malformed certificate (parsed lazily, field by field).
_X509_ERRORS = X509_DECODE_ERRORS

_INFO: OrderedDict[int, CertInfo] = OrderedDict()
_INFO_LOCK = threading.Lock()
_INFO_MAX = 512


def cert_info(cert: x509.Certificate) -> CertInfo:
    """The (cached) :class:`CertInfo` of ``cert``."""
    key = id(cert)
    with _INFO_LOCK:
        hit = _INFO.get(key)
        if hit is not None and hit.cert is cert:
            _INFO.move_to_end(key)
            return hit
    # cryptography parses names and extensions lazily: a malformed certificate fails here.
    try:
        der = cert.public_bytes(serialization.Encoding.DER)
        info = CertInfo(
            cert=cert,
            der=der,
            fingerprint=hashlib.sha256(der).hexdigest(),
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            endorsement_candidate=_is_endorsement_candidate(cert),
        )
    except _X509_ERRORS as e:
        raise MalformedEvidence("certificate.parse", f"malformed certificate: {e}") from e
    with _INFO_LOCK:
        _INFO[key] = info
        while len(_INFO) > _INFO_MAX:
            _INFO.popitem(last=False)
    return info


def _fingerprint(cert: x509.Certificate) -> str:
    return cert_info(cert).fingerprint


@dataclass(frozen=True)
class EndorsementKey:
    """A VCEK or VLEK certificate and what its AMD extensions say.

    ``kind`` is ``"vcek"`` (has a hwID) or ``"vlek"`` (has a CSP id). TCB
    components are the SPL extensions; ``fmc`` is present on Turin and later.
    ``hwid`` is the chip ID the VCEK was issued for (64 bytes; the first 8 bytes
    of CHIP_ID on Turin). ``product`` is the product line from the product name
    (``"Milan-B0"`` -> Milan), or ``None`` when the name is not one AMD uses.
    """

    certificate: x509.Certificate
    kind: str
    product_name: str
    product: Product | None
    struct_version: int | None
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None
    spl_reserved: tuple[int, int, int, int]
    hwid: bytes | None
    csp_id: str | None
    public_key: ec.EllipticCurvePublicKey


def _der_integer(raw: bytes, what: str) -> int:
    # KDS encodes every SPL as a DER INTEGER, e.g. 02 01 73 or 02 02 00 d9.
    if len(raw) < 3 or raw[0] != 0x02 or raw[1] != len(raw) - 2 or raw[1] > 8:
        raise MalformedEvidence("snp.vcek.extension", f"{what} is not a small DER INTEGER", got=raw)
    value = int.from_bytes(raw[2:], "big", signed=True)
    if not 0 <= value <= 0xFF:
        raise MalformedEvidence("snp.vcek.extension", f"{what} is out of range 0..255", got=value)
    return value


def _der_ia5(raw: bytes, what: str) -> str:
    if len(raw) < 2 or raw[0] != 0x16 or raw[1] != len(raw) - 2 or raw[1] > 0x7F:
        raise MalformedEvidence("snp.vcek.extension", f"{what} is not a short DER IA5String", got=raw)
    try:
        return raw[2:].decode("ascii")
    except UnicodeDecodeError as e:
        raise MalformedEvidence("snp.vcek.extension", f"{what} is not ASCII", got=raw) from e


def _hwid(raw: bytes) -> bytes:
    # KDS puts the chip ID's bytes directly in extnValue (64 bytes; Turin: 8 bytes).
    # Some issuers wrap them in a DER OCTET STRING (04 40 ...): accept both encodings.
    if len(raw) == 66 and raw[:2] == b"\x04\x40":
        return raw[2:]
    if len(raw) in (8, 64):
        return raw
    raise MalformedEvidence("snp.vcek.hwid", "hwID extension has an unexpected length", got=len(raw))


@functools.lru_cache(maxsize=256)
def _parse_endorsement_der(der: bytes) -> EndorsementKey:
    cert = x509.load_der_x509_certificate(der)
    values: dict[x509.ObjectIdentifier, bytes] = {}
    for ext in cert.extensions:
        if isinstance(ext.value, x509.UnrecognizedExtension) and ext.oid.dotted_string.startswith(_ARC + "."):
            values[ext.oid] = ext.value.value
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise MalformedEvidence("snp.vcek.key", "endorsement key is not an EC P-384 key")

    def spl(oid: x509.ObjectIdentifier, name: str, *, required: bool = True) -> int | None:
        raw = values.get(oid)
        if raw is None:
            if required:
                raise MalformedEvidence(
                    "snp.vcek.extension", f"endorsement certificate has no {name} extension"
                )
            return None
        return _der_integer(raw, name)

    if OID_PRODUCT_NAME not in values:
        raise MalformedEvidence("snp.vcek.extension", "endorsement certificate has no productName extension")
    product_name = _der_ia5(values[OID_PRODUCT_NAME], "productName")
    try:
        product: Product | None = Product(product_name.split("-", 1)[0])
    except ValueError:
        product = None
    hwid = _hwid(values[OID_HWID]) if OID_HWID in values else None
    csp_id = _der_ia5(values[OID_CSP_ID], "cspId") if OID_CSP_ID in values else None
    if hwid is not None and csp_id is not None:
        raise MalformedEvidence(
            "snp.vcek.extension", "certificate has both a hwID (VCEK) and a CSP id (VLEK)"
        )
    if hwid is None and csp_id is None:
        raise MalformedEvidence(
            "snp.vcek.extension", "certificate has neither a hwID (VCEK) nor a CSP id (VLEK)"
        )
    reserved = tuple(
        spl(oid, f"spl_{n}", required=False) or 0
        for n, oid in zip((4, 5, 6, 7), OID_SPL_RESERVED, strict=True)
    )
    return EndorsementKey(
        certificate=cert,
        kind="vcek" if hwid is not None else "vlek",
        product_name=product_name,
        product=product,
        struct_version=spl(OID_STRUCT_VERSION, "structVersion", required=False),
        bootloader=spl(OID_BL_SPL, "blSPL") or 0,
        tee=spl(OID_TEE_SPL, "teeSPL") or 0,
        snp=spl(OID_SNP_SPL, "snpSPL") or 0,
        microcode=spl(OID_UCODE_SPL, "ucodeSPL") or 0,
        fmc=spl(OID_FMC_SPL, "fmcSPL", required=False),
        spl_reserved=(reserved[0], reserved[1], reserved[2], reserved[3]),
        hwid=hwid,
        csp_id=csp_id,
        public_key=key,
    )


def parse_endorsement_key(cert: x509.Certificate) -> EndorsementKey:
    """Decode a VCEK/VLEK certificate's AMD extensions (results are cached by DER)."""
    try:
        return _parse_endorsement_der(cert_info(cert).der)
    except _X509_ERRORS as e:
        raise MalformedEvidence("snp.vcek.parse", f"cannot decode endorsement certificate: {e}") from e


def is_endorsement_candidate(cert: x509.Certificate) -> bool:
    """True for an EC P-384 certificate carrying AMD's productName extension (cheap pre-filter)."""
    return cert_info(cert).endorsement_candidate


def _is_endorsement_candidate(cert: x509.Certificate) -> bool:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):  # not a key this verifier could use anyway
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        return False
    try:
        cert.extensions.get_extension_for_oid(OID_PRODUCT_NAME)
    except x509.ExtensionNotFound:
        return False
    return True


_VERIFIED: OrderedDict[tuple[bytes, bytes], None] = OrderedDict()
_VERIFIED_LOCK = threading.Lock()
_VERIFIED_MAX = 1024


def signature_verified(cert: x509.Certificate, issuer: x509.Certificate, check: str) -> None:
    """Raise unless ``issuer`` signed ``cert`` (issuer name and signature).

    Successful verifications are remembered by the DER of both certificates (a
    signature is a fact about two byte strings, independent of the time), so a
    Steward verifying many reports from the same chips pays for each RSA-4096
    chain signature once. Failures are never remembered.
    """
    mine, theirs = cert_info(cert), cert_info(issuer)
    key = (mine.der, theirs.der)
    with _VERIFIED_LOCK:
        if key in _VERIFIED:
            _VERIFIED.move_to_end(key)
            return
    check_signed_by(cert, issuer, check)  # also checks the issuer name
    with _VERIFIED_LOCK:
        _VERIFIED[key] = None
        while len(_VERIFIED) > _VERIFIED_MAX:
            _VERIFIED.popitem(last=False)


def clear_caches(*, parsed: bool = True) -> None:
    """Forget remembered signature verifications (and, with ``parsed``, parsed certificates).

    For benchmarks and tests; nothing else needs it, the caches are bounded.
    """
    with _VERIFIED_LOCK:
        _VERIFIED.clear()
    if parsed:
        with _INFO_LOCK:
            _INFO.clear()
        _parse_endorsement_der.cache_clear()


# Certificate table of an extended guest request (GHCB specification, pub. 56421,
# "SNP Extended Guest Request": entries of GUID (16) || offset (u32) || length (u32),
# ended by an all-zero entry; offsets count from the table's start). This is what
# Linux configfs-tsm returns as "auxblob" on SNP.
_CERT_TABLE_GUIDS: Mapping[str, str] = MappingProxyType(
    {
        "63da758d-e664-4564-adc5-f4b93be8accd": "vcek",
        "a8074bc2-a25a-483e-aae6-39c045a0b8a1": "vlek",
        "4ab7b379-bbac-4fe4-a02f-05aef327c782": "ask",
        "c0b406a4-a803-4952-9743-3fb6014cd0ae": "ark",
    }
)
_MAX_CERT_TABLE = 64 * 1024
_MAX_CERT_ENTRIES = 16


def _guid(raw: bytes) -> str:
    # GUIDs are stored in the Microsoft mixed-endian layout.
    a, b, c = struct.unpack_from("<IHH", raw)
    rest = raw[8:16].hex()
    return f"{a:08x}-{b:04x}-{c:04x}-{rest[:4]}-{rest[4:]}"


def parse_cert_table(table: bytes) -> list[tuple[str, bytes]]:
    """Entries of an SNP extended-report certificate table as ``(kind, DER)``.

    ``kind`` is ``"vcek"``, ``"vlek"``, ``"ask"``, ``"ark"`` or the GUID string
    for entries AMD has not named. Bounded: at most 16 entries, 64 KiB.
    """
    if len(table) > _MAX_CERT_TABLE:
        raise MalformedEvidence("snp.cert_table.size", "certificate table too large", got=len(table))
    out: list[tuple[str, bytes]] = []
    pos = 0
    while True:
        if pos + 24 > len(table):
            raise MalformedEvidence("snp.cert_table.truncated", "certificate table ends without a zero entry")
        entry = table[pos : pos + 24]
        if entry == bytes(24):
            return out
        if len(out) >= _MAX_CERT_ENTRIES:
            raise MalformedEvidence("snp.cert_table.entries", "certificate table has too many entries")
        offset, length = struct.unpack_from("<II", entry, 16)
        if offset + length > len(table) or length == 0:
            raise MalformedEvidence("snp.cert_table.entry", "certificate entry points outside the table")
        guid = _guid(entry[:16])
        out.append((_CERT_TABLE_GUIDS.get(guid, guid), table[offset : offset + length]))
        pos += 24


def find_issuer(cert: x509.Certificate, pool: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    """Certificates in ``pool`` whose subject is ``cert``'s issuer (deduplicated by DER)."""
    # Names are compared in their RFC 4514 rendering (cached); the signature check
    # that follows compares the real names and the signature.
    wanted = cert_info(cert).issuer
    seen: set[bytes] = set()
    out: list[x509.Certificate] = []
    for candidate in pool:
        info = cert_info(candidate)
        if info.subject == wanted and info.der not in seen:
            seen.add(info.der)
            out.append(candidate)
    return out


def unique(certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """``certs`` without duplicates (by DER), order kept."""
    seen: set[bytes] = set()
    out: list[x509.Certificate] = []
    for cert in certs:
        der = cert_info(cert).der
        if der not in seen:
            seen.add(der)
            out.append(cert)
    return out


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, lowercase hex."""
    return _fingerprint(cert)
