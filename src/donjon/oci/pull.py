"""Pull a package: resolve once, pin the digest, verify the signature, fetch and check every layer.

Order, each step failing closed:

1. a tag is resolved to a digest exactly once (the manifest's own SHA-256, computed here, not
   the registry's ``Docker-Content-Digest``); from then on everything is fetched by that digest,
   so a tag moved mid-pull changes nothing;
2. the manifest is parsed as a Donjon package and every declared size checked against the
   limits, before any layer is fetched;
3. the cosign signatures (tag ``sha256-<hex>.sig``, then the OCI 1.1 referrers) are checked
   against the trusted keys - before downloading the layers: an unsigned or wrongly signed
   package costs the Keep at most :data:`MAX_SIGNATURE_BYTES` of signature manifests and
   payloads, and a cache entry only for a signature that verified (a signature that verified
   on an earlier pull is verified again from the cache, see :func:`check_signature`);
4. each layer is fetched (or read from the cache) with its size bounded and its digest checked.

The whole pull, every download and retry included, ends by :attr:`Limits.seconds`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import NoReturn

from donjon.oci.artifact import (
    MAX_MANIFEST_BYTES,
    Descriptor,
    Manifest,
    TreeEntry,
    digest_of,
    parse_manifest,
)
from donjon.oci.cache import BlobCache
from donjon.oci.errors import (
    AuthFailed,
    NotFound,
    OciError,
    RegistryUnavailable,
    SignatureError,
    TooLarge,
)
from donjon.oci.reference import Reference
from donjon.oci.registry import RegistryClient
from donjon.oci.signature import (
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

__all__ = [
    "MAX_SIGNATURE_BYTES",
    "Deadline",
    "Limits",
    "PulledPackage",
    "check_signature",
    "pull",
    "resolve",
]

#: All the signature manifests, referrer indexes and payloads one signature check downloads.
#: A real ``.sig`` manifest and its payloads are a few KiB; without this bound a hostile
#: registry could make an unsigned package cost 16 referrers x 64 signatures x 128 KiB.
MAX_SIGNATURE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Limits of a pull: the manifest, any one layer, all layers together (bytes), and the
    whole pull (seconds; one download is bounded by the client's ``RetryPolicy.total`` too)."""

    manifest: int = MAX_MANIFEST_BYTES
    layer: int = 256 * 1024 * 1024
    total: int = 512 * 1024 * 1024
    seconds: float = 600.0


