"""Pull a package: resolve once, pin the digest, verify the signature, fetch and check every layer.

Order, each step failing closed:

1. a tag is resolved to a digest exactly once (the manifest's own SHA-256, computed here, not
   the registry's ``Docker-Content-Digest``); from then on everything is fetched by that digest,
   so a tag moved mid-pull changes nothing;
2. the manifest is parsed as a Donjon package and every declared size checked against the
   limits, before any layer is fetched;
3. the cosign signatures (tag ``sha256-<hex>.sig``) are checked against the trusted keys -
   before downloading the layers: an unsigned package costs the Keep one small manifest (a
   signature that verified on an earlier pull is verified again from the cache, see
   :func:`check_signature`);
4. each layer is fetched (or read from the cache) with its size bounded and its digest checked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from donjon.oci.artifact import (
    MAX_MANIFEST_BYTES,
    Descriptor,
    Manifest,
    TreeEntry,
    digest_of,
    parse_manifest,
)
from donjon.oci.cache import BlobCache
from donjon.oci.errors import NotFound, OciError, SignatureError, TooLarge
from donjon.oci.reference import Reference
from donjon.oci.registry import RegistryClient
from donjon.oci.signature import (
    MAX_PAYLOAD_BYTES,
    SIGNATURE_ARTIFACT_TYPE,
    PublicKey,
    Signature,
    VerifiedSignature,
    parse_referrers,
    parse_signatures,
    referrers_tag,
    signature_tag,
    verify_signatures,
)

__all__ = ["Limits", "PulledPackage", "check_signature", "fetch_signatures", "pull", "resolve"]


@dataclass(frozen=True)
class Limits:
    """Size limits of a pull: the manifest, any one layer, all layers together (bytes)."""

    manifest: int = MAX_MANIFEST_BYTES
    layer: int = 256 * 1024 * 1024
    total: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class PulledPackage:
    reference: Reference  # pinned: ``digest`` is set
    manifest: Manifest
    module: bytes
    config_source: bytes
    trees: tuple[TreeEntry, ...]
    signature: VerifiedSignature | None


def resolve(client: RegistryClient, ref: Reference, *, limits: Limits = Limits()) -> tuple[Reference, bytes]:
    """``ref`` pinned to a digest, with the manifest bytes that digest names."""
    if ref.digest is not None:
        return ref, client.get_manifest(ref, ref.digest, limit=limits.manifest)
    assert ref.tag is not None
    raw = client.get_manifest(ref, ref.tag, limit=limits.manifest)
    return ref.pinned(digest_of(raw)), raw


def fetch_signatures(
    client: RegistryClient, ref: Reference, digest: str, *, cache: BlobCache | None = None
) -> list[tuple[Signature, bytes]]:
    """Every cosign signature of ``digest`` with its payload (payload digests checked).

    The ``.sig`` manifest is a tag (signatures come and go): always fetched. Payloads are
    named by digest and may come from ``cache``.
    """
    return _fetch_signatures(client, ref, digest, cache=cache)[1]


def _fetch_signatures(
    client: RegistryClient, ref: Reference, digest: str, *, cache: BlobCache | None
) -> tuple[str | None, list[tuple[Signature, bytes]]]:
    """:func:`fetch_signatures`, with the digest of the ``.sig`` manifest (``None``: unsigned)."""
    try:
        raw = client.get_manifest(ref, signature_tag(digest), limit=MAX_MANIFEST_BYTES)
    except NotFound:
        return None, []
    return _keep(cache, raw), _with_payloads(client, ref, raw, cache)


def _keep(cache: BlobCache | None, raw: bytes) -> str:
    digest = digest_of(raw)
    if cache is not None:
        cache.put(digest, raw)
    return digest


def _with_payloads(
    client: RegistryClient, ref: Reference, raw: bytes, cache: BlobCache | None
) -> list[tuple[Signature, bytes]]:
    """The signatures of the signature manifest ``raw``, each with its payload (digest-checked)."""
    out = []
    for signature in parse_signatures(raw):
        wanted = signature.payload.digest
        payload = cache.get(wanted, limit=MAX_PAYLOAD_BYTES) if cache is not None else None
        if payload is None:
            payload = client.get_blob(ref, wanted, limit=MAX_PAYLOAD_BYTES)
            if cache is not None:
                cache.put(wanted, payload)
        out.append((signature, payload))
    return out


def _referred_signatures(
    client: RegistryClient, ref: Reference, digest: str, *, cache: BlobCache | None
) -> list[tuple[str, list[tuple[Signature, bytes]]]]:
    """The signature manifests that are OCI 1.1 referrers of ``digest``, each with its signatures:
    from the referrers API, or on a registry without it from the ``sha256-<hex>`` index tag."""
    index = client.get_referrers(ref, digest, artifact_type=SIGNATURE_ARTIFACT_TYPE)
    if index is None:
        try:
            index = client.get_manifest(ref, referrers_tag(digest), limit=MAX_MANIFEST_BYTES)
        except NotFound:
            return []
    out = []
    for referrer in parse_referrers(index):
        raw = cache.get(referrer, limit=MAX_MANIFEST_BYTES) if cache is not None else None
        if raw is None:
            try:
                raw = client.get_manifest(ref, referrer, limit=MAX_MANIFEST_BYTES)
            except NotFound:
                continue  # listed, then deleted: not a signature any more
        out.append((_keep(cache, raw), _with_payloads(client, ref, raw, cache)))
    return out


def _remembered_signatures(cache: BlobCache, digest: str) -> list[tuple[Signature, bytes]] | None:
    """The signatures of the ``.sig`` manifest that verified ``digest`` on an earlier pull, all
    read from the cache (each verified against its digest there), or ``None``."""
    signatures = cache.signatures_of(digest)
    raw = cache.get(signatures, limit=MAX_MANIFEST_BYTES) if signatures is not None else None
    if raw is None:
        return None
    out = []
    try:
        for signature in parse_signatures(raw):
            payload = cache.get(signature.payload.digest, limit=MAX_PAYLOAD_BYTES)
            if payload is None:
                return None
            out.append((signature, payload))
    except OciError:
        return None
    return out


def check_signature(
    client: RegistryClient, ref: Reference, trusted: Sequence[PublicKey], *, cache: BlobCache | None = None
) -> VerifiedSignature:
    """The signature of the pinned ``ref`` by one of the ``trusted`` keys, or :class:`SignatureError`.

    Where signatures are looked for, in order, each step only when the one before found none
    that verifies:

    1. the cache: a signature that verified once stays valid - cosign key-based signatures
       carry no expiry and have no revocation (whoever holds a copy can attach it to any
       registry again) - so the one remembered is verified again, against this run's keys,
       with no registry round trip;
    2. cosign's ``sha256-<hex>.sig`` tag (one round trip, every registry);
    3. the OCI 1.1 referrers of the package (the referrers API, or its tag-schema fallback):
       signatures other tools pushed as referrers only.
    """
    digest = ref.digest
    assert digest is not None
    if cache is not None:
        remembered = _remembered_signatures(cache, digest)
        if remembered:
            try:
                return verify_signatures(digest, remembered, trusted)
            except SignatureError:
                pass  # other keys this run, or a hint gone stale: ask the registry
    tagged, found = _fetch_signatures(client, ref, digest, cache=cache)
    groups = [(tagged, found)] if tagged is not None else []
    verified = _first_verified(digest, groups, trusted)
    if verified is None:
        referred = _referred_signatures(client, ref, digest, cache=cache)
        verified = _first_verified(digest, referred, trusted)
        groups += referred
    if verified is None:
        seen = [pair for _, pairs in groups for pair in pairs]
        raise SignatureError(digest, _why_none_verified(digest, seen, trusted))
    manifest, signature = verified
    if cache is not None:
        cache.remember_signatures(digest, manifest)
    return signature


def _first_verified(
    digest: str, groups: list[tuple[str, list[tuple[Signature, bytes]]]], trusted: Sequence[PublicKey]
) -> tuple[str, VerifiedSignature] | None:
    """The first signature manifest (by digest) with a signature a trusted key verifies."""
    for manifest, pairs in groups:
        try:
            return manifest, verify_signatures(digest, pairs, trusted)
        except SignatureError:
            continue
    return None


def _why_none_verified(digest: str, seen: list[tuple[Signature, bytes]], trusted: Sequence[PublicKey]) -> str:
    try:
        verify_signatures(digest, seen, trusted)
    except SignatureError as e:
        return e.reason
    return "no signature verified"  # not reached: each manifest's signatures failed on their own


def pull(
    client: RegistryClient,
    ref: Reference,
    *,
    trusted: Sequence[PublicKey],
    allow_unsigned: bool = False,
    cache: BlobCache | None = None,
    limits: Limits = Limits(),
    warn: Callable[[str], None] = lambda _m: None,
) -> PulledPackage:
    """Pull and verify the package ``ref`` names (see the module docstring for the order)."""
    cached = cache.get(ref.digest, limit=limits.manifest) if cache is not None and ref.digest else None
    if cached is not None:
        pinned, raw = ref, cached
    else:
        pinned, raw = resolve(client, ref, limits=limits)
    assert pinned.digest is not None
    manifest = parse_manifest(raw, expected_digest=pinned.digest)
    total = 0
    for layer in manifest.layers:
        if layer.size > limits.layer:
            raise TooLarge(f"layer {layer.digest}", layer.size, limits.layer)
        total += layer.size
    if total > limits.total:
        raise TooLarge("package", total, limits.total)

    signature: VerifiedSignature | None = None
    if allow_unsigned and not trusted:
        warn(f"package {pinned.digest} is NOT signature-checked (--allow-unsigned)")
    else:
        try:
            signature = check_signature(client, pinned, trusted, cache=cache)
        except SignatureError as e:
            if not allow_unsigned:
                raise
            warn(f"{e}; running it anyway (--allow-unsigned)")
    if cache is not None:
        cache.put(pinned.digest, raw)

    def fetch(layer: Descriptor) -> bytes:
        if cache is not None:
            hit = cache.get(layer.digest, limit=layer.size)
            if hit is not None and len(hit) == layer.size:
                return hit
        data = client.get_blob(pinned, layer.digest, limit=min(layer.size, limits.layer))
        if cache is not None:
            cache.put(layer.digest, data)
        return data

    module = fetch(manifest.module)
    config_source = fetch(manifest.config)
    trees = []
    for tree in manifest.trees:
        assert tree.title is not None  # parse_manifest checked it
        trees.append(TreeEntry(tree.title, tree.tree_kind, fetch(tree)))
    return PulledPackage(pinned, manifest, module, config_source, tuple(trees), signature)
