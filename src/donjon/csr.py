# mypy: disable-error-code="misc"
# (pyasn1 ships no type information: its base classes are Any to mypy.)
"""PKCS#10 certificate requests that carry attestation evidence: build and parse.

Two formats:

**Donjon native** (DESIGN.md "Evidence in the CSR"). The CSR (RFC 2986) holds
the attribute of draft-ietf-lamps-csr-attestation (revision 27+),
``id-aa-attestation`` (1.2.840.113549.1.9.16.2.59), with exactly one value::

    AttestationBundle ::= SEQUENCE {
        attestations SEQUENCE SIZE (1..MAX) OF AttestationStatement,
        certs SEQUENCE SIZE (1..MAX) OF LimitedCertChoices OPTIONAL }
    AttestationStatement ::= SEQUENCE { type OBJECT IDENTIFIER, stmt ANY }

Donjon's statement types (:mod:`donjon.oids`) carry the raw report or quote as an
OCTET STRING. The workload digest and the Steward nonce are two more
single-valued attributes under Donjon's arc. ``certs`` holds the VCEK/VLEK or PCK
chain when the Keep has it (only the ``certificate`` choice is accepted).

**Enarx legacy** (enarx/steward ``crates/attestation``): one extensionRequest
extension, 1.3.6.1.4.1.58270.1.3 (SNP) or .1.2 (SGX)::

    Snp ::= SEQUENCE { SEQUENCE { vcek Certificate, crl CrlList }, report OCTET STRING }
    Sgx ::= SEQUENCE { quote OCTET STRING, crl CrlList,
                       tcb SEQUENCE { crts SEQUENCE OF Certificate, report OCTET STRING } }
    CrlList ::= SEQUENCE { SEQUENCE OF SEQUENCE { url UTF8String, crl CertificateList } }

``cryptography`` cannot write CSR attributes holding arbitrary DER, so the
request info is built with pyasn1 and signed through ``cryptography``; parsing
uses ``cryptography`` for the strict DER load, the key and the signature, and a
small bounded DER reader for the attribute contents (see "parsing" below: every
field is read with limits, in time linear in its size). Pure: bytes in, frozen
dataclasses or :class:`CsrError` out.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import char, constraint, namedtype, tag, univ

from donjon import oids

__all__ = [
    "MAX_CSR_BYTES",
    "MAX_STATEMENTS",
    "CsrError",
    "CsrSignatureInvalid",
    "LegacyCsr",
    "MalformedCsr",
    "NativeCsr",
    "Statement",
    "UnsupportedKey",
    "build_csr",
    "build_legacy_csr",
    "is_legacy",
    "parse_legacy_csr",
    "parse_native_csr",
]

#: A CSR larger than this is refused before any parsing. An Enarx SGX CSR with its
#: CRLs and TCB info is ~15 KiB; a TDX quote with its PCK chain is ~8 KiB.
MAX_CSR_BYTES = 256 * 1024
#: More statements than this in one bundle is not a Keep's CSR.
MAX_STATEMENTS = 8
#: More certificates or CRLs than this in one CSR is not a vendor chain.
MAX_CERTS = 8
MAX_CRLS = 8


class CsrError(Exception):
    """Root of CSR errors. ``check`` is the stable name used in refusals (``csr.parse``...)."""

    def __init__(self, check: str, reason: str) -> None:
        self.check = check
        self.reason = reason
        super().__init__(f"{check}: {reason}")


class MalformedCsr(CsrError):
    """The bytes are not a well-formed CSR of the expected format."""


class CsrSignatureInvalid(CsrError):
    """The CSR is not signed by the key it carries."""


# --- ASN.1 types (RFC 2986 section 4; draft-ietf-lamps-csr-attestation section 5) ---


class _AttributeValues(univ.SetOf):
    componentType = univ.Any()


class _Attribute(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("type", univ.ObjectIdentifier()),
        namedtype.NamedType("values", _AttributeValues()),
    )


class _Attributes(univ.SetOf):
    componentType = _Attribute()
    tagSet = univ.SetOf.tagSet.tagImplicitly(tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, 0))


class _CertificationRequestInfo(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("version", univ.Integer()),
        namedtype.NamedType("subject", univ.Any()),
        namedtype.NamedType("subjectPKInfo", univ.Any()),
        namedtype.NamedType("attributes", _Attributes()),
    )


class _AlgorithmIdentifier(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("algorithm", univ.ObjectIdentifier()),
        namedtype.OptionalNamedType("parameters", univ.Any()),
    )


class _CertificationRequest(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("certificationRequestInfo", _CertificationRequestInfo()),
        namedtype.NamedType("signatureAlgorithm", _AlgorithmIdentifier()),
        namedtype.NamedType("signature", univ.BitString()),
    )


class _AttestationStatement(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("type", univ.ObjectIdentifier()),
        namedtype.NamedType("stmt", univ.Any()),
    )


class _Statements(univ.SequenceOf):
    componentType = _AttestationStatement()
    subtypeSpec = constraint.ValueSizeConstraint(1, MAX_STATEMENTS)


class _Certs(univ.SequenceOf):
    # LimitedCertChoices: only the plain ``certificate`` choice is supported here.
    componentType = univ.Any()
    subtypeSpec = constraint.ValueSizeConstraint(1, MAX_CERTS)


class _AttestationBundle(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("attestations", _Statements()),
        namedtype.OptionalNamedType("certs", _Certs()),
    )


# Enarx legacy evidence (enarx/steward crates/attestation/src/{snp,sgx}/mod.rs).


class _CrlEntry(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("url", char.UTF8String()),
        namedtype.NamedType("crl", univ.Any()),
    )


class _CrlEntries(univ.SequenceOf):
    componentType = _CrlEntry()
    subtypeSpec = constraint.ValueSizeConstraint(0, MAX_CRLS)


class _CrlList(univ.Sequence):
    componentType = namedtype.NamedTypes(namedtype.NamedType("crls", _CrlEntries()))


class _SnpArtifact(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("vcek", univ.Any()),
        namedtype.NamedType("crl", _CrlList()),
    )


class _SnpEvidence(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("vcek", _SnpArtifact()),
        namedtype.NamedType("report", univ.OctetString()),
    )


class _CertSeq(univ.SequenceOf):
    componentType = univ.Any()
    subtypeSpec = constraint.ValueSizeConstraint(0, MAX_CERTS)


class _TcbPackage(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("crts", _CertSeq()),
        namedtype.NamedType("report", univ.OctetString()),
    )


class _SgxEvidence(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("quote", univ.OctetString()),
        namedtype.NamedType("crl", _CrlList()),
        namedtype.NamedType("tcb", _TcbPackage()),
    )


# --- results ---


@dataclass(frozen=True)
class Statement:
    """One ``AttestationStatement``: its type OID, Donjon's kind for it (or None), the evidence bytes."""

    type: x509.ObjectIdentifier
    kind: str | None
    evidence: bytes | None
    stmt_der: bytes