@dataclass(frozen=True)
class Deadline:
    """When a pull from ``registry`` must be done, on ``clock`` (``time.monotonic``)."""

    registry: str
    seconds: float
    end: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def start(cls, registry: str, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(registry, seconds, clock() + seconds, clock)

    def left(self) -> float:
        """The seconds left (what the next download may take), or :class:`RegistryUnavailable`."""
        left = self.end - self.clock()
        if left <= 0:
            raise RegistryUnavailable(self.registry, f"the pull did not finish within {self.seconds:.0f} s")
        return left


@dataclass(frozen=True)
class PulledPackage:
    reference: Reference  # pinned: ``digest`` is set
    manifest: Manifest
    module: bytes
    config_source: bytes
    trees: tuple[TreeEntry, ...]
    signature: VerifiedSignature | None


def resolve(
    client: RegistryClient, ref: Reference, *, limits: Limits = Limits(), deadline: Deadline | None = None
) -> tuple[Reference, bytes]:
    """``ref`` pinned to a digest, with the manifest bytes that digest names."""
    within = deadline.left() if deadline is not None else None
    if ref.digest is not None:
        return ref, client.get_manifest(ref, ref.digest, limit=limits.manifest, within=within)
    assert ref.tag is not None
    raw = client.get_manifest(ref, ref.tag, limit=limits.manifest, within=within)
    return ref.pinned(digest_of(raw)), raw


def check_signature(
    client: RegistryClient,
    ref: Reference,
    trusted: Sequence[PublicKey],
    *,
    cache: BlobCache | None = None,
    deadline: Deadline | None = None,
    names: Collection[str] | None = None,
) -> VerifiedSignature:
    """The signature of the pinned ``ref`` by one of the ``trusted`` keys, or :class:`SignatureError`.

    ``names`` (``REGISTRY/REPO``) are the repositories a signature may have been made for;
    ``None`` is ``ref``'s own only.

    Where signatures are looked for, in order, each step only when the one before found none
    that verifies:

    1. the cache: a signature that verified once stays valid - cosign key-based signatures
       carry no expiry and have no revocation (whoever holds a copy can attach it to any
       registry again) - so the one remembered is verified again, against this run's keys,
       with no registry round trip;
    2. cosign's ``sha256-<hex>.sig`` tag (one round trip, every registry);
    3. the OCI 1.1 referrers of the package (the referrers API, or its tag-schema fallback):
       signatures other tools pushed as referrers only.

    What the registry serves is hostile until a trusted key verified it, so: every byte of
    steps 2 and 3 counts against one budget (:data:`MAX_SIGNATURE_BYTES`, checked before each
    download; spent, the package is refused); each signature is verified as its payload
    arrives and only why it failed is kept; a signature manifest that is malformed or names
    a payload that is missing is a reason too, and the search goes on; and only the manifest
    and payload that verified are cached.
    """
    digest = ref.digest
    assert digest is not None
    names = frozenset(names) if names is not None else frozenset({ref.name})
    if cache is not None:
        remembered = _remembered_signature(cache, digest, trusted, names)
        if remembered is not None:
            return remembered
    search = _Search(client, ref, digest, trusted, cache, deadline, names)
    verified = search.group(signature_tag(digest), None)
    if verified is None:
        for referrer in search.referrers():
            verified = search.group(referrer, referrer)
            if verified is not None:
                break
    if verified is None:
        raise SignatureError(digest, search.why())
    return verified


def _remembered_signature(
    cache: BlobCache, digest: str, trusted: Sequence[PublicKey], names: Collection[str]
) -> VerifiedSignature | None:
    """A signature of the signature manifest that verified ``digest`` on an earlier pull, read
    from the cache (each blob checked against its digest there) and verified again, or ``None``."""
    remembered = cache.signatures_of(digest)
    raw = cache.get(remembered, limit=MAX_MANIFEST_BYTES) if remembered is not None else None
    if raw is None:
        return None
    try:
        signatures = parse_signatures(raw)
    except OciError:
        return None
    for signature in signatures:
        # Only the payload that verified was cached; the others are not looked for.
        payload = cache.get(signature.payload.digest, limit=signature.payload.size)
        if payload is None:
            continue
        try:
            return verify_signatures(digest, [(signature, payload)], trusted, names=names)
        except OciError:
            continue  # other keys this run, or a hint gone stale: ask the registry
    return None


class _Search:
    """One search of the registry for a signature that verifies ``digest``: what it downloaded
    (against :data:`MAX_SIGNATURE_BYTES`) and why what it found did not verify."""

    def __init__(
        self,
        client: RegistryClient,
        ref: Reference,
        digest: str,
        trusted: Sequence[PublicKey],
        cache: BlobCache | None,
        deadline: Deadline | None,
        names: Collection[str],
    ) -> None:
        self.names = names
        self.client = client
        self.ref = ref
        self.digest = digest
        self.trusted = trusted
        self.cache = cache
        self.deadline = deadline
        self.spent = 0
        self.signatures = 0
        self.reasons: list[str] = []

    def why(self) -> str:
        """Why nothing verified: every reason once."""
        reasons = sorted(set(self.reasons))
        if self.signatures == 0:
            reasons.insert(0, "unsigned (no cosign signature found)")
        return "; ".join(reasons)

    def _give_up(self, what: str) -> NoReturn:
        self.reasons.append(
            f"gave up at {what}: the signatures found are over the {MAX_SIGNATURE_BYTES}-byte "
            "limit of one check"
        )
        raise SignatureError(self.digest, self.why())

    def _room(self, what: str) -> int:
        """The bytes left of the budget; none left, the package is refused."""
        room = MAX_SIGNATURE_BYTES - self.spent
        if room <= 0:
            self._give_up(what)
        return room

    def _charge(self, what: str, size: int) -> None:
        if size > self._room(what):
            self._give_up(what)
        self.spent += size

    def _within(self) -> float | None:
        return self.deadline.left() if self.deadline is not None else None

    def _manifest(self, reference: str, get: Callable[[int], bytes | None]) -> bytes | None:
        """``get(limit)``'s answer, bounded by what is left of the budget and charged to it."""
        room = self._room(reference)
        limit = min(MAX_MANIFEST_BYTES, room)
        try:
            raw = get(limit)
        except TooLarge:
            if limit < MAX_MANIFEST_BYTES:
                self._give_up(reference)
            raise
        if raw is not None:
            self._charge(reference, len(raw))
        return raw

    def group(self, reference: str, named: str | None) -> VerifiedSignature | None:
        """The first signature in the signature manifest at ``reference`` (a tag, or the digest
        ``named``) that a trusted key verifies; ``None`` when none does (or there is none)."""
        try:
            raw = self._signature_manifest(reference, named)
            for signature in parse_signatures(raw) if raw is not None else ():
                self.signatures += 1
                payload = self._payload(signature)
                try:
                    verified = verify_signatures(
                        self.digest, [(signature, payload)], self.trusted, names=self.names
                    )
                except SignatureError as e:
                    self.reasons.append(e.reason)
                    continue
                if self.cache is not None:  # only what verified is kept
                    assert raw is not None
                    manifest = digest_of(raw)
                    self.cache.put(manifest, raw)
                    self.cache.put(signature.payload.digest, payload)
                    self.cache.remember_signatures(self.digest, manifest)
                return verified
        except (SignatureError, RegistryUnavailable, AuthFailed):
            raise  # a spent budget; a registry that cannot answer is no reason to refuse (exit 3)
        except OciError as e:
            # A malformed manifest, a payload that is missing or over its size: a reason, and
            # the search goes on (a good signature elsewhere still counts).
            self.reasons.append(f"{reference}: {e}")
        return None

    def _signature_manifest(self, reference: str, named: str | None) -> bytes | None:
        if named is not None and self.cache is not None:
            cached = self.cache.get(named, limit=MAX_MANIFEST_BYTES)
            if cached is not None:
                return cached

        def get(limit: int) -> bytes:
            return self.client.get_manifest(self.ref, reference, limit=limit, within=self._within())

        try:
            return self._manifest(reference, get)
        except NotFound:
            if named is not None:  # listed, then deleted; no .sig tag is no news
                self.reasons.append(f"signature manifest {named} is listed but not found")
            return None

    def _payload(self, signature: Signature) -> bytes:
        wanted = signature.payload
        if self.cache is not None:
            hit = self.cache.get(wanted.digest, limit=wanted.size)
            if hit is not None:
                return hit
        self._charge(f"payload {wanted.digest}", wanted.size)
        return self.client.get_blob(self.ref, wanted.digest, limit=wanted.size, within=self._within())

    def referrers(self) -> tuple[str, ...]:
        """The digests of the signature manifests that are OCI 1.1 referrers of the package: from
        the referrers API, or on a registry without it from the ``sha256-<hex>`` index tag."""
        digest, tag = self.digest, referrers_tag(self.digest)

        def listed(limit: int) -> bytes | None:
            return self.client.get_referrers(
                self.ref, digest, artifact_type=SIGNATURE_ARTIFACT_TYPE, limit=limit, within=self._within()
            )

        def fallback(limit: int) -> bytes:
            return self.client.get_manifest(self.ref, tag, limit=limit, within=self._within())

        try:
            index = self._manifest(f"referrers of {digest}", listed) or self._manifest(tag, fallback)
            assert index is not None
            return parse_referrers(index)
        except NotFound:
            return ()
        except (SignatureError, RegistryUnavailable, AuthFailed):
            raise
        except OciError as e:
            self.reasons.append(f"referrers of the package: {e}")
            return ()


def pull(
    client: RegistryClient,
    ref: Reference,
    *,
    trusted: Sequence[PublicKey],
    allow_unsigned: bool = False,
    cache: BlobCache | None = None,
    limits: Limits = Limits(),
    warn: Callable[[str], None] = lambda _m: None,
    clock: Callable[[], float] = time.monotonic,
    signed_as: Sequence[str] = (),
) -> PulledPackage:
    """Pull and verify the package ``ref`` names (see the module docstring for the order).

    Its signature must have been made for ``ref``'s own ``REGISTRY/REPO`` or one of
    ``signed_as`` (a mirror or a copy of a repository signed under another name)."""
    deadline = Deadline.start(ref.registry, limits.seconds, clock)
    cached = cache.get(ref.digest, limit=limits.manifest) if cache is not None and ref.digest else None
    if cached is not None:
        pinned, raw = ref, cached
    else:
        pinned, raw = resolve(client, ref, limits=limits, deadline=deadline)
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
            signature = check_signature(
                client, pinned, trusted, cache=cache, deadline=deadline, names={pinned.name, *signed_as}
            )
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
        data = client.get_blob(
            pinned, layer.digest, limit=min(layer.size, limits.layer), within=deadline.left()
        )
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
