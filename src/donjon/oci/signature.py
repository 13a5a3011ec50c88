"""Package signatures in cosign's key-based format. Pure: keys, payloads and manifests in and out.

Format (sigstore/cosign ``specs/SIGNATURE_SPEC.md``, "Simple Signing" payloads; the storage
of ``cosign sign --key`` without a transparency log):

- the payload is Red Hat's "simple signing" JSON: ``{"critical": {"identity":
  {"docker-reference": "REGISTRY/REPO"}, "image": {"docker-manifest-digest": "sha256:..."},
  "type": "cosign container image signature"}, "optional": null}``;
- the signature is ECDSA P-256 with SHA-256 (DER) or Ed25519, over the payload bytes, base64;
- it is stored as a layer (media type ``application/vnd.dev.cosign.simplesigning.v1+json``,
  the payload itself) of an image manifest tagged ``sha256-<hex of the package digest>.sig`` in
  the package's repository, with the signature in the layer's
  ``dev.cosignproject.cosign/signature`` annotation. Several signatures are several layers.

So ``cosign verify --key signer.pub --insecure-ignore-tlog REGISTRY/REPO@sha256:...`` checks
what ``donjon package sign`` wrote, and Donjon checks what ``cosign sign --key`` writes.

The same manifest is also an OCI 1.1 *referrer* of the package (OCI Image Spec v1.1: a
``subject`` naming the package's manifest, ``artifactType`` cosign's
``application/vnd.dev.cosign.artifact.sig.v1+json``): a registry with the referrers API lists it
under ``GET /v2/<name>/referrers/<digest>``; on one without (distribution 2.8), the signer keeps
the Distribution Specification v1.1 "referrers tag schema" fallback, an image index tagged
``sha256-<hex>`` listing the referrers (:func:`add_referrer`). A puller reads the ``.sig`` tag
first (one round trip, every registry) and the referrers only when that finds no trusted
signature - which is how signatures pushed by other tools as referrers only are found.

A signer is named by its fingerprint: ``sha256:`` + hex SHA-256 of its SubjectPublicKeyInfo DER.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from donjon.oci.artifact import (
    MANIFEST_MEDIA_TYPE,
    Descriptor,
    canonical_json,
    digest_of,
    load_json,
)
from donjon.oci.errors import MalformedPackage, SignatureError, TooLarge
from donjon.oci.reference import DIGEST

__all__ = [
    "COSIGN_CONFIG_MEDIA_TYPE",
    "INDEX_MEDIA_TYPE",
    "MAX_PAYLOAD_BYTES",
    "MAX_REFERRERS",
    "MAX_SIGNATURES",
    "PAYLOAD_MEDIA_TYPE",
    "SIGNATURE_ANNOTATION",
    "SIGNATURE_ARTIFACT_TYPE",
    "PrivateKey",
    "PublicKey",
    "Signature",
    "VerifiedSignature",
    "add_referrer",
    "fingerprint",
    "load_private_key",
    "load_public_key",
    "make_payload",
    "parse_referrers",
    "parse_signatures",
    "referrers_tag",
    "sign_payload",
    "signature_layers",
    "signature_manifest",
    "signature_tag",
    "verify_signatures",
]

PAYLOAD_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
#: cosign's artifact type for a signature pushed as an OCI 1.1 referrer.
SIGNATURE_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
#: How many signature referrers of one package are read (and kept in a fallback index).
MAX_REFERRERS = 16
_PAYLOAD_TYPE = "cosign container image signature"
#: A simple-signing payload is a few hundred bytes; cosign's own verifier allows 128 KiB.
MAX_PAYLOAD_BYTES = 128 * 1024
#: How many signature layers of one manifest are read.
MAX_SIGNATURES = 64
_MAX_KEY_BYTES = 64 * 1024

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class Signature:
    """One signature layer of a ``.sig`` manifest, before its payload is fetched."""

    payload: Descriptor
    signature: bytes


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that verified under a trusted key over a payload naming the package digest."""

    signer: str
    docker_reference: str
    manifest_digest: str
    #: What verified: a Keep forwards them to its Steward (:mod:`donjon.oci.admission`).
    payload: bytes = b""
    signature: bytes = b""
    key: PublicKey | None = None