@dataclass(frozen=True)
class NativeCsr:
    """A signature-checked Donjon CSR."""

    der: bytes
    spki_der: bytes
    statements: tuple[Statement, ...]
    certs: tuple[bytes, ...]
    workload_digest: bytes | None
    nonce: bytes | None
    #: The DER ``PackageEvidence`` of a signed package (``oids.CSR_ATTR_PACKAGE``), unchecked:
    #: the Steward verifies it (:func:`donjon.oci.admission.verify_package_evidence`).
    package: bytes | None = None

    @property
    def key_sha256(self) -> bytes:
        return hashlib.sha256(self.spki_der).digest()


@dataclass(frozen=True)
class LegacyCsr:
    """A signature-checked Enarx Keep CSR: evidence with the collateral the Keep sent."""

    der: bytes
    spki_der: bytes
    kind: str  # "snp-report" or "sgx-quote"
    evidence: bytes
    certs: tuple[bytes, ...]
    crls: tuple[tuple[str, bytes], ...]
    tcb_info: bytes | None

    @property
    def key_sha256(self) -> bytes:
        return hashlib.sha256(self.spki_der).digest()


# --- building ---

_ECDSA_BY_CURVE: dict[str, tuple[str, hashes.HashAlgorithm]] = {
    "secp256r1": ("1.2.840.10045.4.3.2", hashes.SHA256()),
    "secp384r1": ("1.2.840.10045.4.3.3", hashes.SHA384()),
    "secp521r1": ("1.2.840.10045.4.3.4", hashes.SHA512()),
}
_RSA_SHA256 = "1.2.840.113549.1.1.11"
_ED25519 = "1.3.101.112"

SigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def _sign(key: SigningKey, data: bytes) -> tuple[_AlgorithmIdentifier, bytes]:
    alg = _AlgorithmIdentifier()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        entry = _ECDSA_BY_CURVE.get(key.curve.name)
        if entry is None:
            raise ValueError(f"unsupported curve {key.curve.name}")
        alg["algorithm"] = univ.ObjectIdentifier(entry[0])
        return alg, key.sign(data, ec.ECDSA(entry[1]))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        alg["algorithm"] = univ.ObjectIdentifier(_ED25519)
        return alg, key.sign(data)
    if isinstance(key, rsa.RSAPrivateKey):
        alg["algorithm"] = univ.ObjectIdentifier(_RSA_SHA256)
        alg["parameters"] = univ.Any(der_encoder.encode(univ.Null("")))
        return alg, key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    raise TypeError(f"unsupported key type {type(key).__name__}")


def _octets(data: bytes) -> bytes:
    return bytes(der_encoder.encode(univ.OctetString(data)))


def _attribute(oid: x509.ObjectIdentifier, value_der: bytes) -> _Attribute:
    attr = _Attribute()
    attr["type"] = univ.ObjectIdentifier(oid.dotted_string)
    values = _AttributeValues()
    values.append(univ.Any(value_der))
    attr["values"] = values
    return attr


