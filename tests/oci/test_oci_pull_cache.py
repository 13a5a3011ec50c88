"""What a pull asks the registry for, with and without the package cache.

The registry here is an in-memory stand-in that records every request, so each test can say
exactly which round trips a pull makes (the real registry is exercised in tests/e2e).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.config import parse_config
from donjon.oci.artifact import digest_of
from donjon.oci.build import build_package
from donjon.oci.cache import BlobCache
from donjon.oci.errors import NotFound, SignatureError
from donjon.oci.pull import pull
from donjon.oci.reference import Reference, parse_reference
from donjon.oci.signature import make_payload, sign_payload, signature_manifest, signature_tag

ROOT = Path(__file__).resolve().parents[2]
MODULE = (ROOT / "examples" / "hello" / "hello.wasm").read_bytes()
CONFIG = b'[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'


class MemoryRegistry:
    """``RegistryClient``'s read side over dicts, logging each request as ``(kind, name)``."""

    def __init__(self) -> None:
        self.manifests: dict[str, bytes] = {}
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []

    def get_manifest(self, ref: Reference, reference: str, *, limit: int) -> bytes:
        self.requests.append(("manifest", reference))
        if reference not in self.manifests:
            raise NotFound("memory", f"manifest {reference}: not found")
        return self.manifests[reference]

    def get_blob(self, ref: Reference, digest: str, *, limit: int) -> bytes:
        self.requests.append(("blob", digest))
        if digest not in self.blobs:
            raise NotFound("memory", f"blob {digest}: not found")
        return self.blobs[digest]


def _publish(
    registry: MemoryRegistry, tmp_path: Path, *signers: ec.EllipticCurvePrivateKey, config: bytes = CONFIG
) -> Reference:
    """A package pushed under ``registry.test/app:v1`` and signed by each of ``signers``."""
    built = build_package(MODULE, parse_config(config).config, config, tmp_path)
    registry.blobs.update(built.blobs)
    digest = built.manifest.digest
    registry.manifests[digest] = registry.manifests["v1"] = built.manifest.raw
    if signers:
        payload = make_payload("registry.test/app", digest)
        raw, blobs = signature_manifest([(payload, sign_payload(key, payload)) for key in signers])
        registry.blobs.update(blobs)
        registry.manifests[signature_tag(digest)] = raw
    return parse_reference("registry.test/app:v1")


def _pull(registry: MemoryRegistry, ref: Reference, key: ec.EllipticCurvePrivateKey, cache: BlobCache):
    registry.requests.clear()
    return pull(registry, ref, trusted=[key.public_key()], cache=cache)  # type: ignore[arg-type]


@pytest.fixture
def signer() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_a_cached_pull_by_tag_asks_the_registry_only_where_the_tag_points(tmp_path, signer):
    registry = MemoryRegistry()
    ref = _publish(registry, tmp_path, signer)
    cache = BlobCache(tmp_path / "cache")
    first = _pull(registry, ref, signer, cache)
    assert ("manifest", signature_tag(first.reference.digest)) in registry.requests
    second = _pull(registry, ref, signer, cache)
    assert registry.requests == [("manifest", "v1")]
    assert second.module == first.module == MODULE
    assert second.signature is not None and second.signature.signer == first.signature.signer


def test_a_cached_pull_by_digest_makes_no_request_at_all(tmp_path, signer):
    registry = MemoryRegistry()
    ref = _publish(registry, tmp_path, signer)
    cache = BlobCache(tmp_path / "cache")
    pinned = _pull(registry, ref, signer, cache).reference
    _pull(registry, pinned, signer, cache)
    assert registry.requests == []


def test_a_remembered_signature_is_verified_again_against_this_runs_keys(tmp_path, signer):
    registry = MemoryRegistry()
    ref = _publish(registry, tmp_path, signer)
    cache = BlobCache(tmp_path / "cache")
    _pull(registry, ref, signer, cache)
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureError, match="not trusted"):
        _pull(registry, ref, stranger, cache)
    # Refused from the cache, the registry was asked for the signatures again before refusing.
    assert ("manifest", signature_tag(digest_of(registry.manifests["v1"]))) in registry.requests


def test_a_signature_added_later_is_found_when_the_remembered_one_is_not_trusted(tmp_path, signer):
    registry = MemoryRegistry()
    ref = _publish(registry, tmp_path, signer)
    cache = BlobCache(tmp_path / "cache")
    _pull(registry, ref, signer, cache)
    second = ec.generate_private_key(ec.SECP256R1())
    _publish(registry, tmp_path, signer, second)  # the same package, now signed twice
    pulled = _pull(registry, ref, second, cache)
    assert pulled.signature is not None
    # ...and that newer .sig manifest is the one remembered now: no round trip next time.
    _pull(registry, ref, second, cache)
    assert registry.requests == [("manifest", "v1")]


def test_a_meddled_signature_hint_costs_a_fetch_and_admits_nothing(tmp_path, signer):
    registry = MemoryRegistry()
    ref = _publish(registry, tmp_path, signer)
    cache = BlobCache(tmp_path / "cache")
    digest = _pull(registry, ref, signer, cache).reference.digest
    assert digest is not None
    hint = tmp_path / "cache" / "signatures" / digest.removeprefix("sha256:")
    # Point the hint at a cached blob that is not a signature manifest (the module layer)...
    hint.write_text(digest_of(MODULE))
    pulled = _pull(registry, ref, signer, cache)
    assert pulled.signature is not None
    assert ("manifest", signature_tag(digest)) in registry.requests
    # ...or at nothing sensible: the same.
    hint.write_text("../../etc/passwd")
    _pull(registry, ref, signer, cache)
    assert ("manifest", signature_tag(digest)) in registry.requests
    # An unsigned package is refused even if its hint names a good signature of another one.
    unsigned = MemoryRegistry()
    other = _publish(unsigned, tmp_path, config=CONFIG + b"# another package\n")
    other_digest = digest_of(unsigned.manifests["v1"])
    (tmp_path / "cache" / "signatures" / other_digest.removeprefix("sha256:")).write_text(
        (hint.parent / digest.removeprefix("sha256:")).read_text()
    )
    with pytest.raises(SignatureError):
        _pull(unsigned, other, signer, cache)


def test_without_a_cache_every_pull_fetches_the_signatures(tmp_path, signer):
    registry = MemoryRegistry()
    ref = _publish(registry, tmp_path, signer)
    for _ in range(2):
        registry.requests.clear()
        pinned = pull(registry, ref, trusted=[signer.public_key()]).reference  # type: ignore[arg-type]
        assert ("manifest", signature_tag(pinned.digest)) in registry.requests