def fingerprint(key: PublicKey) -> str:
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def load_private_key(pem: bytes, *, what: str = "signing key") -> PrivateKey:
    """An unencrypted PKCS#8 (or SEC1) PEM key: ECDSA P-256 (cosign's default) or Ed25519."""
    if len(pem) > _MAX_KEY_BYTES:
        raise TooLarge(what, len(pem), _MAX_KEY_BYTES)
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise MalformedPackage(what, f"not an unencrypted PEM private key ({e})") from e
    if isinstance(key, ed25519.Ed25519PrivateKey) or (
        isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        return key
    raise MalformedPackage(what, "expected an ECDSA P-256 or Ed25519 key")


def load_public_key(pem: bytes, *, what: str = "public key") -> PublicKey:
    if len(pem) > _MAX_KEY_BYTES:
        raise TooLarge(what, len(pem), _MAX_KEY_BYTES)
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as e:
        raise MalformedPackage(what, f"not a PEM public key ({e})") from e
    if isinstance(key, ed25519.Ed25519PublicKey) or (
        isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        return key
    raise MalformedPackage(what, "expected an ECDSA P-256 or Ed25519 key")


def signature_tag(manifest_digest: str) -> str:
    """cosign's tag for the signatures of ``sha256:<hex>``: ``sha256-<hex>.sig``."""
    algorithm, _, hexdigest = manifest_digest.partition(":")
    return f"{algorithm}-{hexdigest}.sig"


def referrers_tag(manifest_digest: str) -> str:
    """The Distribution Specification v1.1 referrers tag schema: ``sha256-<hex>``."""
    algorithm, _, hexdigest = manifest_digest.partition(":")
    return f"{algorithm}-{hexdigest}"


def make_payload(docker_reference: str, manifest_digest: str) -> bytes:
    """The simple-signing payload for ``REGISTRY/REPO@manifest_digest`` (cosign's field set)."""
    return canonical_json(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": manifest_digest},
                "type": _PAYLOAD_TYPE,
            },
            "optional": None,
        }
    )


def sign_payload(key: PrivateKey, payload: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(payload)
    return key.sign(payload, ec.ECDSA(hashes.SHA256()))


def signature_manifest(
    signatures: Sequence[tuple[bytes, bytes]],
    subject: Descriptor | None = None,
    *,
    kept: Sequence[Mapping[str, Any]] = (),
) -> tuple[bytes, dict[str, bytes]]:
    """The ``.sig`` manifest holding ``kept`` layers and ``(payload, signature)`` pairs, and the
    blobs it adds by digest.

    ``kept`` are layers of an earlier ``.sig`` manifest (:func:`signature_layers`), copied
    verbatim before the new ones: other signers' layers carry annotations of their own (cosign
    keyless adds ``dev.sigstore.cosign/certificate``, ``/chain`` and ``/bundle``) that a rebuilt
    descriptor would lose; their payloads are in the registry already. Its config is a minimal
    image config like cosign's (``rootfs.diff_ids`` = the layer digests, kept ones included), so
    registries and tools that expect an image manifest to carry one are content. With a
    ``subject`` (the package's manifest) it is also an OCI 1.1 referrer of that package.
    """
    blobs: dict[str, bytes] = {}
    layers: list[Mapping[str, Any]] = list(kept)
    for payload, signature in signatures:
        digest = digest_of(payload)
        blobs[digest] = payload
        annotation = ((SIGNATURE_ANNOTATION, base64.b64encode(signature).decode("ascii")),)
        layers.append(Descriptor(PAYLOAD_MEDIA_TYPE, digest, len(payload), annotation).to_json())
    config = canonical_json(
        {
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
        }
    )
    blobs[digest_of(config)] = config
    document = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": Descriptor(COSIGN_CONFIG_MEDIA_TYPE, digest_of(config), len(config)).to_json(),
        "layers": layers,
    }
    if subject is not None:
        document["artifactType"] = SIGNATURE_ARTIFACT_TYPE
        document["subject"] = subject.to_json()
    return canonical_json(document), blobs


def signature_layers(raw: bytes) -> tuple[tuple[Mapping[str, Any], Signature | None], ...]:
    """The layers of a ``.sig`` manifest as found, for a signer adding its own: each with its
    signature (``None`` for a layer that is not a cosign simple-signing signature, e.g. another
    format's), the first :data:`MAX_SIGNATURES` - 1 only (room for one more that a verifier
    still reads). A layer that is not a well-formed descriptor is dropped: a registry would
    refuse a manifest that lists it."""
    out: list[tuple[Mapping[str, Any], Signature | None]] = []
    for item in _layers(raw):
        if not isinstance(item, dict) or not isinstance(item.get("mediaType"), str):
            continue
        digest, size = item.get("digest"), item.get("size")
        if not isinstance(digest, str) or not DIGEST.fullmatch(digest) or not _is_size(size):
            continue
        out.append((item, _signature(item)))
    return tuple(out[: MAX_SIGNATURES - 1])


def parse_referrers(raw: bytes) -> tuple[str, ...]:
    """The digests of the signature manifests an image index of referrers lists (the referrers
    API's answer or the ``sha256-<hex>`` fallback tag), at most :data:`MAX_REFERRERS`."""
    out: list[str] = []
    for item in _index_entries(raw):
        if not isinstance(item, dict) or item.get("artifactType") != SIGNATURE_ARTIFACT_TYPE:
            continue
        digest = item.get("digest")
        if item.get("mediaType") != MANIFEST_MEDIA_TYPE or not isinstance(digest, str):
            continue
        if not DIGEST.fullmatch(digest):
            continue
        if digest not in out:
            out.append(digest)
    return tuple(out[-MAX_REFERRERS:])