def _spki(key: SigningKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def build_csr(
    key: SigningKey,
    *,
    statements: Sequence[tuple[x509.ObjectIdentifier, bytes]],
    workload_digest: bytes | None,
    nonce: bytes | None,
    certs: Sequence[bytes] = (),
    package: bytes | None = None,
) -> bytes:
    """A native Donjon CSR (DER), signed by ``key``.

    ``statements`` are (type OID, raw evidence) pairs; each evidence is wrapped in
    an OCTET STRING. ``certs`` are DER certificates for the bundle's ``certs``.
    """
    if not 1 <= len(statements) <= MAX_STATEMENTS:
        raise ValueError(f"an AttestationBundle holds 1..{MAX_STATEMENTS} statements, not {len(statements)}")
    if len(certs) > MAX_CERTS:
        raise ValueError(f"at most {MAX_CERTS} certificates")
    bundle = _AttestationBundle()
    stmts = _Statements()
    for oid, evidence in statements:
        st = _AttestationStatement()
        st["type"] = univ.ObjectIdentifier(oid.dotted_string)
        st["stmt"] = univ.Any(_octets(evidence))
        stmts.append(st)
    bundle["attestations"] = stmts
    if certs:
        cs = _Certs()
        for cert in certs:
            cs.append(univ.Any(cert))
        bundle["certs"] = cs
    attrs = _Attributes()
    attrs.append(_attribute(oids.ID_AA_ATTESTATION, bytes(der_encoder.encode(bundle))))
    if workload_digest is not None:
        attrs.append(_attribute(oids.CSR_ATTR_WORKLOAD_DIGEST, _octets(workload_digest)))
    if nonce is not None:
        attrs.append(_attribute(oids.CSR_ATTR_NONCE, _octets(nonce)))
    if package is not None:  # already DER (PackageEvidence)
        attrs.append(_attribute(oids.CSR_ATTR_PACKAGE, package))
    return _finish(key, attrs)


def _finish(key: SigningKey, attrs: _Attributes) -> bytes:
    cri = _CertificationRequestInfo()
    cri["version"] = 0
    cri["subject"] = univ.Any(b"\x30\x00")  # empty Name: the Steward decides the identity
    cri["subjectPKInfo"] = univ.Any(_spki(key))
    cri["attributes"] = attrs
    cri_der = bytes(der_encoder.encode(cri))
    alg, signature = _sign(key, cri_der)
    req = _CertificationRequest()
    req["certificationRequestInfo"] = cri
    req["signatureAlgorithm"] = alg
    req["signature"] = univ.BitString.fromOctetString(signature)
    return bytes(der_encoder.encode(req))


def build_legacy_csr(
    key: SigningKey,
    kind: str,
    evidence: bytes,
    *,
    certs: Sequence[bytes],
    crls: Sequence[tuple[str, bytes]] = (),
    tcb_info: bytes = b"",
) -> bytes:
    """An Enarx-format Keep CSR (DER), for tests and for talking to an Enarx Steward.

    ``kind`` is ``"snp-report"`` (``certs`` = [VCEK]) or ``"sgx-quote"`` (``certs`` = the
    TCB info signing chain, ``tcb_info`` = TCB info JSON).
    """
    crl_list = _CrlList()
    entries = _CrlEntries().clear()
    for url, crl in crls:
        entry = _CrlEntry()
        entry["url"] = char.UTF8String(url)
        entry["crl"] = univ.Any(crl)
        entries.append(entry)
    crl_list["crls"] = entries
    value: univ.Sequence
    if kind == "snp-report":
        if len(certs) != 1:
            raise ValueError("an Enarx SNP CSR carries exactly one VCEK")
        art = _SnpArtifact()
        art["vcek"] = univ.Any(certs[0])
        art["crl"] = crl_list
        value = _SnpEvidence()
        value["vcek"] = art
        value["report"] = univ.OctetString(evidence)
        oid = oids.ENARX_SNP_EVIDENCE
    elif kind == "sgx-quote":
        pkg = _TcbPackage()
        crts = _CertSeq().clear()
        for cert in certs:
            crts.append(univ.Any(cert))
        pkg["crts"] = crts
        pkg["report"] = univ.OctetString(tcb_info)
        value = _SgxEvidence()
        value["quote"] = univ.OctetString(evidence)
        value["crl"] = crl_list
        value["tcb"] = pkg
        oid = oids.ENARX_SGX_EVIDENCE
    else:
        raise ValueError(f"no Enarx CSR format for evidence kind {kind!r}")
    ext_value = bytes(der_encoder.encode(value))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    builder = builder.add_extension(x509.UnrecognizedExtension(oid, ext_value), critical=False)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        csr = builder.sign(key, None)
    else:
        csr = builder.sign(key, hashes.SHA384() if kind == "snp-report" else hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


# --- parsing ---
#
# Every byte of a CSR comes from an unauthenticated client, so parsing is bounded
# before anything costly runs (docs/steward.md "Threat model and limits"):
#
# - the size (MAX_CSR_BYTES) before any parsing;
# - the outer structure by ``cryptography`` (Rust, strict DER, linear);
# - the parts Donjon reads by the small DER reader below: definite minimal lengths,
#   a fixed depth (it descends only into the structures it knows), a maximum count
#   of elements at each level (it stops reading at the first one too many), and
#   OBJECT IDENTIFIERs of at most MAX_OID_BYTES with arcs below 2**128 — a single
#   huge arc would otherwise cost quadratic time to turn into an integer and text;
# - the key (type and size) before its signature is checked, so that checking a
#   signature costs a bounded amount of CPU (no 16384-bit RSA modulus, no RSA
#   exponent of thousands of bits, no DSA);
# - only then the signature.
#
# Nothing here calls pyasn1's decoder (it took 1.7 s of CPU for an Enarx CRL list of
# 256 KB of tiny entries: benchmarks/bench_csr_worst.py); pyasn1 only builds requests.

#: cryptography's (rust-asn1's) limit for an encoded OBJECT IDENTIFIER; every OID Donjon
#: knows is well below it (its own arc's OIDs take 22 bytes).
MAX_OID_BYTES = 63
#: More attributes than this in one request is not a Keep's CSR (Donjon's take 3, Enarx's 1).
MAX_ATTRIBUTES = 16
#: Values of one attribute (Donjon's attributes must have exactly one).
MAX_ATTRIBUTE_VALUES = 16
#: Extensions in an extensionRequest (Enarx's CSRs carry one).
MAX_EXTENSIONS = 16
#: The largest RSA key accepted (RFC 8017); checking a signature grows with its square.
MAX_RSA_BITS = 8192
#: The largest RSA public exponent accepted (checking a signature grows with its length).
MAX_RSA_EXPONENT = 2**32


class UnsupportedKey(CsrError):
    """The CSR's key is not one the Steward certifies (``csr.key``)."""


def _load(der: bytes) -> x509.CertificateSigningRequest:
    """Size, strict DER, the key, then the signature; the cheap checks first."""
    csr = _load_unsigned(der)
    _check_signature(csr, bytes(der))
    return csr


def _load_unsigned(der: bytes) -> x509.CertificateSigningRequest:
    if not isinstance(der, bytes | bytearray):
        raise MalformedCsr("csr.parse", "CSR must be bytes")
    if len(der) > MAX_CSR_BYTES:
        raise MalformedCsr("csr.size", f"CSR of {len(der)} bytes exceeds {MAX_CSR_BYTES}")
    if not der:
        raise MalformedCsr("csr.parse", "empty CSR")
    try:
        return x509.load_der_x509_csr(bytes(der))
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion) as e:
        raise MalformedCsr("csr.parse", f"not a DER PKCS#10 request: {str(e)[:200]}") from e


def _check_signature(csr: x509.CertificateSigningRequest, der: bytes) -> None:
    _check_key(csr)
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as e:
        raise MalformedCsr("csr.parse", f"unusable signature: {str(e)[:200]}") from e
    if not valid:
        raise CsrSignatureInvalid("csr.signature", "the CSR is not signed by the key it carries")
    _require_whole_octet_signature(der)


def _check_key(csr: x509.CertificateSigningRequest) -> None:
    """Only keys fit for a TLS identity, whose signatures cost bounded CPU to check:
    EC P-256/P-384/P-521, Ed25519, RSA of 2048..8192 bits with an exponent below 2**32."""
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as e:
        raise UnsupportedKey("csr.key", f"the CSR's key is not supported: {str(e)[:200]}") from e
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        return
    if isinstance(key, ed25519.Ed25519PublicKey):
        return
    if isinstance(key, rsa.RSAPublicKey):
        if not 2048 <= key.key_size <= MAX_RSA_BITS:
            raise UnsupportedKey(
                "csr.key", f"RSA keys of 2048..{MAX_RSA_BITS} bits are accepted, not {key.key_size}"
            )
        if not 3 <= key.public_numbers().e < MAX_RSA_EXPONENT:
            raise UnsupportedKey("csr.key", "the RSA public exponent must be at least 3 and below 2**32")
        return
    raise UnsupportedKey("csr.key", f"the CSR's key ({type(key).__name__}) is not accepted for certificates")


def _require_whole_octet_signature(der: bytes) -> None:
    # RFC 2986 section 4.2: signature BIT STRING. DER (X.690 section 11.2) lets a
    # signature of whole octets claim padding bits that happen to be zero; OpenSSL
    # ignores the claim, so one signed request would have two encodings. Refuse it:
    # a request's DER (and its digest in the log) must be the one the Keep signed.
    s, e = _whole(der, _SEQUENCE, "CertificationRequest")
    parts = _children(der, s, e, "CertificationRequest", 3)
    if len(parts) != 3 or parts[2][0] != _BIT_STRING or parts[2][1] >= parts[2][2]:
        raise MalformedCsr("csr.parse", "CertificationRequest signature is not a BIT STRING")
    if der[parts[2][1]] != 0:
        raise MalformedCsr("csr.parse", "CSR signature BIT STRING claims unused bits")


# A small strict DER reader (ITU-T X.690 section 10: definite, minimal lengths) for the
# request path: linear in its input, bounded in depth and count (see above). The outer
# CSR has already been parsed strictly by ``cryptography``.

_SEQUENCE, _SET, _OID, _OCTETS, _ATTRIBUTES, _BIT_STRING = 0x30, 0x31, 0x06, 0x04, 0xA0, 0x03
_BOOLEAN, _UTF8 = 0x01, 0x0C


def _tlv(data: bytes, pos: int, end: int, what: str) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at ``pos``."""
    if pos + 2 > end:
        raise MalformedCsr("csr.parse", f"{what}: truncated")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise MalformedCsr("csr.parse", f"{what}: unexpected high tag number")
    first = data[pos + 1]
    i = pos + 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or i + n > end:
            raise MalformedCsr("csr.parse", f"{what}: bad length")
        length = int.from_bytes(data[i : i + n], "big")
        if data[i] == 0 or length < 0x80:
            raise MalformedCsr("csr.parse", f"{what}: length not minimally encoded (DER)")
        i += n
    if i + length > end:
        raise MalformedCsr("csr.parse", f"{what}: truncated")
    return tag, i, i + length


def _children(data: bytes, start: int, end: int, what: str, limit: int) -> list[tuple[int, int, int, int]]:
    """(tag, content start, content end, element start) of each element in ``data[start:end]``.

    Reading stops at element ``limit + 1``: a structure of a thousand tiny elements
    costs no more than one of ``limit``.
    """
    out: list[tuple[int, int, int, int]] = []
    pos = start
    while pos < end:
        if len(out) == limit:
            raise MalformedCsr("csr.parse", f"{what}: more than {limit} elements")
        tag, s, e = _tlv(data, pos, end, what)
        out.append((tag, s, e, pos))
        pos = e
    return out


def _whole(data: bytes, tag: int, what: str) -> tuple[int, int]:
    got, s, e = _tlv(data, 0, len(data), what)
    if got != tag:
        raise MalformedCsr("csr.parse", f"{what}: expected tag 0x{tag:02x}, got 0x{got:02x}")
    if e != len(data):
        raise MalformedCsr("csr.parse", f"{what} has {len(data) - e} trailing bytes")
    return s, e


def _oid_text(content: bytes, what: str) -> str:
    # X.690 section 8.19: base-128 arcs, no leading 0x80 byte; the first two arcs share one value.
    # Bounded before decoding: at most MAX_OID_BYTES, so no arc can grow into a huge integer.
    if len(content) > MAX_OID_BYTES:
        raise MalformedCsr(
            "csr.parse", f"{what}: OBJECT IDENTIFIER of {len(content)} bytes exceeds {MAX_OID_BYTES}"
        )
    if not content or content[-1] & 0x80:
        raise MalformedCsr("csr.parse", f"{what}: malformed OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    fresh = True
    for byte in content:
        if fresh and byte == 0x80:
            raise MalformedCsr("csr.parse", f"{what}: OBJECT IDENTIFIER arc not minimally encoded")
        value = (value << 7) | (byte & 0x7F)
        fresh = not byte & 0x80
        if fresh:
            if value >> 128:
                raise MalformedCsr("csr.parse", f"{what}: OBJECT IDENTIFIER arc of 2**128 or more")
            arcs.append(value)
            value = 0
    head = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (head, arcs[0] - 40 * head, *arcs[1:]))


def _object_identifier(text: str, what: str) -> x509.ObjectIdentifier:
    """``cryptography``'s OID for text made by :func:`_oid_text`."""
    try:
        return x509.ObjectIdentifier(text)
    except ValueError as e:  # a limit of cryptography's that the checks above did not foresee
        raise MalformedCsr("csr.parse", f"{what}: unusable OBJECT IDENTIFIER") from e


def _octet_value(der: bytes, what: str) -> bytes:
    s, e = _whole(der, _OCTETS, what)
    return der[s:e]


def _spki_der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _attributes(der: bytes) -> dict[str, list[bytes]]:
    """CertificationRequestInfo.attributes (RFC 2986 section 4.1): type OID -> DER of each value."""
    s, e = _whole(der, _SEQUENCE, "CertificationRequest")
    parts = _children(der, s, e, "CertificationRequest", 3)
    if len(parts) != 3 or parts[0][0] != _SEQUENCE:
        raise MalformedCsr("csr.parse", "CertificationRequest must have three parts")
    info = _children(der, parts[0][1], parts[0][2], "CertificationRequestInfo", 4)
    if len(info) != 4 or info[3][0] != _ATTRIBUTES:
        raise MalformedCsr("csr.parse", "CertificationRequestInfo has no [0] attributes")
    out: dict[str, list[bytes]] = {}
    for a_tag, a_s, a_e, _ in _children(der, info[3][1], info[3][2], "attributes", MAX_ATTRIBUTES):
        fields = _children(der, a_s, a_e, "Attribute", 2) if a_tag == _SEQUENCE else []
        if len(fields) != 2 or fields[0][0] != _OID or fields[1][0] != _SET:
            raise MalformedCsr("csr.parse", "an Attribute is not SEQUENCE { OID, SET }")
        oid = _oid_text(der[fields[0][1] : fields[0][2]], "attribute type")
        if oid in out:
            raise MalformedCsr("csr.parse", f"attribute {oid} appears twice")
        values = _children(der, fields[1][1], fields[1][2], f"attribute {oid}", MAX_ATTRIBUTE_VALUES)
        out[oid] = [der[start:end] for _, _, end, start in values]
    return out


def _bundle(der: bytes) -> tuple[list[tuple[str, bytes]], list[bytes]]:
    """AttestationBundle -> ([(statement type, stmt DER)], [certificate DER])."""
    s, e = _whole(der, _SEQUENCE, "AttestationBundle")
    parts = _children(der, s, e, "AttestationBundle", 2)
    if not 1 <= len(parts) <= 2 or any(p[0] != _SEQUENCE for p in parts):
        raise MalformedCsr("csr.parse", "AttestationBundle must be SEQUENCE { attestations, certs OPTIONAL }")
    statements = []
    items = _children(der, parts[0][1], parts[0][2], "attestations", MAX_STATEMENTS)
    if not items:
        raise MalformedCsr("csr.parse", f"attestations must hold 1..{MAX_STATEMENTS} statements, not 0")
    for i_tag, i_s, i_e, _ in items:
        fields = _children(der, i_s, i_e, "AttestationStatement", 2) if i_tag == _SEQUENCE else []
        if len(fields) != 2 or fields[0][0] != _OID:
            raise MalformedCsr("csr.parse", "an AttestationStatement is not SEQUENCE { type, stmt }")
        oid = _oid_text(der[fields[0][1] : fields[0][2]], "statement type")
        statements.append((oid, der[fields[1][3] : fields[1][2]]))
    certs: list[bytes] = []
    if len(parts) == 2:
        entries = _children(der, parts[1][1], parts[1][2], "certs", MAX_CERTS)
        if not entries:
            raise MalformedCsr("csr.parse", f"certs must hold 1..{MAX_CERTS} certificates, not 0")
        for c_tag, _, c_e, c_s in entries:
            if c_tag != _SEQUENCE:
                raise MalformedCsr(
                    "csr.parse", "only the 'certificate' choice of LimitedCertChoices is supported"
                )
            certs.append(der[c_s:c_e])
    return statements, certs


def _single(attrs: dict[str, list[bytes]], oid: x509.ObjectIdentifier, what: str) -> bytes | None:
    values = attrs.get(oid.dotted_string)
    if values is None:
        return None
    if len(values) != 1:
        raise MalformedCsr("csr.parse", f"{what} attribute must have exactly one value, has {len(values)}")
    return values[0]


def _extensions(attrs: dict[str, list[bytes]]) -> dict[str, bytes]:
    """The extensionRequest attribute (RFC 2985 section 5.4.2): extension OID -> extnValue content.

    ``Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }``
    (RFC 5280 section 4.1); each OID at most once (RFC 5280 section 4.2).
    """
    value = _single(attrs, oids.PKCS9_EXTENSION_REQUEST, "extensionRequest")
    if value is None:
        return {}
    s, e = _whole(value, _SEQUENCE, "extensionRequest")
    out: dict[str, bytes] = {}
    for x_tag, x_s, x_e, _ in _children(value, s, e, "extensionRequest", MAX_EXTENSIONS):
        fields = _children(value, x_s, x_e, "Extension", 3) if x_tag == _SEQUENCE else []
        if len(fields) == 3 and fields[1][0] == _BOOLEAN:
            if value[fields[1][1] : fields[1][2]] != b"\xff":  # DER: FALSE is the default, left out
                raise MalformedCsr("csr.parse", "an Extension's critical flag is not DER TRUE")
            fields = [fields[0], fields[2]]
        if len(fields) != 2 or fields[0][0] != _OID or fields[1][0] != _OCTETS:
            raise MalformedCsr("csr.parse", "an Extension is not SEQUENCE { OID, critical, OCTET STRING }")
        oid = _oid_text(value[fields[0][1] : fields[0][2]], "extension")
        if oid in out:
            raise MalformedCsr("csr.parse", f"extension {oid} appears twice")
        out[oid] = value[fields[1][1] : fields[1][2]]
    return out


def is_legacy(csr_der: bytes) -> bool:
    """Whether a (well-formed) CSR is an Enarx Keep CSR rather than a native one."""
    try:
        _load_unsigned(csr_der)
        exts = _extensions(_attributes(bytes(csr_der)))
    except CsrError:
        return False
    return any(o.dotted_string in exts for o in (oids.ENARX_SNP_EVIDENCE, oids.ENARX_SGX_EVIDENCE))


def parse_native_csr(der: bytes) -> NativeCsr:
    """Parse and signature-check a native Donjon CSR.

    Raises :class:`MalformedCsr` (``csr.size``, ``csr.parse``, ``csr.no_evidence``),
    :class:`UnsupportedKey` (``csr.key``) or :class:`CsrSignatureInvalid`
    (``csr.signature``). The structure is read before the key and the signature
    are checked (cheapest first). Unknown statement types are returned with
    ``kind=None``: the Steward decides what it accepts.
    """
    csr = _load_unsigned(der)
    attrs = _attributes(bytes(der))
    bundle_der = _single(attrs, oids.ID_AA_ATTESTATION, "id-aa-attestation")
    if bundle_der is None:
        raise MalformedCsr("csr.no_evidence", "the CSR has no id-aa-attestation attribute")
    raw_statements, certs = _bundle(bundle_der)
    statements = []
    for text, stmt_der in raw_statements:
        oid = _object_identifier(text, "statement type")
        kind = oids.EVIDENCE_KIND_BY_OID.get(oid)
        evidence = _octet_value(stmt_der, f"statement {text}") if kind is not None else None
        statements.append(Statement(type=oid, kind=kind, evidence=evidence, stmt_der=stmt_der))
    digest_der = _single(attrs, oids.CSR_ATTR_WORKLOAD_DIGEST, "workload digest")
    nonce_der = _single(attrs, oids.CSR_ATTR_NONCE, "nonce")
    digest = _octet_value(digest_der, "workload digest") if digest_der is not None else None
    if digest is not None and len(digest) != 32:
        raise MalformedCsr("csr.parse", f"workload digest must be 32 bytes, got {len(digest)}")
    nonce = _octet_value(nonce_der, "nonce") if nonce_der is not None else None
    _check_signature(csr, bytes(der))
    return NativeCsr(
        der=bytes(der),
        spki_der=_spki_der(csr),
        statements=tuple(statements),
        certs=tuple(certs),
        workload_digest=digest,
        nonce=nonce,
        package=_single(attrs, oids.CSR_ATTR_PACKAGE, "package evidence"),
    )


def _crl_list(data: bytes, start: int, end: int) -> tuple[tuple[str, bytes], ...]:
    """``CrlList ::= SEQUENCE { SEQUENCE OF SEQUENCE { url UTF8String, crl CertificateList } }``."""
    (outer,) = _expect(data, start, end, "CrlList", (_SEQUENCE,))
    (entries,) = _expect(data, outer[1], outer[2], "CrlList", (_SEQUENCE,))
    out = []
    for e_tag, e_s, e_e, _ in _children(data, entries[1], entries[2], "CrlList entries", MAX_CRLS):
        fields = _children(data, e_s, e_e, "CrlList entry", 2) if e_tag == _SEQUENCE else []
        if len(fields) != 2 or fields[0][0] != _UTF8:
            raise MalformedCsr("csr.parse", "a CrlList entry is not SEQUENCE { UTF8String, CRL }")
        try:
            url = data[fields[0][1] : fields[0][2]].decode("utf-8")
        except UnicodeDecodeError as err:
            raise MalformedCsr("csr.parse", "a CrlList URL is not UTF-8") from err
        out.append((url, data[fields[1][3] : fields[1][2]]))
    return tuple(out)


def _expect(
    data: bytes, start: int, end: int, what: str, tags: tuple[int | None, ...]
) -> list[tuple[int, int, int, int]]:
    """The elements of ``data[start:end]``, exactly one per entry of ``tags`` (None: any tag)."""
    parts = _children(data, start, end, what, len(tags))
    if len(parts) != len(tags) or any(t is not None and p[0] != t for p, t in zip(parts, tags, strict=True)):
        raise MalformedCsr("csr.parse", f"{what} does not have the expected structure")
    return parts


def parse_legacy_csr(der: bytes) -> LegacyCsr:
    """Parse and signature-check an Enarx Keep CSR (one evidence extension, SNP or SGX)."""
    csr = _load_unsigned(der)
    exts = _extensions(_attributes(bytes(der)))
    found = [o for o in (oids.ENARX_SNP_EVIDENCE, oids.ENARX_SGX_EVIDENCE) if o.dotted_string in exts]
    if len(found) != 1:
        raise MalformedCsr("csr.no_evidence", f"expected one Enarx evidence extension, found {len(found)}")
    value = exts[found[0].dotted_string]
    if found[0] == oids.ENARX_SNP_EVIDENCE:
        # Snp ::= SEQUENCE { SEQUENCE { vcek Certificate, crl CrlList }, report OCTET STRING }
        s, e = _whole(value, _SEQUENCE, "Enarx SNP evidence")
        artifact, report = _expect(value, s, e, "Enarx SNP evidence", (_SEQUENCE, _OCTETS))
        vcek, crls = _expect(value, artifact[1], artifact[2], "Enarx SNP artifact", (None, _SEQUENCE))
        parsed = LegacyCsr(
            der=bytes(der),
            spki_der=b"",
            kind="snp-report",
            evidence=value[report[1] : report[2]],
            certs=(value[vcek[3] : vcek[2]],),
            crls=_crl_list(value, crls[3], crls[2]),
            tcb_info=None,
        )
    else:
        # Sgx ::= SEQUENCE { quote OCTET STRING, crl CrlList,
        #                    tcb SEQUENCE { crts SEQUENCE OF Certificate, report OCTET STRING } }
        s, e = _whole(value, _SEQUENCE, "Enarx SGX evidence")
        quote, crls, tcb = _expect(value, s, e, "Enarx SGX evidence", (_OCTETS, _SEQUENCE, _SEQUENCE))
        crts, report = _expect(value, tcb[1], tcb[2], "Enarx SGX TCB package", (_SEQUENCE, _OCTETS))
        certs = _children(value, crts[1], crts[2], "Enarx SGX certificates", MAX_CERTS)
        parsed = LegacyCsr(
            der=bytes(der),
            spki_der=b"",
            kind="sgx-quote",
            evidence=value[quote[1] : quote[2]],
            certs=tuple(value[c[3] : c[2]] for c in certs),
            crls=_crl_list(value, crls[3], crls[2]),
            tcb_info=value[report[1] : report[2]],
        )
    _check_signature(csr, bytes(der))
    return dataclasses.replace(parsed, spki_der=_spki_der(csr))
