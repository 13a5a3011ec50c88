"""What a pull asks the registry for, with and without the package cache.

The registry here is an in-memory stand-in that records every request, so each test can say
exactly which round trips a pull makes (the real registry is exercised in tests/e2e).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.config import parse_config
from donjon.oci.artifact import MANIFEST_MEDIA_TYPE, Descriptor, digest_of
from donjon.oci.build import build_package
from donjon.oci.cache import BlobCache
from donjon.oci.errors import (
    MalformedPackage,
    NotFound,
    RegistryUnavailable,
    SignatureError,
    TooLarge,
    exit_code,
)
from donjon.oci.pull import MAX_SIGNATURE_BYTES, Limits, check_signature, pull
from donjon.oci.reference import Reference, parse_reference
from donjon.oci.signature import (
    MAX_PAYLOAD_BYTES,
    MAX_REFERRERS,
    MAX_SIGNATURES,
    PAYLOAD_MEDIA_TYPE,
    SIGNATURE_ANNOTATION,
    SIGNATURE_ARTIFACT_TYPE,
    add_referrer,
    make_payload,
    parse_referrers,
    referrers_tag,
    sign_payload,
    signature_manifest,
    signature_tag,
)

ROOT = Path(__file__).resolve().parents[2]
MODULE = (ROOT / "examples" / "hello" / "hello.wasm").read_bytes()
CONFIG = b'[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'


class MemoryRegistry:
    """``RegistryClient``'s read side over dicts, logging each request as ``(kind, name)``; every
    answer bounded by ``limit`` as the real client bounds it, every ``within`` recorded."""

    def __init__(self, *, referrers_api: bool = False) -> None:
        self.referrers_api = referrers_api
        self.manifests: dict[str, bytes] = {}
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.within: list[float | None] = []
        self.downloaded = 0

    def _answer(self, what: str, data: bytes, limit: int, within: float | None) -> bytes:
        self.within.append(within)
        if len(data) > limit:
            raise TooLarge(what, len(data), limit)
        self.downloaded += len(data)
        return data

    def get_manifest(
        self, ref: Reference, reference: str, *, limit: int, within: float | None = None
    ) -> bytes:
        self.requests.append(("manifest", reference))
        if reference not in self.manifests:
            raise NotFound("memory", f"manifest {reference}: not found")
        return self._answer(f"manifest {reference}", self.manifests[reference], limit, within)

    def get_referrers(
        self,
        ref: Reference,
        digest: str,
        *,
        artifact_type: str,
        limit: int = 1 << 18,
        within: float | None = None,
    ) -> bytes | None:
        """As a registry with the referrers API answers: every stored manifest whose subject is
        ``digest``, filtered by artifact type; ``None`` (a 404) when it has no such API."""
        self.requests.append(("referrers", digest))
        if not self.referrers_api:
            return None
        listed = []
        for name, raw in self.manifests.items():
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            subject = doc.get("subject", {}).get("digest")
            if name.startswith("sha256:") and subject == digest and doc.get("artifactType") == artifact_type:
                listed.append({"mediaType": doc["mediaType"], "digest": name, "size": len(raw),
                               "artifactType": artifact_type})  # fmt: skip
        index = json.dumps({"schemaVersion": 2, "manifests": listed}).encode()
        return self._answer(f"referrers of {digest}", index, limit, within)

    def get_blob(self, ref: Reference, digest: str, *, limit: int, within: float | None = None) -> bytes:
        self.requests.append(("blob", digest))
        if digest not in self.blobs:
            raise NotFound("memory", f"blob {digest}: not found")
        return self._answer(f"blob {digest}", self.blobs[digest], limit, within)


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


# -- OCI 1.1 referrers -------------------------------------------------------------------------


def _sign_as_referrer(registry: MemoryRegistry, ref: Reference, key, *, fallback_index: bool) -> str:
    """A signature pushed the way referrer-only tools do: by digest with a ``subject``, no ``.sig``
    tag; on a registry without the referrers API, listed in the ``sha256-<hex>`` index tag."""
    digest = digest_of(registry.manifests[ref.tag or ""])
    payload = make_payload("registry.test/app", digest)
    subject = Descriptor(MANIFEST_MEDIA_TYPE, digest, len(registry.manifests[digest]))
    raw, blobs = signature_manifest([(payload, sign_payload(key, payload))], subject)
    registry.blobs.update(blobs)
    registry.manifests[digest_of(raw)] = raw
    if fallback_index:
        tag = referrers_tag(digest)
        registry.manifests[tag] = add_referrer(registry.manifests.get(tag), raw)
    return digest_of(raw)


@pytest.mark.parametrize("api", [True, False], ids=["referrers-api", "tag-schema-fallback"])
def test_a_signature_that_is_only_a_referrer_is_found(tmp_path, signer, api):
    registry = MemoryRegistry(referrers_api=api)
    ref = _publish(registry, tmp_path)
    _sign_as_referrer(registry, ref, signer, fallback_index=not api)
    cache = BlobCache(tmp_path / "cache")
    pulled = _pull(registry, ref, signer, cache)
    assert pulled.signature is not None
    assert ("manifest", signature_tag(pulled.reference.digest)) in registry.requests  # tried first
    if not api:
        assert ("manifest", referrers_tag(pulled.reference.digest)) in registry.requests
    # The referrer that verified is remembered like a .sig manifest.
    _pull(registry, ref, signer, cache)
    assert registry.requests == [("manifest", "v1")]


def test_referrers_are_not_asked_for_when_the_sig_tag_verifies(tmp_path, signer):
    registry = MemoryRegistry(referrers_api=True)
    ref = _publish(registry, tmp_path, signer)
    _pull(registry, ref, signer, BlobCache(tmp_path / "cache"))
    assert not any(kind == "referrers" for kind, _ in registry.requests)


def test_an_untrusted_referrer_is_refused_with_the_reason(tmp_path, signer):
    registry = MemoryRegistry(referrers_api=True)
    ref = _publish(registry, tmp_path)
    _sign_as_referrer(registry, ref, ec.generate_private_key(ec.SECP256R1()), fallback_index=False)
    with pytest.raises(SignatureError, match="not trusted"):
        _pull(registry, ref, signer, BlobCache(tmp_path / "cache"))


def test_with_no_signature_anywhere_the_package_is_unsigned(tmp_path, signer):
    registry = MemoryRegistry(referrers_api=False)
    ref = _publish(registry, tmp_path)
    with pytest.raises(SignatureError, match="unsigned"):
        _pull(registry, ref, signer, BlobCache(tmp_path / "cache"))


def test_the_fallback_index_keeps_other_entries_dedupes_and_is_bounded():
    other = {"mediaType": MANIFEST_MEDIA_TYPE, "digest": "sha256:" + "a" * 64, "size": 1,
             "artifactType": "application/vnd.example.sbom"}  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "manifests": [other]}).encode()
    manifests = [json.dumps({"n": n}).encode() for n in range(MAX_REFERRERS + 5)]
    for raw in manifests:
        index = add_referrer(index, raw)
    index = add_referrer(index, manifests[-1])  # again: listed once
    listed = json.loads(index)["manifests"]
    assert listed[0] == other
    assert parse_referrers(index) == tuple(digest_of(raw) for raw in manifests[-MAX_REFERRERS:])
    assert len(listed) == 1 + MAX_REFERRERS


@pytest.mark.parametrize(
    "entry",
    [
        {"mediaType": MANIFEST_MEDIA_TYPE, "digest": "sha256:" + "A" * 64},
        {"mediaType": MANIFEST_MEDIA_TYPE, "digest": "sha512:" + "a" * 128},
        {"mediaType": MANIFEST_MEDIA_TYPE, "digest": "sha256:../../x"},
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + "a" * 64},
        {"mediaType": MANIFEST_MEDIA_TYPE, "digest": 7},
        "not an object",
    ],
)
def test_a_hostile_referrers_index_entry_is_skipped(entry):
    if isinstance(entry, dict):
        entry = {**entry, "artifactType": SIGNATURE_ARTIFACT_TYPE}
    assert parse_referrers(json.dumps({"manifests": [entry]}).encode()) == ()


def test_a_referrers_index_that_is_not_one_is_refused():
    with pytest.raises(MalformedPackage):
        parse_referrers(b'{"manifests": {}}')
    with pytest.raises(MalformedPackage):
        parse_referrers(b'{"manifests": [], "manifests": []}')


# -- the cache's size bound ----------------------------------------------------------------------


def test_the_cache_evicts_what_was_used_longest_ago_past_its_bound(tmp_path):
    import os

    cache = BlobCache(tmp_path, max_bytes=2500)
    blobs = [bytes([n]) * 1000 for n in range(3)]
    digests = [digest_of(b) for b in blobs]
    for n, (digest, data) in enumerate(zip(digests[:2], blobs[:2], strict=True)):
        cache.put(digest, data)
        os.utime(tmp_path / "sha256" / digest.removeprefix("sha256:"), ns=(n * 10**9, n * 10**9))
    assert cache.get(digests[0], limit=1000) == blobs[0]  # used now: the newest
    cache.put(digests[2], blobs[2])  # 3000 bytes > 2500: the least recently used goes
    assert cache.evicted == 1
    assert cache.get(digests[1], limit=1000) is None
    assert cache.get(digests[0], limit=1000) == blobs[0]
    assert cache.get(digests[2], limit=1000) == blobs[2]


def test_a_blob_bigger_than_the_bound_is_kept_until_the_next_write(tmp_path):
    cache = BlobCache(tmp_path, max_bytes=10)
    cache.put(digest_of(b"x" * 100), b"x" * 100)
    assert cache.get(digest_of(b"x" * 100), limit=100) == b"x" * 100
    cache.put(digest_of(b"y" * 100), b"y" * 100)
    assert cache.get(digest_of(b"x" * 100), limit=100) is None


def test_the_bound_comes_from_the_environment_in_mib_and_a_bad_value_is_named():
    from donjon.oci.cache import DEFAULT_MAX_BYTES, max_bytes_from_env

    assert max_bytes_from_env({}) == DEFAULT_MAX_BYTES
    assert max_bytes_from_env({"DONJON_PACKAGE_CACHE_MAX_MB": "64"}) == 64 * 1024 * 1024
    for bad in ("-1", "1.5", "1e9", "lots", "9" * 12):
        with pytest.raises(ValueError, match="DONJON_PACKAGE_CACHE_MAX_MB"):
            max_bytes_from_env({"DONJON_PACKAGE_CACHE_MAX_MB": bad})


# -- what a signature check may cost (issue 12 review: B4, B5) -------------------------------------


def _hostile_referrers(registry: MemoryRegistry, digest: str, key) -> None:
    """As many referrers as are read, each with as many signatures as are read, each over a
    payload of the largest size accepted - by a key nobody trusts."""
    payload = b"{" + b" " * (MAX_PAYLOAD_BYTES - 2) + b"}"
    subject = Descriptor(MANIFEST_MEDIA_TYPE, digest, len(registry.manifests[digest]))
    for _ in range(MAX_REFERRERS):
        raw, blobs = signature_manifest([(payload, sign_payload(key, payload))] * MAX_SIGNATURES, subject)
        registry.blobs.update(blobs)
        registry.manifests[digest_of(raw)] = raw


def test_an_unsigned_package_with_hostile_referrers_costs_at_most_the_signature_budget(tmp_path, signer):
    registry = MemoryRegistry(referrers_api=True)
    ref = _publish(registry, tmp_path)
    digest = digest_of(registry.manifests["v1"])
    _hostile_referrers(registry, digest, ec.generate_private_key(ec.SECP256R1()))
    cache = BlobCache(tmp_path / "cache")
    with pytest.raises(SignatureError, match="over the 1048576-byte limit of one check") as refused:
        check_signature(registry, ref.pinned(digest), [signer.public_key()], cache=cache)  # type: ignore[arg-type]
    assert exit_code(refused.value) == 1 and "not trusted" in str(refused.value)
    assert MAX_SIGNATURE_BYTES == 1 << 20
    # Everything downloaded (manifests, the index, payloads) fits in the budget; before, up to
    # 16 x 64 x 128 KiB were fetched, held and cached.
    assert registry.downloaded <= MAX_SIGNATURE_BYTES
    assert not (tmp_path / "cache" / "sha256").exists()  # nothing that did not verify is cached


def test_only_the_signature_manifest_and_payload_that_verified_are_cached(tmp_path, signer):
    registry = MemoryRegistry(referrers_api=True)
    ref = _publish(registry, tmp_path)
    digest = digest_of(registry.manifests["v1"])
    stranger = ec.generate_private_key(ec.SECP256R1())
    other = make_payload("registry.test/elsewhere", digest)
    untrusted, blobs = signature_manifest([(other, sign_payload(stranger, other))])
    registry.blobs.update(blobs)
    registry.manifests[signature_tag(digest)] = untrusted
    referrer = _sign_as_referrer(registry, ref, signer, fallback_index=False)
    cache = BlobCache(tmp_path / "cache")
    pulled = _pull(registry, ref, signer, cache)
    assert pulled.signature is not None
    assert cache.get(referrer, limit=1 << 20) is not None
    assert cache.get(digest_of(make_payload("registry.test/app", digest)), limit=1 << 20) is not None
    assert cache.get(digest_of(untrusted), limit=1 << 20) is None
    assert cache.get(digest_of(other), limit=1 << 20) is None


def _sig_manifest(registry: MemoryRegistry, digest: str, layers: list[dict]) -> None:
    registry.manifests[signature_tag(digest)] = json.dumps(
        {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "layers": layers}
    ).encode()


@pytest.mark.parametrize(
    "bad", [{"digest": "sha256:../../../etc/passwd"}, {"digest": "sha256:" + "A" * 64}, {"size": True}]
)
def test_a_hostile_payload_descriptor_is_skipped_not_a_crash(tmp_path, signer, bad):
    registry = MemoryRegistry()
    ref = _publish(registry, tmp_path)
    digest = digest_of(registry.manifests["v1"])
    payload = make_payload("registry.test/app", digest)
    encoded = base64.b64encode(sign_payload(signer, payload)).decode()
    layer = {"mediaType": PAYLOAD_MEDIA_TYPE, "digest": digest_of(payload), "size": len(payload),
             "annotations": {SIGNATURE_ANNOTATION: encoded}}  # fmt: skip
    registry.blobs[digest_of(payload)] = payload
    _sig_manifest(registry, digest, [{**layer, **bad}])
    with pytest.raises(SignatureError, match="unsigned"):  # was a ValueError: "internal error", exit 3
        _pull(registry, ref, signer, BlobCache(tmp_path / "cache"))


@pytest.mark.parametrize("fault", ["not JSON", "payload missing"])
def test_a_broken_sig_manifest_is_a_reason_and_the_referrers_are_still_read(tmp_path, signer, fault):
    registry = MemoryRegistry(referrers_api=True)
    ref = _publish(registry, tmp_path)
    digest = digest_of(registry.manifests["v1"])
    if fault == "not JSON":
        registry.manifests[signature_tag(digest)] = b"\x00 not a manifest"
    else:
        payload = make_payload("registry.test/gone", digest)
        raw, _ = signature_manifest([(payload, sign_payload(signer, payload))])  # blobs not pushed
        registry.manifests[signature_tag(digest)] = raw
    _sign_as_referrer(registry, ref, signer, fallback_index=False)
    pulled = _pull(registry, ref, signer, BlobCache(tmp_path / "cache"))
    assert pulled.signature is not None and pulled.signature.docker_reference == "registry.test/app"
    # ...and with no good referrer, the refusal says what was wrong with the .sig tag (exit 1).
    registry.referrers_api = False
    with pytest.raises(SignatureError, match=r"not found|not valid JSON") as refused:
        _pull(registry, ref, signer, BlobCache(tmp_path / "other-cache"))
    assert exit_code(refused.value) == 1


# -- one deadline for the whole pull -----------------------------------------------------------


def test_one_deadline_bounds_the_whole_pull_not_each_download(tmp_path, signer):
    registry = MemoryRegistry()
    ref = _publish(registry, tmp_path, signer)
    now = [0.0]
    blob = registry.get_blob

    def slow_blob(*args, **kwargs):
        now[0] += 40.0  # each download well within one download's 300 s
        return blob(*args, **kwargs)

    registry.get_blob = slow_blob  # type: ignore[method-assign]
    limits = Limits(seconds=70)
    with pytest.raises(RegistryUnavailable, match="did not finish within 70 s") as late:
        pull(registry, ref, trusted=[signer.public_key()], limits=limits, clock=lambda: now[0])  # type: ignore[arg-type]
    assert exit_code(late.value) == 3
    # The signature payload and the module took 80 s: the config was not asked for, and each
    # download was given only what was left of the pull's time.
    assert registry.within == [70.0, 70.0, 70.0, 30.0]
    assert Limits().seconds == 600


# -- the signature hints are bounded by the cache ------------------------------------------------


def test_a_signature_hint_goes_when_its_manifest_is_evicted(tmp_path):
    cache = BlobCache(tmp_path, max_bytes=1500)
    package, manifest = digest_of(b"package"), digest_of(b"m" * 1000)
    cache.put(manifest, b"m" * 1000)
    cache.remember_signatures(package, manifest)
    (tmp_path / "signatures" / "junk").write_text("not a hint")
    assert cache.signatures_of(package) == manifest
    cache.put(digest_of(b"n" * 1000), b"n" * 1000)  # over the bound: the manifest goes...
    assert cache.get(manifest, limit=1000) is None
    assert cache.signatures_of(package) is None  # ...and so does its hint
    assert sorted(p.name for p in (tmp_path / "signatures").iterdir()) == []


# -- the repository a signature was made for -----------------------------------------------------


def test_a_signature_made_for_another_repository_is_refused_unless_that_name_is_accepted(tmp_path, signer):
    """The same registry can serve, under ``registry.test/prod``, a package the trusted key
    signed as ``registry.test/app`` (a debug build, say): refused, unless the run says that
    name is an alias (a mirror or a copy)."""
    registry = MemoryRegistry()
    _publish(registry, tmp_path, signer)  # signed as registry.test/app
    prod = parse_reference("registry.test/prod:v1")
    cache = BlobCache(tmp_path / "cache")
    with pytest.raises(SignatureError, match=r"made for another repository \('registry.test/app'"):
        pull(registry, prod, trusted=[signer.public_key()], cache=cache)  # type: ignore[arg-type]
    pulled = pull(registry, prod, trusted=[signer.public_key()], cache=cache, signed_as=["registry.test/app"])  # type: ignore[arg-type]
    assert pulled.signature is not None and pulled.signature.docker_reference == "registry.test/app"
    # Remembered in the cache, the signature is still held to the names of each run.
    registry.requests.clear()
    with pytest.raises(SignatureError, match="another repository"):
        pull(registry, prod, trusted=[signer.public_key()], cache=cache)  # type: ignore[arg-type]
