# mypy: disallow-subclassing-any=False
# (pyasn1 ships no type information: its base classes are Any to mypy.)
"""Package evidence in a Keep's CSR, for a Steward that admits workloads by signer. Pure.

A Keep running a signed package sends, besides its evidence and workload digest, the package's
manifest, the signed payload, the signature and the signer's public key, as the CSR attribute
``CSR_ATTR_PACKAGE`` (:mod:`donjon.oids`)::

    PackageEvidence ::= SEQUENCE {
        manifest   OCTET STRING,   -- the package's image manifest, as pulled
        payload    OCTET STRING,   -- the cosign simple-signing payload
        signature  OCTET STRING,   -- over payload (ECDSA P-256/SHA-256 DER, or Ed25519)
        signerKey  OCTET STRING }  -- the signer's SubjectPublicKeyInfo, DER

The Steward (:func:`verify_package_evidence`) checks that the signature verifies under that key,
that the payload names the manifest's digest, that the manifest is a Donjon package, and that
its workload-digest annotation equals the CSR's workload digest - the one the hardware evidence
binds. A policy rule naming the signer's fingerprint (and optionally the package name the
payload carries) then admits the workload without naming its digest.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, univ

from donjon.oci.artifact import MAX_MANIFEST_BYTES, parse_manifest
from donjon.oci.errors import MalformedPackage, SignatureError, TooLarge
from donjon.oci.signature import (
    MAX_PAYLOAD_BYTES,
    PublicKey,
    Signature,
    verify_signatures,
)

__all__ = ["MAX_EVIDENCE_BYTES", "AdmittedPackage", "encode_package_evidence", "verify_package_evidence"]

MAX_EVIDENCE_BYTES = MAX_MANIFEST_BYTES + MAX_PAYLOAD_BYTES + 4096


class _PackageEvidence(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("manifest", univ.OctetString()),
        namedtype.NamedType("payload", univ.OctetString()),
        namedtype.NamedType("signature", univ.OctetString()),
        namedtype.NamedType("signerKey", univ.OctetString()),
    )


@dataclass(frozen=True)
class AdmittedPackage:
    """A package whose signature and workload digest the Steward checked."""

    digest: str
    signer: str
    reference: str


def encode_package_evidence(manifest: bytes, payload: bytes, signature: bytes, signer: PublicKey) -> bytes:
    value = _PackageEvidence()
    value["manifest"] = manifest
    value["payload"] = payload
    value["signature"] = signature
    value["signerKey"] = signer.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return bytes(der_encoder.encode(value))


def verify_package_evidence(der: bytes, workload_digest: bytes) -> AdmittedPackage:
    """Check package evidence against the CSR's ``workload_digest``; raise an ``OciError`` if it fails."""
    if len(der) > MAX_EVIDENCE_BYTES:
        raise TooLarge("package evidence", len(der), MAX_EVIDENCE_BYTES)
    try:
        value, rest = der_decoder.decode(der, asn1Spec=_PackageEvidence())
        if rest:
            raise MalformedPackage("package evidence", "trailing bytes")
        manifest_raw = bytes(value["manifest"])
        payload = bytes(value["payload"])
        signature = bytes(value["signature"])
        spki = bytes(value["signerKey"])
    except PyAsn1Error as e:
        raise MalformedPackage("package evidence", f"not DER PackageEvidence: {e}") from e
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise TooLarge("package signature payload", len(payload), MAX_PAYLOAD_BYTES)
    try:
        key = serialization.load_der_public_key(spki)
    except (ValueError, TypeError) as e:
        raise MalformedPackage("package signer key", f"not a SubjectPublicKeyInfo: {e}") from e
    if not (
        isinstance(key, ed25519.Ed25519PublicKey)
        or (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1))
    ):
        raise MalformedPackage("package signer key", "expected ECDSA P-256 or Ed25519")
    manifest = parse_manifest(manifest_raw)
    from donjon.oci.artifact import Descriptor, digest_of
    from donjon.oci.signature import PAYLOAD_MEDIA_TYPE

    entry = Signature(Descriptor(PAYLOAD_MEDIA_TYPE, digest_of(payload), len(payload)), signature)
    verified = verify_signatures(manifest.digest, [(entry, payload)], [key])
    if manifest.workload_digest != workload_digest.hex():
        raise SignatureError(
            manifest.digest,
            f"the package's workload digest {manifest.workload_digest} is not the CSR's "
            f"{workload_digest.hex()}",
        )
    return AdmittedPackage(manifest.digest, verified.signer, verified.docker_reference)
