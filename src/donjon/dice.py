# mypy: disable-error-code="misc"
# (pyasn1 ships no type information: its base classes are Any to mypy.)
"""The TCG DICE ``MultiTcbInfo`` certificate extension: what a Steward-issued certificate attests.

DESIGN.md "Certificates the Steward issues": claims go, by default, into the standard
extension of the TCG "DICE Attestation Architecture" (version 1.1, section 6.1.2), readable
by any X.509 tool and with every OID arc below 2**31 (Go's ``crypto/x509`` parses it)::

    tcg-dice-MultiTcbInfo OBJECT IDENTIFIER ::= { 2 23 133 5 4 5 }   -- non-critical
    DiceTcbInfoSeq ::= SEQUENCE SIZE (1..MAX) OF DiceTcbInfo
    DiceTcbInfo ::= SEQUENCE {
        vendor     [0] IMPLICIT UTF8String OPTIONAL,
        model      [1] IMPLICIT UTF8String OPTIONAL,
        version    [2] IMPLICIT UTF8String OPTIONAL,
        svn        [3] IMPLICIT INTEGER OPTIONAL,
        layer      [4] IMPLICIT INTEGER OPTIONAL,
        index      [5] IMPLICIT INTEGER OPTIONAL,
        fwids      [6] IMPLICIT FWIDLIST OPTIONAL,
        flags      [7] IMPLICIT OperationalFlags OPTIONAL,
        vendorInfo [8] IMPLICIT OCTET STRING OPTIONAL,
        type       [9] IMPLICIT OCTET STRING OPTIONAL }
    FWIDLIST ::= SEQUENCE SIZE (1..MAX) OF FWID
    FWID ::= SEQUENCE { hashAlg OBJECT IDENTIFIER, digest OCTET STRING }
    OperationalFlags ::= BIT STRING { notConfigured (0), notSecure (1), recovery (2), debug (3) }

A Steward writes one entry per layer: layer 0, the TEE (vendor ``AMD``/``Intel``/``Arm``, model
``SEV-SNP``/``TDX``/``SGX``/``CCA``, ``fwids`` = the launch measurement with its hash OID,
``version``/``svn`` from the TCB) — absent when there was no evidence; layer 1, the workload
(vendor ``Donjon``, model ``workload``, ``fwids`` = the workload digest, SHA-256) — absent for
a legacy Enarx request, which has no digest. Both carry the ``notSecure`` flag when the
certificate is not backed by a genuine TEE (simulated evidence, or none). A workload admitted
by its package's signer (docs/deploy.md "An attested run, admitted by signer") has two more, at
layer 2: model ``package`` (``fwids`` = the package's manifest digest, ``vendorInfo`` = the
package name ``REGISTRY/REPO`` its signed payload carries, UTF-8) and model ``package-signer``
(``fwids`` = the SHA-256 of the signer's SubjectPublicKeyInfo); :func:`package_of` reads them.

Pure: values in, DER out, and back; anything else is :class:`DiceError`. Decoding is bounded
(:data:`MAX_DICE_BYTES`, :data:`MAX_ENTRIES`, :data:`MAX_FWIDS`) and done by pyasn1 against the
ASN.1 above. Encoding — once per issued certificate, on the Steward's hot path — writes the few
DER forms this structure uses directly (X.690 section 8 with the DER rules of section 10): pyasn1
took 0.76 ms for two entries, more than verifying an SEV-SNP report; the tests check both
encoders give the same bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, constraint, namedtype, tag, univ

__all__ = [
    "HASH_OIDS",
    "MAX_DICE_BYTES",
    "MAX_PACKAGE_NAME_BYTES",
    "MULTI_TCB_INFO_OID",
    "PACKAGE_MODEL",
    "PACKAGE_SIGNER_MODEL",
    "SIMULATED_SUFFIX",
    "TEE_NAMES",
    "VTPM_MODEL",
    "VTPM_VENDOR",
    "WORKLOAD_MODEL",
    "WORKLOAD_VENDOR",
    "DiceError",
    "Fwid",
    "PackageClaim",
    "TcbInfo",
    "claims_values",
    "decode_multi_tcb_info",
    "encode_multi_tcb_info",
    "package_of",
    "workload_digest_of",
]

#: tcg-dice-MultiTcbInfo (TCG DICE Attestation Architecture 1.1, section 6.1.2).
MULTI_TCB_INFO_OID = "2.23.133.5.4.5"
WORKLOAD_VENDOR = "Donjon"
WORKLOAD_MODEL = "workload"
#: The entry for evidence behind a paravisor's vTPM (Azure CVMs): its FWID is the TPM quote's PCR
#: digest (SHA-256 of the quoted PCR values); the TEE entry's measurement is then the paravisor's.
VTPM_VENDOR = "Donjon"
VTPM_MODEL = "paravisor vTPM"
#: The entries naming a signed package and its signer (vendor ``Donjon``, layer 2).
PACKAGE_MODEL = "package"
PACKAGE_SIGNER_MODEL = "package-signer"
#: A package name longer than this is not written (a policy's ``package`` is at most 1024).
MAX_PACKAGE_NAME_BYTES = 1024
#: Two entries of a few hundred bytes each; anything far larger is not a Steward's.
MAX_DICE_BYTES = 8192
MAX_ENTRIES = 16
MAX_FWIDS = 8
#: NIST hash algorithm OIDs (csor.nist.gov, "hashAlgs"): the ones a launch measurement uses.
HASH_OIDS = {
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
_HASH_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}
#: The DICE vendor and model a Steward writes for each TEE (``TeeType`` values).
TEE_NAMES = {
    "sev-snp": ("AMD", "SEV-SNP"),
    "tdx": ("Intel", "TDX"),
    "sgx": ("Intel", "SGX"),
    "cca": ("Arm", "CCA"),
}
SIMULATED_SUFFIX = " (simulated)"
_HASH_NAMES = {oid: name for name, oid in HASH_OIDS.items()}
_NOT_SECURE = 1  # OperationalFlags bit


class DiceError(ValueError):
    """The extension is not a well-formed ``DiceTcbInfoSeq`` (or a value cannot be encoded)."""


def _implicit(n: int, *, constructed: bool = False) -> tag.Tag:
    return tag.Tag(tag.tagClassContext, tag.tagFormatConstructed if constructed else tag.tagFormatSimple, n)


class _Fwid(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("hashAlg", univ.ObjectIdentifier()),
        namedtype.NamedType("digest", univ.OctetString()),
    )


class _FwidList(univ.SequenceOf):
    componentType = _Fwid()
    sizeSpec = constraint.ValueSizeConstraint(1, MAX_FWIDS)


class _DiceTcbInfo(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("vendor", char.UTF8String().subtype(implicitTag=_implicit(0))),
        namedtype.OptionalNamedType("model", char.UTF8String().subtype(implicitTag=_implicit(1))),
        namedtype.OptionalNamedType("version", char.UTF8String().subtype(implicitTag=_implicit(2))),
        namedtype.OptionalNamedType("svn", univ.Integer().subtype(implicitTag=_implicit(3))),
        namedtype.OptionalNamedType("layer", univ.Integer().subtype(implicitTag=_implicit(4))),
        namedtype.OptionalNamedType("index", univ.Integer().subtype(implicitTag=_implicit(5))),
        namedtype.OptionalNamedType("fwids", _FwidList().subtype(implicitTag=_implicit(6, constructed=True))),
        namedtype.OptionalNamedType("flags", univ.BitString().subtype(implicitTag=_implicit(7))),
        namedtype.OptionalNamedType("vendorInfo", univ.OctetString().subtype(implicitTag=_implicit(8))),
        namedtype.OptionalNamedType("type", univ.OctetString().subtype(implicitTag=_implicit(9))),
    )


class _DiceTcbInfoSeq(univ.SequenceOf):
    componentType = _DiceTcbInfo()
    sizeSpec = constraint.ValueSizeConstraint(1, MAX_ENTRIES)


@dataclass(frozen=True)
class Fwid:
    """One FWID: a digest and the name of its hash (``sha256``, ``sha384``, ``sha512``)."""

    hash_name: str
    digest: bytes

    def __post_init__(self) -> None:
        size = _HASH_SIZES.get(self.hash_name)
        if size is None:
            raise DiceError(f"unknown FWID hash {self.hash_name!r}")
        if len(self.digest) != size:
            raise DiceError(f"a {self.hash_name} FWID is {size} bytes, not {len(self.digest)}")

    @classmethod
    def of(cls, digest: bytes) -> Fwid:
        """A measurement, its hash named by its length (32, 48 or 64 bytes: SHA-256/384/512)."""
        for name, size in _HASH_SIZES.items():
            if len(digest) == size:
                return cls(name, digest)
        raise DiceError(f"a {len(digest)}-byte measurement matches no SHA-2 hash")


@dataclass(frozen=True)
class TcbInfo:
    """One ``DiceTcbInfo`` entry (the fields a Steward writes)."""

    vendor: str | None = None
    model: str | None = None
    version: str | None = None
    svn: int | None = None
    layer: int | None = None
    fwids: tuple[Fwid, ...] = ()
    not_secure: bool = False
    #: ``vendorInfo`` ("vendor supplied values", DICE 1.1 section 6.1.1): raw bytes.
    vendor_info: bytes | None = None


def _der(tag: int, content: bytes) -> bytes:
    """One DER TLV: X.690 8.1.3 definite length, short form below 128, else the minimal long form."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def _oid_content(dotted: str) -> bytes:
    """X.690 8.19: the first two arcs as 40 * a + b, then every arc in base 128, high bit = more."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def _unsigned(value: int) -> bytes:
    """X.690 8.3: a two's-complement INTEGER in the fewest octets (a leading 0 keeps it positive)."""
    if value < 0:
        raise DiceError(f"a DICE svn/layer is never negative, got {value}")
    return value.to_bytes(value.bit_length() // 8 + 1, "big")


_SEQUENCE = 0x30
_OID = 0x06
_OCTET_STRING = 0x04
_CONTEXT = 0x80  # context-specific class, primitive; | 0x20 for constructed
_HASH_OID_DER = {name: _der(_OID, _oid_content(oid)) for name, oid in HASH_OIDS.items()}
#: OperationalFlags with notSecure alone: 6 unused bits, then 0b01 (X.690 11.2.2: no trailing zeros).
_NOT_SECURE_FLAGS = b"\x06\x40"


def encode_multi_tcb_info(entries: Sequence[TcbInfo]) -> bytes:
    """The DER extension value (``DiceTcbInfoSeq``) of ``entries`` (at least one)."""
    if not 1 <= len(entries) <= MAX_ENTRIES:
        raise DiceError(f"a MultiTcbInfo holds 1..{MAX_ENTRIES} entries, not {len(entries)}")
    items = []
    for entry in entries:
        # Fields in their ASN.1 order; each absent OPTIONAL field is simply left out.
        fields = b""
        for number, text in ((0, entry.vendor), (1, entry.model), (2, entry.version)):
            if text is not None:
                fields += _der(_CONTEXT | number, text.encode("utf-8"))
        for number, value in ((3, entry.svn), (4, entry.layer)):
            if value is not None:
                fields += _der(_CONTEXT | number, _unsigned(value))
        if entry.fwids:
            if len(entry.fwids) > MAX_FWIDS:
                raise DiceError(f"at most {MAX_FWIDS} FWIDs in an entry")
            fwids = b"".join(
                _der(_SEQUENCE, _HASH_OID_DER[f.hash_name] + _der(_OCTET_STRING, f.digest))
                for f in entry.fwids
            )
            fields += _der(_CONTEXT | 0x20 | 6, fwids)
        if entry.not_secure:
            fields += _der(_CONTEXT | 7, _NOT_SECURE_FLAGS)
        if entry.vendor_info is not None:
            fields += _der(_CONTEXT | 8, entry.vendor_info)
        items.append(_der(_SEQUENCE, fields))
    return _der(_SEQUENCE, b"".join(items))


def encode_with_pyasn1(entries: Sequence[TcbInfo]) -> bytes:
    """The same DER through pyasn1 and the ASN.1 types above: the reference the tests hold
    :func:`encode_multi_tcb_info` to."""
    seq = _DiceTcbInfoSeq()
    for i, entry in enumerate(entries):
        item = _DiceTcbInfo()
        if entry.vendor is not None:
            item["vendor"] = entry.vendor
        if entry.model is not None:
            item["model"] = entry.model
        if entry.version is not None:
            item["version"] = entry.version
        if entry.svn is not None:
            item["svn"] = entry.svn
        if entry.layer is not None:
            item["layer"] = entry.layer
        if entry.fwids:
            fwids = item["fwids"]
            for j, fwid in enumerate(entry.fwids):
                one = _Fwid()
                one["hashAlg"] = univ.ObjectIdentifier(HASH_OIDS[fwid.hash_name])
                one["digest"] = fwid.digest
                fwids[j] = one
        if entry.not_secure:
            item["flags"] = univ.BitString(binValue="01").subtype(implicitTag=_implicit(7))
        if entry.vendor_info is not None:
            item["vendorInfo"] = entry.vendor_info
        seq[i] = item
    return bytes(der_encoder.encode(seq))


def _text(item: _DiceTcbInfo, name: str) -> str | None:
    value = item[name]
    return str(value) if value.isValue else None


def _integer(item: _DiceTcbInfo, name: str) -> int | None:
    value = item[name]
    return int(value) if value.isValue else None


def decode_multi_tcb_info(der: bytes) -> tuple[TcbInfo, ...]:
    """Parse a ``DiceTcbInfoSeq`` extension value; :class:`DiceError` for anything else.

    Results are remembered by their exact bytes (a bounded cache: immutable values in, immutable
    values out): a Keep checks the same peer certificate on every handshake until it is renewed,
    and pyasn1 takes most of a millisecond per decode.
    """
    if len(der) > MAX_DICE_BYTES:
        raise DiceError(f"a MultiTcbInfo of {len(der)} bytes exceeds {MAX_DICE_BYTES}")
    return _decode(bytes(der))


@functools.lru_cache(maxsize=256)
def _decode(der: bytes) -> tuple[TcbInfo, ...]:
    if len(der) > MAX_DICE_BYTES:
        raise DiceError(f"a MultiTcbInfo of {len(der)} bytes exceeds {MAX_DICE_BYTES}")
    try:
        seq, rest = der_decoder.decode(der, asn1Spec=_DiceTcbInfoSeq())
    except (PyAsn1Error, ValueError, TypeError, RecursionError) as e:
        raise DiceError(f"not a DER DiceTcbInfoSeq: {type(e).__name__}: {str(e)[:200]}") from e
    if rest:
        raise DiceError(f"{len(rest)} bytes after the DiceTcbInfoSeq")
    out: list[TcbInfo] = []
    for item in seq:
        fwids: list[Fwid] = []
        if item["fwids"].isValue:
            for fwid in item["fwids"]:
                name = _HASH_NAMES.get(str(fwid["hashAlg"]))
                if name is None:
                    continue  # a hash this reader does not know: not one a Steward writes
                fwids.append(Fwid(name, bytes(fwid["digest"])))
        flags = item["flags"]
        bits = tuple(flags) if flags.isValue else ()
        info = item["vendorInfo"]
        out.append(
            TcbInfo(
                vendor=_text(item, "vendor"),
                model=_text(item, "model"),
                version=_text(item, "version"),
                svn=_integer(item, "svn"),
                layer=_integer(item, "layer"),
                fwids=tuple(fwids),
                not_secure=len(bits) > _NOT_SECURE and bits[_NOT_SECURE] == 1,
                vendor_info=bytes(info) if info.isValue else None,
            )
        )
    return tuple(out)


def workload_digest_of(entries: Sequence[TcbInfo]) -> bytes | None:
    """The workload digest a Steward wrote (vendor ``Donjon``, model ``workload``, SHA-256 FWID)."""
    found = [e for e in entries if e.vendor == WORKLOAD_VENDOR and e.model == WORKLOAD_MODEL]
    if len(found) != 1:
        if len(found) > 1:
            raise DiceError("more than one workload entry")
        return None
    digests = [f.digest for f in found[0].fwids if f.hash_name == "sha256"]
    if len(digests) != 1:
        raise DiceError("the workload entry does not carry exactly one SHA-256 FWID")
    return digests[0]


@dataclass(frozen=True)
class PackageClaim:
    """The signed package a certificate names: manifest digest and signer fingerprint
    (``sha256:<hex>`` each), and the package name (``None`` where the certificate has none)."""

    digest: str
    signer: str
    name: str | None


def _one_sha256(entries: Sequence[TcbInfo], model: str) -> tuple[TcbInfo, bytes] | None:
    found = [e for e in entries if e.vendor == WORKLOAD_VENDOR and e.model == model]
    if not found:
        return None
    if len(found) > 1:
        raise DiceError(f"more than one {model} entry")
    digests = [f.digest for f in found[0].fwids if f.hash_name == "sha256"]
    if len(digests) != 1 or len(found[0].fwids) != 1:
        raise DiceError(f"the {model} entry does not carry exactly one SHA-256 FWID")
    return found[0], digests[0]


def package_of(entries: Sequence[TcbInfo]) -> PackageClaim | None:
    """The package and signer entries a Steward wrote (both or neither), or ``None``.

    Anything else — one without the other, two of either, another FWID, a name that is not
    UTF-8 or is too long — is :class:`DiceError`: a Steward never writes it.
    """
    package = _one_sha256(entries, PACKAGE_MODEL)
    signer = _one_sha256(entries, PACKAGE_SIGNER_MODEL)
    if package is None and signer is None:
        return None
    if package is None or signer is None:
        raise DiceError("a package entry without its package-signer entry, or the other way round")
    info = package[0].vendor_info
    name = None
    if info is not None:
        if len(info) > MAX_PACKAGE_NAME_BYTES:
            raise DiceError(f"a package name of {len(info)} bytes exceeds {MAX_PACKAGE_NAME_BYTES}")
        try:
            name = info.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DiceError("the package name is not UTF-8") from e
    return PackageClaim("sha256:" + package[1].hex(), "sha256:" + signer[1].hex(), name)


def claims_values(entries: Sequence[TcbInfo]) -> dict[str, object]:
    """What a relying party reads from a Steward's entries, with the JSON claims' key names:
    ``tee``, ``measurement``, ``svn``, ``tcb_version``, ``workload_digest``, ``simulated`` (the
    TEE's model is marked simulated), ``vtpm`` (behind a paravisor's vTPM; absent otherwise) and
    ``not_secure`` (the flag on any entry: simulated, or no
    evidence at all — which the SPIFFE path ``/unattested/`` says too)."""
    out: dict[str, object] = {}
    digest = workload_digest_of(entries)
    if digest is not None:
        out["workload_digest"] = digest.hex()
    simulated = False
    for entry in entries:
        if entry.vendor == WORKLOAD_VENDOR and entry.model == WORKLOAD_MODEL:
            continue
        if entry.vendor == VTPM_VENDOR and entry.model == VTPM_MODEL:
            out["vtpm"] = True
            continue
        model = entry.model or ""
        base = model.removesuffix(SIMULATED_SUFFIX)
        tee = next((t for t, names in TEE_NAMES.items() if names == (entry.vendor, base)), None)
        if tee is None or "tee" in out:
            continue
        out["tee"] = tee
        simulated = model.endswith(SIMULATED_SUFFIX)
        if entry.fwids:
            out["measurement"] = entry.fwids[0].digest.hex()
        if entry.svn is not None:
            out["svn"] = entry.svn
        if entry.version is not None:
            out["tcb_version"] = entry.version
    out["simulated"] = simulated
    out["not_secure"] = any(e.not_secure for e in entries)
    return out