def add_referrer(index: bytes | None, manifest: bytes) -> bytes:
    """The referrers-tag-schema index ``index`` (``None``: none yet) with ``manifest`` added.

    Distribution Specification v1.1, "Pushing Manifests with Subject": on a registry without
    the referrers API the client keeps this index itself. Entries other clients added (other
    artifact types) are kept as they are; signature entries beyond :data:`MAX_REFERRERS` are
    dropped oldest first, so the index cannot grow without bound.
    """
    entries = _index_entries(index) if index is not None else []
    digest = digest_of(manifest)
    entries = [e for e in entries if not (isinstance(e, dict) and e.get("digest") == digest)]
    entries.append(
        {
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": digest,
            "size": len(manifest),
            "artifactType": SIGNATURE_ARTIFACT_TYPE,
        }
    )
    ours = [
        i
        for i, e in enumerate(entries)
        if isinstance(e, dict) and e.get("artifactType") == SIGNATURE_ARTIFACT_TYPE
    ]
    for i in reversed(ours[:-MAX_REFERRERS]):
        del entries[i]
    return canonical_json({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": entries})


def parse_signatures(raw: bytes) -> tuple[Signature, ...]:
    """The signature layers of a ``.sig`` manifest (its other layers, if any, are ignored)."""
    found = (_signature(item) for item in _layers(raw)[:MAX_SIGNATURES])
    return tuple(signature for signature in found if signature is not None)


def _index_entries(raw: bytes) -> list[Any]:
    doc = load_json("referrers index", raw)
    manifests = doc.get("manifests") if isinstance(doc, dict) else None
    if not isinstance(manifests, list):
        raise MalformedPackage("referrers index", "no manifests")
    return manifests


def _layers(raw: bytes) -> list[Any]:
    doc = load_json("signature manifest", raw)
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list):
        raise MalformedPackage("signature manifest", "no layers")
    return layers


def _is_size(value: object) -> TypeGuard[int]:
    # bool is an int in Python: "size": true is no size.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _signature(item: object) -> Signature | None:
    """The cosign signature one layer of a ``.sig`` manifest holds, or ``None``. Its payload
    digest is checked in full: it names a cache file and a registry URL."""
    if not isinstance(item, dict) or item.get("mediaType") != PAYLOAD_MEDIA_TYPE:
        return None
    annotations = item.get("annotations")
    encoded = annotations.get(SIGNATURE_ANNOTATION) if isinstance(annotations, dict) else None
    digest, size = item.get("digest"), item.get("size")
    if not isinstance(encoded, str) or not isinstance(digest, str) or not _is_size(size):
        return None
    if size > MAX_PAYLOAD_BYTES or not DIGEST.fullmatch(digest):
        return None
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return Signature(Descriptor(PAYLOAD_MEDIA_TYPE, digest, size), signature)


def verify_signatures(
    manifest_digest: str,
    signatures: Sequence[tuple[Signature, bytes]],
    trusted: Sequence[PublicKey],
    *,
    names: Collection[str] | None = None,
) -> VerifiedSignature:
    """The first signature that a trusted key verified over a payload naming ``manifest_digest``
    (and, if ``names`` is given, one of those ``REGISTRY/REPO`` as its ``docker-reference``).

    ``signatures`` pairs each signature with its payload bytes (already checked against the
    payload descriptor's digest by the caller). Raises :class:`SignatureError` naming why none
    verified: unsigned, signed only by keys not trusted, a payload for another digest, or one
    signed for another repository (the same key's signature over a package it published
    elsewhere - a debug build, say - does not make that package this one).
    """
    if not signatures:
        raise SignatureError(manifest_digest, "unsigned (no cosign signature found)")
    if not trusted:
        raise SignatureError(manifest_digest, "no trusted signer keys given")
    reasons: list[str] = []
    for signature, payload in signatures:
        signer = _verifying_key(signature.signature, payload, trusted)
        if signer is None:
            reasons.append("a signature by a key not trusted (or not over its payload)")
            continue
        doc = load_json("signature payload", payload)
        critical = doc.get("critical") if isinstance(doc, dict) else None
        image = critical.get("image") if isinstance(critical, dict) else None
        identity = critical.get("identity") if isinstance(critical, dict) else None
        signed_digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
        reference = identity.get("docker-reference") if isinstance(identity, dict) else None
        if not isinstance(critical, dict) or critical.get("type") != _PAYLOAD_TYPE:
            reasons.append("a trusted signature over a payload that is not a cosign image signature")
        elif signed_digest != manifest_digest:
            reasons.append(f"a trusted signature for another manifest ({signed_digest!r})")
        elif names is not None and reference not in names:
            reasons.append(
                f"a trusted signature made for another repository ({reference!r}, not "
                f"{' or '.join(sorted(names))}; --signed-as accepts it)"
            )
        else:
            return VerifiedSignature(
                fingerprint(signer),
                reference if isinstance(reference, str) else "",
                manifest_digest,
                payload,
                signature.signature,
                signer,
            )
    raise SignatureError(manifest_digest, "; ".join(sorted(set(reasons))))


def _verifying_key(signature: bytes, payload: bytes, trusted: Sequence[PublicKey]) -> PublicKey | None:
    for key in trusted:
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, payload)
            else:
                key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return key
    return None
