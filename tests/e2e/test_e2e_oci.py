"""Signed packages from a real registry (issue 12): build -> push -> sign -> ``donjon run oci://``.

The registry is Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1 with TLS from a
throwaway CA and htpasswd basic auth (the ``registry`` fixture). ``donjon package`` runs through
its ``main(argv)``; the Keep is the real ``donjon run`` in a child process, attested on sim-snp by
a local Steward; the client is ``donjon peer verify --workload-digest``. Each bad case of the issue
is one test, named after the flaw.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from donjon.cli import main
from donjon.oci.artifact import digest_of
from donjon.oci.auth import Credentials
from donjon.oci.errors import TooLarge
from donjon.oci.pull import Limits, pull
from donjon.oci.reference import parse_reference
from donjon.oci.registry import RegistryClient
from donjon.oci.signature import load_public_key

from ..processes import StewardProcess, run_donjon
from .conftest import (
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    TIMEOUT,
    free_port,
    refuses_connections,
)

SPIFFE_PATH = "/e2e/package"


def unique_module(base: bytes, label: str) -> bytes:
    """``base`` with a custom section naming ``label``: another module (its own blobs), same behaviour.

    WebAssembly core spec 5.5.3 "Custom Section": id 0, then the size, the name and the bytes;
    valid anywhere after the header and ignored by the engine.
    """
    name = b"donjon-test"
    body = bytes([len(name)]) + name + label.encode()
    assert len(body) < 128
    return base + b"\x00" + bytes([len(body)]) + body


class Packager:
    """``donjon package`` through its command line against the test registry."""

    def __init__(self, registry, tmp_path: Path, capsys, monkeypatch) -> None:
        self.registry = registry
        self.tmp = tmp_path
        self.capsys = capsys
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(registry.auth_file))
        monkeypatch.setenv("DONJON_REGISTRY_CA", str(registry.ca))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))

    def donjon(self, *argv: str, expect: int = 0) -> str:
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        assert code == expect, f"donjon {' '.join(argv)} -> {code}: {err}"
        self.err = err
        return out.strip()

    def keygen(self, name: str) -> tuple[Path, Path]:
        self.donjon("package", "keygen", str(self.tmp / name))
        return self.tmp / f"{name}.key", self.tmp / f"{name}.pub"

    def publish(self, w, repo: str, *, key: Path | None) -> str:
        layout = self.tmp / f"{repo.replace('/', '-')}.oci"
        self.donjon("package", "build", "--config", str(w.config), str(w.wasm), "-o", str(layout))
        pinned = self.donjon("package", "push", str(layout), f"{self.registry.host}/{repo}:v1")
        if key is not None:
            self.donjon("package", "sign", pinned, "--key", str(key))
        return pinned

    def blob_path(self, digest: str) -> Path:
        hexdigest = digest.removeprefix("sha256:")
        root = self.registry.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
        return root / hexdigest[:2] / hexdigest / "data"


@pytest.fixture
def pkg(registry, tmp_path, capsys, monkeypatch) -> Packager:
    return Packager(registry, tmp_path, capsys, monkeypatch)


def _workload(e2e, steward, label: str, *, backends=("sim-snp", "sim-tdx")):
    base = (Path(__file__).resolve().parents[2] / "examples" / "http" / "http.wasm").read_bytes()
    module = unique_module(base, label)
    w = e2e.workload(
        "http", steward_url=steward.url, steward_ca=None, name="web", module=module, backends=backends
    )
    from donjon.config import parse_config, workload_digest

    w.digest = workload_digest(module, parse_config(w.config.read_bytes()).config)
    return w


def _run(e2e, registry, steward, reference: str, *extra: str):
    return e2e.keep(
        [
            "--backend", "sim-snp", "--steward-ca", str(steward.ca_path), "--attest-timeout", "5",
            "--package-cache", str(Path(registry.root) / f"cache-{time.monotonic_ns()}"),
            *extra, f"oci://{reference}",
        ],
        env=registry.env,
    )  # fmt: skip


def test_a_signed_package_runs_attested_and_a_client_verifies_its_workload_digest(e2e, registry, pkg):
    steward = e2e.steward()
    w = _workload(e2e, steward, "signed")
    steward.set_policy(e2e.policy([e2e.rule(w.digest, SPIFFE_PATH)]))
    key, pub = pkg.keygen("signer")
    pinned = pkg.publish(w, "e2e/signed", key=key)
    signer = load_public_key(pub.read_bytes())
    from donjon.oci.signature import fingerprint

    keep = _run(e2e, registry, steward, f"{registry.host}/e2e/signed:v1", "--trust-signer", str(pub))
    keep.wait_for("listening on")
    assert f"package {pinned}, signed by {fingerprint(signer)}" in keep.err
    assert "[SIMULATED TEE]" in keep.err
    out = pkg.donjon(
        "peer", "verify", f"127.0.0.1:{w.port}", "--ca", str(steward.ca_path), "--allow-simulated",
        "--workload-digest", w.digest.hex(),
    )  # fmt: skip
    assert w.digest.hex() in out
    pkg.donjon(
        "peer", "verify", f"127.0.0.1:{w.port}", "--ca", str(steward.ca_path), "--allow-simulated",
        "--workload-digest", "00" * 32, expect=1,
    )  # fmt: skip


def test_build_pushes_straight_to_a_registry_the_same_bytes_as_build_then_push(e2e, registry, pkg):
    steward = e2e.steward()
    w = _workload(e2e, steward, "build-push")
    built = pkg.donjon(
        "package", "build", "--config", str(w.config), str(w.wasm), "-o", str(pkg.tmp / "a.oci")
    )
    target = f"{registry.host}/e2e/build-push:v1"
    pushed = pkg.donjon("package", "build", "--config", str(w.config), str(w.wasm), "--push", target)
    assert pushed == f"{registry.host}/e2e/build-push@{built}"
    with _client(registry) as client:
        ref = parse_reference(pushed)
        assert digest_of(client.get_manifest(ref, "v1")) == built
    pkg.donjon("package", "build", "--config", str(w.config), str(w.wasm), expect=2)
    assert "-o DIR, --push REGISTRY/REPO:TAG, or both" in pkg.err
    pkg.donjon("package", "build", "--config", str(w.config), str(w.wasm), "--push", pushed, expect=2)
    assert "push to a tag" in pkg.err


def test_the_same_package_by_digest_runs_too(e2e, registry, pkg):
    steward = e2e.steward()
    w = _workload(e2e, steward, "by-digest")
    steward.set_policy(e2e.policy([e2e.rule(w.digest, SPIFFE_PATH)]))
    key, pub = pkg.keygen("signer")
    pinned = pkg.publish(w, "e2e/by-digest", key=key)
    keep = _run(e2e, registry, steward, pinned, "--trust-signer", str(pub))
    keep.wait_for("listening on")


def test_a_signature_is_also_an_oci_referrer_listed_in_the_tag_schema_index(e2e, registry, pkg):
    """distribution 2.8 has no referrers API (it answers 404): the signer keeps the Distribution
    Specification v1.1 ``sha256-<hex>`` index, listing the ``.sig`` manifest, whose subject is
    the package - so the registry accepted a manifest with ``subject`` and ``artifactType``."""
    from donjon.oci.signature import (
        SIGNATURE_ARTIFACT_TYPE,
        parse_referrers,
        referrers_tag,
        signature_tag,
    )

    steward = e2e.steward()
    key, _ = pkg.keygen("signer")
    ref = parse_reference(pkg.publish(_workload(e2e, steward, "referrer"), "e2e/referrer", key=key))
    with _client(registry) as client:
        assert client.get_referrers(ref, ref.digest, artifact_type=SIGNATURE_ARTIFACT_TYPE) is None
        sig = client.get_manifest(ref, signature_tag(ref.digest))
        assert json.loads(sig)["subject"]["digest"] == ref.digest
        listed = parse_referrers(client.get_manifest(ref, referrers_tag(ref.digest)))
    assert listed == (digest_of(sig),)
    # A second signer's signature joins the first in the .sig tag (it used to replace it: the
    # payload is the same for every signer); the index lists both manifests.
    other, _ = pkg.keygen("second")
    pkg.donjon("package", "sign", f"{ref.name}@{ref.digest}", "--key", str(other))
    with _client(registry) as client:
        sig2 = client.get_manifest(ref, signature_tag(ref.digest))
        listed = parse_referrers(client.get_manifest(ref, referrers_tag(ref.digest)))
    assert listed == (digest_of(sig), digest_of(sig2)) and len(json.loads(sig2)["layers"]) == 2
    # Signing again with the first key replaces its own signature, keeping the other signer's.
    pkg.donjon("package", "sign", f"{ref.name}@{ref.digest}", "--key", str(key))
    with _client(registry) as client:
        assert len(json.loads(client.get_manifest(ref, signature_tag(ref.digest)))["layers"]) == 2


def test_re_signing_keeps_another_signers_layer_verbatim(e2e, registry, pkg):
    """A cosign keyless layer carries a certificate, a chain and a Rekor bundle beside its
    signature: signing the package with another key (twice: the second replaces its own) keeps
    that layer exactly as it was - it used to be rebuilt with the signature annotation only - and
    the config's ``rootfs.diff_ids`` list every layer. Both signatures verify."""
    import base64
    from types import SimpleNamespace

    from cryptography.hazmat.primitives.asymmetric import ec

    from donjon.oci.artifact import MANIFEST_MEDIA_TYPE, canonical_json
    from donjon.oci.signature import (
        COSIGN_CONFIG_MEDIA_TYPE,
        PAYLOAD_MEDIA_TYPE,
        SIGNATURE_ANNOTATION,
        make_payload,
        sign_payload,
        signature_tag,
    )

    ref = parse_reference(
        pkg.publish(_workload(e2e, SimpleNamespace(url=None), "keyless"), "e2e/keyless", key=None)
    )
    keyless = ec.generate_private_key(ec.SECP256R1())
    payload = make_payload(ref.name, ref.digest)
    layer = {
        "mediaType": PAYLOAD_MEDIA_TYPE,
        "digest": digest_of(payload),
        "size": len(payload),
        "annotations": {
            SIGNATURE_ANNOTATION: base64.b64encode(sign_payload(keyless, payload)).decode(),
            "dev.sigstore.cosign/certificate": "-----BEGIN CERTIFICATE-----\nMIIB...\n",
            "dev.sigstore.cosign/chain": "-----BEGIN CERTIFICATE-----\nMIIC...\n",
            "dev.sigstore.cosign/bundle": json.dumps({"SignedEntryTimestamp": "MEUC", "Payload": {}}),
        },
    }
    # The keyless signer's .sig manifest, written here as cosign writes it.
    config = canonical_json(
        {
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
        }
    )
    config_descriptor = {
        "mediaType": COSIGN_CONFIG_MEDIA_TYPE,
        "digest": digest_of(config),
        "size": len(config),
    }
    raw = canonical_json(
        {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "config": config_descriptor, "layers": [layer]}
    )
    with _client(registry) as client:
        for data in (config, payload):
            client.push_blob(ref, digest_of(data), data)
        client.push_manifest(ref, signature_tag(ref.digest), raw, MANIFEST_MEDIA_TYPE)
    key, pub = pkg.keygen("signer")
    for _ in range(2):
        pkg.donjon("package", "sign", f"{ref.name}@{ref.digest}", "--key", str(key))
    with _client(registry) as client:
        sig = json.loads(client.get_manifest(ref, signature_tag(ref.digest)))
        config = json.loads(client.get_blob(ref, sig["config"]["digest"], limit=1 << 16))
        assert sig["layers"][0] == layer and len(sig["layers"]) == 2
        assert config["rootfs"]["diff_ids"] == [item["digest"] for item in sig["layers"]]
        for signer in (keyless.public_key(), load_public_key(pub.read_bytes())):
            assert pull(client, ref, trusted=[signer]).signature is not None


def test_a_package_signed_only_by_a_referrer_runs(e2e, registry, pkg):
    """A signature pushed as other OCI 1.1 tools do - by digest with a subject, no ``.sig`` tag,
    listed in the tag-schema index - is found and verified."""
    from donjon.oci.artifact import MANIFEST_MEDIA_TYPE, Descriptor
    from donjon.oci.signature import (
        INDEX_MEDIA_TYPE,
        add_referrer,
        load_private_key,
        make_payload,
        referrers_tag,
        sign_payload,
        signature_manifest,
    )

    steward = e2e.steward()
    w = _workload(e2e, steward, "referrer-only")
    steward.set_policy(e2e.policy([e2e.rule(w.digest, SPIFFE_PATH)]))
    key, pub = pkg.keygen("signer")
    ref = parse_reference(pkg.publish(w, "e2e/referrer-only", key=None))
    with _client(registry) as client:
        package = client.get_manifest(ref, ref.digest)
        payload = make_payload(ref.name, ref.digest)
        signed = sign_payload(load_private_key(key.read_bytes()), payload)
        subject = Descriptor(MANIFEST_MEDIA_TYPE, ref.digest, len(package))
        raw, blobs = signature_manifest([(payload, signed)], subject)
        for digest, data in blobs.items():
            client.push_blob(ref, digest, data)
        client.push_manifest(ref, digest_of(raw), raw, MANIFEST_MEDIA_TYPE)
        client.push_manifest(ref, referrers_tag(ref.digest), add_referrer(None, raw), INDEX_MEDIA_TYPE)
    keep = _run(e2e, registry, steward, f"{registry.host}/e2e/referrer-only:v1", "--trust-signer", str(pub))
    keep.wait_for("listening on")


def _refused(e2e, registry, steward, reference: str, *extra: str) -> tuple[int, str]:
    keep = _run(e2e, registry, steward, reference, *extra)
    code = keep.wait()
    return code, keep.err


def test_an_unsigned_package_is_refused(e2e, registry, pkg):
    steward = e2e.steward()
    w = _workload(e2e, steward, "unsigned")
    _, pub = pkg.keygen("signer")
    pkg.publish(w, "e2e/unsigned", key=None)
    code, err = _refused(
        e2e, registry, steward, f"{registry.host}/e2e/unsigned:v1", "--trust-signer", str(pub)
    )
    assert code == 1 and "unsigned" in err and "listening" not in err


def test_an_unsigned_package_runs_with_allow_unsigned_and_says_so(e2e, registry, pkg):
    steward = e2e.steward()
    w = _workload(e2e, steward, "allowed-unsigned")
    steward.set_policy(e2e.policy([e2e.rule(w.digest, SPIFFE_PATH)]))
    pkg.publish(w, "e2e/allowed-unsigned", key=None)
    keep = _run(e2e, registry, steward, f"{registry.host}/e2e/allowed-unsigned:v1", "--allow-unsigned")
    keep.wait_for("listening on")
    assert "NOT signature-checked (--allow-unsigned)" in keep.err and "NOBODY (unsigned)" in keep.err


def test_a_package_signed_by_an_untrusted_key_is_refused(e2e, registry, pkg):
    steward = e2e.steward()
    w = _workload(e2e, steward, "untrusted")
    key, _ = pkg.keygen("someone")
    _, trusted = pkg.keygen("signer")
    pkg.publish(w, "e2e/untrusted", key=key)
    code, err = _refused(
        e2e, registry, steward, f"{registry.host}/e2e/untrusted:v1", "--trust-signer", str(trusted)
    )
    assert code == 1 and "a key not trusted" in err


def test_a_wrongly_signed_package_is_refused(e2e, registry, pkg):
    """The signature bytes do not verify over the payload (flipped in the .sig manifest, which
    the referrers index then lists alone: the registry holds no good signature)."""
    steward = e2e.steward()
    w = _workload(e2e, steward, "wrongly-signed")
    key, pub = pkg.keygen("signer")
    pinned = pkg.publish(w, "e2e/wrongly-signed", key=key)
    ref = parse_reference(pinned)
    from donjon.oci.signature import (
        INDEX_MEDIA_TYPE,
        SIGNATURE_ANNOTATION,
        add_referrer,
        referrers_tag,
        signature_tag,
    )

    with _client(registry) as client:
        sig = json.loads(client.get_manifest(ref, signature_tag(ref.digest)))
        layer = sig["layers"][0]
        import base64

        raw = bytearray(base64.b64decode(layer["annotations"][SIGNATURE_ANNOTATION]))
        raw[-1] ^= 1
        layer["annotations"][SIGNATURE_ANNOTATION] = base64.b64encode(bytes(raw)).decode()
        data = json.dumps(sig).encode()
        client.push_manifest(ref, signature_tag(ref.digest), data, sig["mediaType"])
        client.push_manifest(ref, referrers_tag(ref.digest), add_referrer(None, data), INDEX_MEDIA_TYPE)
    code, err = _refused(e2e, registry, steward, pinned, "--trust-signer", str(pub))
    assert code == 1 and "not over its payload" in err


def test_a_package_copied_with_its_signature_to_another_repository_is_refused(e2e, registry, pkg):
    """The review's attack: a registry serves, as e2e/prod, a package the trusted key signed as
    e2e/debug (its .sig copied along). The signature verifies but names another repository."""
    from donjon.oci.signature import signature_tag

    steward = e2e.steward()
    key, pub = pkg.keygen("signer")
    debug = parse_reference(pkg.publish(_workload(e2e, steward, "debug-build"), "e2e/debug", key=key))
    prod = parse_reference(f"{registry.host}/e2e/prod:v1")
    with _client(registry) as client:
        for tag in (debug.digest, signature_tag(debug.digest)):
            raw = client.get_manifest(debug, tag)
            doc = json.loads(raw)
            for blob in [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]:
                client.push_blob(prod, blob, client.get_blob(debug, blob, limit=1 << 26))
            client.push_manifest(prod, "v1" if tag == debug.digest else tag, raw, doc["mediaType"])
    code, err = _refused(e2e, registry, steward, f"{prod.name}:v1", "--trust-signer", str(pub))
    assert code == 1 and f"made for another repository ('{debug.name}'" in err and "listening" not in err
    out = pkg.donjon(
        "package", "verify", "--trust-signer", str(pub), "--backend", "nil", "--signed-as", debug.name,
        f"{prod.name}:v1",
    )  # fmt: skip
    assert f"signed for {debug.name}" in out


def test_a_signature_for_another_package_is_refused(e2e, registry, pkg):
    """A valid signature by the trusted key, copied from another package's .sig tag."""
    steward = e2e.steward()
    key, pub = pkg.keygen("signer")
    a = pkg.publish(_workload(e2e, steward, "sig-a"), "e2e/sig-swap", key=key)
    b = pkg.publish(_workload(e2e, steward, "sig-b"), "e2e/sig-swap-b", key=None)
    from donjon.oci.signature import signature_tag

    ra, rb = parse_reference(a), parse_reference(b)
    with _client(registry) as client:
        raw = client.get_manifest(ra, signature_tag(ra.digest))
        doc = json.loads(raw)
        for digest in [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]:
            client.push_blob(rb, digest, client.get_blob(ra, digest, limit=1 << 20))
        client.push_manifest(rb, signature_tag(rb.digest), raw, doc["mediaType"])
    code, err = _refused(e2e, registry, steward, b, "--trust-signer", str(pub))
    assert code == 1 and "for another manifest" in err


def test_a_tampered_layer_is_refused(e2e, registry, pkg):
    steward = e2e.steward()
    w = _workload(e2e, steward, "tampered")
    key, pub = pkg.keygen("signer")
    pinned = pkg.publish(w, "e2e/tampered", key=key)
    module_digest = digest_of(w.wasm.read_bytes())
    blob = pkg.blob_path(module_digest)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    code, err = _refused(e2e, registry, steward, pinned, "--trust-signer", str(pub))
    assert code == 1 and f"blob {module_digest}: digest mismatch" in err


def test_a_manifest_whose_digest_does_not_match_is_refused(e2e, registry, pkg):
    steward = e2e.steward()
    w = _workload(e2e, steward, "bad-manifest")
    key, pub = pkg.keygen("signer")
    pinned = pkg.publish(w, "e2e/bad-manifest", key=key)
    ref = parse_reference(pinned)
    blob = pkg.blob_path(ref.digest)
    blob.write_bytes(blob.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion":2 '))
    code, err = _refused(
        e2e, registry, steward, f"{registry.host}/e2e/bad-manifest:v1", "--trust-signer", str(pub)
    )
    # By tag the registry serves the changed bytes: they are pinned (their own digest) but unsigned.
    assert code == 1 and "unsigned" in err and ref.digest not in err and "listening" not in err
    code, err = _refused(e2e, registry, steward, pinned, "--trust-signer", str(pub))
    assert code == 1 and f"manifest {ref.digest}: digest mismatch" in err


def test_a_config_that_widens_the_run_is_refused(e2e, registry, pkg):
    steward = e2e.steward()
    w = _workload(e2e, steward, "widening", backends=("sim-snp", "nil"))
    steward.set_policy(e2e.policy([e2e.rule(w.digest, SPIFFE_PATH)]))
    key, pub = pkg.keygen("signer")
    pinned = pkg.publish(w, "e2e/widening", key=key)
    code, err = _refused(e2e, registry, steward, pinned, "--trust-signer", str(pub))
    assert code == 1 and "include 'nil', which this run forbids" in err
    assert not [r for r in steward.log_entries() if r.get("decision") == "issued"]
    # package verify checks the config as a run would: refused as on a TEE, fine on nil.
    pkg.donjon("package", "verify", "--trust-signer", str(pub), pinned, expect=1)
    assert "include 'nil'" in pkg.err
    out = pkg.donjon("package", "verify", "--trust-signer", str(pub), "--backend", "nil", pinned)
    assert f"signed for {pinned.split('@')[0]}" in out and "encrypted no" in out


def test_a_registry_that_is_down_is_exit_3_within_the_retry_budget(e2e, registry, pkg, helpers):
    steward = e2e.steward()
    _, pub = pkg.keygen("signer")
    started = time.monotonic()
    code, err = _refused(
        e2e, registry, steward, f"127.0.0.1:{helpers.free_port()}/e2e/down:v1", "--trust-signer", str(pub)
    )
    assert code == 3 and "cannot connect" in err and "after 3 attempts" in err
    assert time.monotonic() - started < 15


def test_wrong_credentials_are_exit_3_with_a_clear_line(e2e, registry, pkg, tmp_path):
    steward = e2e.steward()
    _, pub = pkg.keygen("signer")
    wrong = tmp_path / "wrong.json"
    import base64

    wrong.write_text(
        json.dumps({"auths": {registry.host: {"auth": base64.b64encode(b"donjon:nope").decode()}}})
    )
    keep = e2e.keep(
        ["--backend", "sim-snp", "--steward-ca", str(steward.ca_path), "--trust-signer", str(pub),
         f"oci://{registry.host}/e2e/signed:v1"],
        env={**registry.env, "REGISTRY_AUTH_FILE": str(wrong)},
    )  # fmt: skip
    assert keep.wait() == 3
    assert f"registry {registry.host}: the registry refused the credentials" in keep.err
    assert "nope" not in keep.err


def _client(registry) -> RegistryClient:
    return RegistryClient(
        registry.host, credentials=Credentials(REGISTRY_USER, REGISTRY_PASSWORD), ca_file=str(registry.ca)
    )


def test_a_tag_moved_between_resolve_and_pull_changes_nothing(e2e, registry, pkg):
    """The tag is resolved once; moving it mid-pull does not change what is fetched or verified."""
    steward = e2e.steward()
    key, pub = pkg.keygen("signer")
    first = pkg.publish(_workload(e2e, steward, "moved-1"), "e2e/moved", key=key)
    second_layout = pkg.tmp / "second.oci"
    w2 = _workload(e2e, steward, "moved-2")
    pkg.donjon("package", "build", "--config", str(w2.config), str(w2.wasm), "-o", str(second_layout))
    from donjon.oci.layout import read_layout

    second, second_blobs = read_layout(second_layout, limit=1 << 26)

    class MovingClient(RegistryClient):
        def get_manifest(self, ref, reference, *, limit=1 << 18, within=None):
            data = super().get_manifest(ref, reference, limit=limit, within=within)
            if reference == "v1":  # the resolve: now move the tag to the second package
                for digest, blob in second_blobs.items():
                    self.push_blob(ref, digest, blob)
                self.push_manifest(ref, "v1", second.raw, "application/vnd.oci.image.manifest.v1+json")
            return data

    ref = parse_reference(f"{registry.host}/e2e/moved:v1")
    with MovingClient(
        ref.registry, credentials=Credentials(REGISTRY_USER, REGISTRY_PASSWORD), ca_file=str(registry.ca)
    ) as client:
        pulled = pull(client, ref, trusted=[load_public_key(pub.read_bytes())])
        assert f"{pulled.reference.name}@{pulled.reference.digest}" == first
        assert pulled.module == _module_of(first, client)
        # The tag did move: a new resolve would see the second package.
        assert digest_of(client.get_manifest(ref, "v1")) == second.digest


def _module_of(first: str, client: RegistryClient) -> bytes:
    ref = parse_reference(first)
    manifest = json.loads(client.get_manifest(ref, ref.digest))
    return client.get_blob(ref, manifest["layers"][0]["digest"], limit=1 << 26)


def test_a_layer_over_the_limit_is_refused_before_it_is_fetched(e2e, registry, pkg):
    steward = e2e.steward()
    key, pub = pkg.keygen("signer")
    pinned = pkg.publish(_workload(e2e, steward, "oversize"), "e2e/oversize", key=key)
    with _client(registry) as client, pytest.raises(TooLarge) as e:
        pull(
            client,
            parse_reference(pinned),
            trusted=[load_public_key(pub.read_bytes())],
            limits=Limits(layer=1024),
        )
    assert e.value.limit == 1024 and e.value.what.startswith("layer sha256:")


def test_a_signed_manifest_declaring_a_layer_over_the_runs_limit_is_refused_by_run(e2e, registry, pkg):
    """Through the CLI with its real limits: a manifest declaring a 300 MiB module (over the
    256 MiB per-layer limit) is refused before any layer is fetched, even signed."""
    steward = e2e.steward()
    key, pub = pkg.keygen("signer")
    ref = parse_reference(
        pkg.publish(_workload(e2e, steward, "declared-huge"), "e2e/declared-huge", key=None)
    )
    with _client(registry) as client:
        doc = json.loads(client.get_manifest(ref, ref.digest))
        doc["layers"][0]["size"] = 300 * 1024 * 1024
        raw = json.dumps(doc).encode()
        client.push_manifest(ref, "huge", raw, doc["mediaType"])
    huge = f"{ref.name}@{digest_of(raw)}"
    pkg.donjon("package", "sign", huge, "--key", str(key))
    keep = _run(e2e, registry, steward, f"{ref.name}:huge", "--trust-signer", str(pub))
    assert keep.wait() == 1
    assert "314572800 bytes is over the 268435456-byte limit" in keep.err and "listening" not in keep.err


def test_a_layer_longer_than_its_descriptor_is_cut_at_the_declared_size(e2e, registry, pkg):
    steward = e2e.steward()
    w = _workload(e2e, steward, "longer")
    key, pub = pkg.keygen("signer")
    pinned = pkg.publish(w, "e2e/longer", key=key)
    blob = pkg.blob_path(digest_of(w.wasm.read_bytes()))
    blob.write_bytes(blob.read_bytes() + b"\x00" * 4096)
    with _client(registry) as client, pytest.raises(TooLarge):
        pull(client, parse_reference(pinned), trusted=[load_public_key(pub.read_bytes())])


# -- admission by signer: no digest in the policy ------------------------------------------------


def _signer_policy(e2e, signer: str, package: str | None = None) -> str:
    lines = [
        e2e.policy([]),
        "[[workload]]",
        f'signer = "{signer}"',
        *([f'package = "{package}"'] if package else []),
        f'spiffe_path = "{SPIFFE_PATH}"',
        'platforms = ["simulated"]',
        'sim_dns_names = ["localhost"]',
        'sim_ip = ["127.0.0.1"]',
    ]
    return "\n".join(lines) + "\n"


def test_a_policy_admits_a_signed_update_by_its_signer_and_the_certificate_names_it(e2e, registry, pkg):
    from cryptography import x509

    from donjon.dice import decode_multi_tcb_info
    from donjon.oci.signature import fingerprint
    from donjon.peer import fetch_peer_chain

    steward = e2e.steward()
    key, pub = pkg.keygen("signer")
    fp = fingerprint(load_public_key(pub.read_bytes()))
    # The policy names the signer and the package, never a digest: each signed update deploys.
    steward.set_policy(_signer_policy(e2e, fp, f"{registry.host}/e2e/by-signer"))
    for version in ("1", "2"):
        w = _workload(e2e, steward, f"by-signer-{version}")
        pinned = pkg.publish(w, "e2e/by-signer", key=key)
        keep = _run(e2e, registry, steward, pinned, "--trust-signer", str(pub))
        keep.wait_for("listening on")
        pkg.donjon(
            "peer", "verify", f"127.0.0.1:{w.port}", "--ca", str(steward.ca_path), "--allow-simulated",
            "--workload-digest", w.digest.hex(),
        )  # fmt: skip
        issued = [r for r in steward.log_entries() if r.get("decision") == "issued"][-1]
        assert issued["package"] == {
            "digest": pinned.split("@")[1], "signer": fp, "name": f"{registry.host}/e2e/by-signer"
        }  # fmt: skip
        assert issued["rule"] == f"signer {fp} (workload {w.digest.hex()})"
        # The certificate names the package and its signer (DICE entries, layer 2).
        leaf = fetch_peer_chain("127.0.0.1", w.port, timeout=10).chain[0]
        der = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier("2.23.133.5.4.5")).value.value
        layer2 = {e.model: e.fwids[0].digest.hex() for e in decode_multi_tcb_info(der) if e.layer == 2}
        assert layer2 == {"package": pinned.split(":")[-1], "package-signer": fp.removeprefix("sha256:")}
        keep.stop()


def test_a_signer_rule_refuses_another_signer_and_another_package_name(e2e, registry, pkg):
    from donjon.oci.signature import fingerprint

    steward = e2e.steward()
    key, pub = pkg.keygen("signer")
    other_key, other_pub = pkg.keygen("other")
    fp = fingerprint(load_public_key(pub.read_bytes()))
    steward.set_policy(_signer_policy(e2e, fp, f"{registry.host}/e2e/named"))
    # Signed by another key (which the Keep trusts, the Steward does not).
    w = _workload(e2e, steward, "other-signer")
    pinned = pkg.publish(w, "e2e/named", key=other_key)
    code, err = _refused(e2e, registry, steward, pinned, "--trust-signer", str(other_pub))
    assert code == 1 and "nor is its package's signer" in err
    # Signed by the right key, under another name.
    w = _workload(e2e, steward, "other-name")
    pinned = pkg.publish(w, "e2e/renamed", key=key)
    code, err = _refused(e2e, registry, steward, pinned, "--trust-signer", str(pub))
    assert code == 1 and "nor is its package's signer" in err
    refused = [r for r in steward.log_entries() if r.get("decision") == "refused"]
    assert refused[-1]["package"]["name"] == f"{registry.host}/e2e/renamed"


# -- encrypted packages (the key from issue 11's secret store) ------------------------------------


def _publish_sealed(pkg, w, repo: str, key: Path, *, key_file: Path | None = None, tag: str = "v1") -> str:
    layout = pkg.tmp / f"{repo.replace('/', '-')}-{tag}.oci"
    key_file = key_file or pkg.tmp / "app.key"
    pkg.donjon(
        "package", "build", "--config", str(w.config), str(w.wasm), "-o", str(layout),
        "--encrypt-to", "steward:app-key", "--key-out", str(key_file),
    )  # fmt: skip
    assert "donjon steward secret put app-key" in pkg.err
    assert key_file.stat().st_mode & 0o777 == 0o600
    pinned = pkg.donjon("package", "push", str(layout), f"{pkg.registry.host}/{repo}:{tag}")
    pkg.donjon("package", "sign", pinned, "--key", str(key))
    return pinned


class ServedSteward:
    """The real ``donjon steward serve`` (HTTPS with mutual TLS, the secret store) in a child
    process, on files prepared like the local Steward's (trusting the simulated vendors).

    Encrypted packages need it: the key is a secret, released only over mutual TLS, which the
    in-process ``LocalSteward`` does not serve. A policy change is reloaded with SIGHUP.
    """

    def __init__(self, directory: Path, sim_vendor_dir: Path) -> None:
        from donjon.demo.steward import LocalSteward

        files = LocalSteward(directory, sim_vendor_dir=sim_vendor_dir, policy="version = 1\n")
        self.ca_path, self.config_path, self.policy_path = files.ca_path, files.config_path, files.policy_path
        self.process = StewardProcess(self.config_path)
        self.url = self.process.url

    def set_policy(self, text: str) -> None:
        def reloads() -> int:
            return sum('"policy_reload"' in line for line in list(self.process.stderr))

        before = reloads()
        self.policy_path.write_text(text)
        self.process.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + TIMEOUT
        while reloads() == before:  # the reload's log line is the only signal a child gives
            assert time.monotonic() < deadline, self.process.stderr
            time.sleep(0.02)
        assert '"result": "ok"' in [line for line in self.process.stderr if '"policy_reload"' in line][-1]

    def log_entries(self) -> list[dict]:
        out = run_donjon("steward", "log", "show", "--config", str(self.config_path), "--format", "json")
        assert out.returncode == 0, out.stderr
        return [json.loads(line)["record"] for line in out.stdout.decode().splitlines()]


@pytest.fixture
def served(tmp_path: Path, sim_vendor_dir: Path):
    steward = ServedSteward(tmp_path / "served-steward", sim_vendor_dir)
    try:
        yield steward
    finally:
        steward.process.stop()


SECRETSHA = Path(__file__).resolve().parents[2] / "examples" / "secretsha" / "secretsha.wasm"


def _reader(pkg, steward, label: str) -> SimpleNamespace:
    """A workload to encrypt: examples/secretsha (marked ``label`` by a custom section) serving the
    SHA-256 of its packaged file ``/data/note.txt`` over TLS, once, then exiting 0."""
    from donjon.config import parse_config, workload_digest

    app = pkg.tmp / f"app-{label}"
    (app / "data").mkdir(parents=True)
    note = f"plaintext note of {label} {os.urandom(8).hex()}".encode()
    (app / "data" / "note.txt").write_bytes(note)
    module = unique_module(SECRETSHA.read_bytes(), label)
    (app / "app.wasm").write_bytes(module)
    port = free_port()
    config = app / "Donjon.toml"
    config.write_text(
        f'steward = "{steward.url}"\nbackends = ["sim-snp"]\n'
        '[env]\nSECRET_FILE = "/data/note.txt"\nSECRET_EXIT_AFTER = "1"\n'
        + "".join(f'[[files]]\nkind = "{k}"\n' for k in ("stdin", "stdout", "stderr"))
        + '[[files]]\nkind = "dir"\nname = "data"\npath = "data"\nguest_path = "/data"\n'
        f'[[files]]\nkind = "listen"\nname = "web"\naddr = "127.0.0.1"\nport = {port}\nprot = "tls"\n'
    )
    digest = workload_digest(module, parse_config(config.read_bytes()).config)
    marker = f"donjon-test{label}".encode()  # the module's own custom section
    return SimpleNamespace(
        config=config, wasm=app / "app.wasm", port=port, digest=digest, note=note, marker=marker
    )


def _sealed_policy(e2e, signer: str, package: str, *, secret_paths: tuple[str, ...] = (SPIFFE_PATH,)) -> str:
    """Admit by signer (no digest), and release app-key by SPIFFE path: both survive an update."""
    paths = ", ".join(f'"{p}"' for p in secret_paths)
    return _signer_policy(e2e, signer, package) + (
        f'\n[[secret]]\nname = "app-key"\nspiffe_paths = [{paths}]\nplatforms = ["simulated"]\n'
    )


def _ask(w, steward) -> str:
    """Connect over TLS, verify the Keep's certificate names ``w``'s workload digest, read the answer."""
    import datetime
    import socket
    import ssl

    from cryptography import x509

    from donjon.peer.verify import PeerExpectation, verify_peer

    context = ssl.create_default_context(cafile=str(steward.ca_path))
    context.check_hostname = False  # a /sim certificate, named by its SPIFFE ID; the CA is pinned
    with (
        socket.create_connection(("127.0.0.1", w.port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        ca = x509.load_pem_x509_certificate(steward.ca_path.read_bytes())
        identity = verify_peer(
            [x509.load_der_x509_certificate(der)],
            [ca],
            PeerExpectation.of([], workload_digest=w.digest, allow_simulated=True),
            at=datetime.datetime.now(datetime.UTC),
        )
        assert identity.workload_digest == w.digest and str(identity.spiffe_id).endswith(SPIFFE_PATH)
        data = b""
        while chunk := tls.recv(4096):
            data += chunk
    return data.decode().strip()


def _scan(root: Path, needles: list[bytes]) -> list[str]:
    """Every file under ``root`` holding one of ``needles`` (``path: #i``)."""
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: #{i}" for i, n in enumerate(needles) if n in data]
    return found


def _sealed_run(
    e2e,
    registry,
    steward,
    reference: str,
    pub: Path,
    keep_tmp: Path,
    cache: Path,
    modules: Path | None = None,
):
    """The Keep, with its temporary folder and package cache where the test looks; ``modules``: a
    compiled-module cache it is offered (``--cache-dir``)."""
    keep_tmp.mkdir(exist_ok=True)
    module_cache = ["--cache-dir", str(modules)] if modules is not None else []
    return e2e.keep(
        [
            "--backend", "sim-snp", "--steward-ca", str(steward.ca_path), "--attest-timeout", "5",
            "--package-cache", str(cache), *module_cache, "--trust-signer", str(pub), f"oci://{reference}",
        ],
        env={**registry.env, "TMPDIR": str(keep_tmp)},
        no_cache=modules is None,
    )  # fmt: skip


def _setup_sealed(e2e, registry, pkg, served, repo: str):
    from donjon.oci.signature import fingerprint

    key, pub = pkg.keygen("signer")
    served.set_policy(
        _sealed_policy(e2e, fingerprint(load_public_key(pub.read_bytes())), f"{registry.host}/{repo}")
    )
    return key, pub


def test_an_encrypted_package_runs_with_the_key_the_steward_releases_and_only_ciphertext_leaves_it(
    e2e, registry, pkg, served
):
    from donjon.oci.memdir import MEMORY_FILESYSTEMS, filesystem_type

    key, pub = _setup_sealed(e2e, registry, pkg, served, "e2e/sealed")
    w = _reader(pkg, served, "sealed-v1")
    pinned = _publish_sealed(pkg, w, "e2e/sealed", key)
    pkg.donjon("steward", "secret", "put", "app-key", "--file", str(pkg.tmp / "app.key"),
               "--config", str(served.config_path))  # fmt: skip
    needles = [w.marker, w.note]
    assert w.marker in w.wasm.read_bytes()
    # The registry stores ciphertext only: neither the module's own bytes nor the packaged file.
    assert _scan(registry.root / "data", needles) == []

    keep_tmp, cache, modules = pkg.tmp / "keep-tmp", pkg.tmp / "package-cache", pkg.tmp / "modules"
    keep = _sealed_run(e2e, registry, served, f"{registry.host}/e2e/sealed:v1", pub, keep_tmp, cache, modules)
    line = keep.wait_for("package decrypted with Steward secret app-key")
    plain = Path(line.split("its files in ")[1].split(" (memory")[0])
    # The decrypted file exists only on a memory filesystem, for the run's duration.
    with open("/proc/self/mountinfo") as stream:
        assert filesystem_type(stream.read(), str(plain)) in MEMORY_FILESYSTEMS
    assert (plain / "data" / "note.txt").read_bytes() == w.note
    keep.wait_for("listening on")
    # The guest read the decrypted file: its answer is the file's SHA-256.
    assert _ask(w, served) == hashlib.sha256(w.note).hexdigest()
    assert keep.wait() == 0
    assert f"package {pinned}, signed by" in keep.err and "[SIMULATED TEE]" in keep.err
    assert not plain.exists()  # removed when the run ended
    # Nothing of the plaintext reached the Keep's disk: its temporary folder, the package cache
    # (which holds the ciphertext blobs, by digest).
    assert any(cache.rglob("*")) and _scan(cache, needles) == [] and _scan(keep_tmp, needles) == []
    # Nor the compiled module (the decrypted code as machine code): the module cache stays unused.
    assert "module cache off for an encrypted package" in keep.err
    assert not [p for p in modules.rglob("*") if p.is_file()]
    released = [r for r in served.log_entries() if r.get("path") == "secret"]
    assert [(r["decision"], r["secret"], r["workload_digest"]) for r in released] == [
        ("released", "app-key", w.digest.hex())
    ]


def test_a_signed_encrypted_update_gets_its_key_without_a_policy_edit(e2e, registry, pkg, served):
    key, pub = _setup_sealed(e2e, registry, pkg, served, "e2e/sealed-update")
    policy = served.policy_path.read_bytes()
    answers = []
    for version in ("v1", "v2"):
        # The same tag, the same key file (--key-out reuses it), the same signer; another module
        # and another file, so another workload digest.
        w = _reader(pkg, served, f"update-{version}")
        pinned = _publish_sealed(pkg, w, "e2e/sealed-update", key, tag="latest")
        if version == "v1":
            pkg.donjon("steward", "secret", "put", "app-key", "--file", str(pkg.tmp / "app.key"),
                       "--config", str(served.config_path))  # fmt: skip
        keep = _sealed_run(
            e2e, registry, served, f"{registry.host}/e2e/sealed-update:latest", pub,
            pkg.tmp / "keep-tmp", pkg.tmp / f"cache-{version}",
        )  # fmt: skip
        keep.wait_for("listening on")
        answers.append(_ask(w, served))
        assert keep.wait() == 0 and f"package {pinned}," in keep.err
        assert answers[-1] == hashlib.sha256(w.note).hexdigest()
    assert served.policy_path.read_bytes() == policy  # no edit between the two
    released = [r for r in served.log_entries() if r.get("path") == "secret"]
    assert [r["decision"] for r in released] == ["released", "released"]
    assert len({r["workload_digest"] for r in released}) == 2


def test_an_encrypted_package_on_a_keep_the_steward_refuses_decrypts_nothing(e2e, registry, pkg):
    steward = e2e.steward()  # its policy admits no workload
    w = _workload(e2e, steward, "sealed-refused")
    key, pub = pkg.keygen("signer")
    pinned = _publish_sealed(pkg, w, "e2e/sealed-refused", key)
    # The registry holds ciphertext only: this module's own bytes (its custom section, which no
    # other test's module has) are nowhere in its storage.
    assert b"donjon-testsealed-refused" in w.wasm.read_bytes()
    assert _scan(registry.root / "data", [b"donjon-testsealed-refused"]) == []
    code, err = _refused(e2e, registry, steward, pinned, "--trust-signer", str(pub))
    assert code == 1 and "attestation refused by the Steward" in err
    assert "encrypted (the key is Steward secret app-key" in err
    # Stopped before the key was asked for: no certificate, so no secret request; no guest.
    assert "package decrypted" not in err and "package key" not in err and "listening on" not in err
    assert not [r for r in steward.log_entries() if r.get("decision") == "issued"]


def test_an_attested_keep_without_the_key_decrypts_nothing(e2e, registry, pkg, served):
    """Admitted and attested, but the [[secret]] rule covers another workload: the Steward refuses
    the key (exit 1, a refusal - as for a config's [[secrets]]), and the run stops before the guest."""
    from donjon.oci.signature import fingerprint

    key, pub = pkg.keygen("signer")
    fp = fingerprint(load_public_key(pub.read_bytes()))
    served.set_policy(
        _sealed_policy(e2e, fp, f"{registry.host}/e2e/sealed-no-key", secret_paths=("/someone/else",))
    )
    w = _reader(pkg, served, "sealed-no-key")
    pinned = _publish_sealed(pkg, w, "e2e/sealed-no-key", key)
    pkg.donjon("steward", "secret", "put", "app-key", "--file", str(pkg.tmp / "app.key"),
               "--config", str(served.config_path))  # fmt: skip
    keep_tmp = pkg.tmp / "keep-tmp"
    keep = _sealed_run(e2e, registry, served, pinned, pub, keep_tmp, pkg.tmp / "cache")
    assert keep.wait() == 1
    err = keep.err
    assert "attested by the Steward" in err
    assert (
        "donjon: the package key: secret app-key: refused by the Steward: secret.spiffe_id" in err
        and "nothing decrypted, serving nothing" in err
    )
    assert "package decrypted" not in err and "listening on" not in err
    assert refuses_connections(w.port)
    # The key never left the Steward: its log says refused, and no plaintext exists anywhere.
    secret = [r for r in served.log_entries() if r.get("path") == "secret"]
    assert [(r["decision"], r["check"]) for r in secret] == [("refused", "secret.spiffe_id")]
    assert _scan(keep_tmp, [w.marker, w.note]) == []


def test_a_released_key_that_is_not_the_packages_runs_nothing(e2e, registry, pkg, served):
    """The operator stored the wrong file (another build's key) as the secret: one clear line,
    exit 1 (the signed layers do not open under it - a refusal no retry mends), no guest."""
    key, pub = _setup_sealed(e2e, registry, pkg, served, "e2e/sealed-wrong-key")
    w = _reader(pkg, served, "sealed-wrong-key")
    pinned = _publish_sealed(pkg, w, "e2e/sealed-wrong-key", key)
    other = pkg.tmp / "other.key"
    other.write_bytes(os.urandom(32))
    pkg.donjon("steward", "secret", "put", "app-key", "--file", str(other),
               "--config", str(served.config_path))  # fmt: skip
    keep_tmp = pkg.tmp / "keep-tmp"
    keep = _sealed_run(e2e, registry, served, pinned, pub, keep_tmp, pkg.tmp / "cache")
    assert keep.wait() == 1
    failure = [line for line in keep.stderr if "Steward secret app-key" in line and "decrypt" in line]
    assert failure == [
        "donjon: module: does not decrypt under Steward secret app-key: not the key it was encrypted "
        "to (store the key file of the package's build as secret app-key); nothing decrypted, "
        "serving nothing"
    ]
    assert "package decrypted" not in keep.err and "listening on" not in keep.err
    assert refuses_connections(w.port)
    assert [r["decision"] for r in served.log_entries() if r.get("path") == "secret"] == ["released"]
    assert _scan(keep_tmp, [w.marker, w.note]) == []


def test_encrypt_to_needs_a_key_file_and_reuses_it(pkg, tmp_path):
    w_config = tmp_path / "Donjon.toml"
    w_config.write_text('[[files]]\nkind = "stdout"\n')
    wasm = str(Path(__file__).resolve().parents[2] / "examples" / "hello" / "hello.wasm")
    pkg.donjon("package", "build", "--config", str(w_config), wasm, "-o", str(tmp_path / "a.oci"),
               "--encrypt-to", "steward:k", expect=2)  # fmt: skip
    pkg.donjon("package", "build", "--config", str(w_config), wasm, "-o", str(tmp_path / "a.oci"),
               "--encrypt-to", "age:k", "--key-out", str(tmp_path / "k"), expect=2)  # fmt: skip
    keys = []
    for _ in range(2):
        pkg.donjon("package", "build", "--config", str(w_config), wasm, "-o", str(tmp_path / "a.oci"),
                   "--encrypt-to", "steward:k", "--key-out", str(tmp_path / "k"))  # fmt: skip
        keys.append((tmp_path / "k").read_bytes())
    first = keys[0]
    assert len(first) == 32 and keys[1] == first


def test_a_package_never_falls_back_to_nil_by_itself(e2e, registry, pkg):
    steward = e2e.steward()
    w = _workload(e2e, steward, "auto-nil", backends=None)
    key, pub = pkg.keygen("signer")
    pinned = pkg.publish(w, "e2e/auto-nil", key=key)
    keep = e2e.keep(["--backend", "auto", "--trust-signer", str(pub), f"oci://{pinned}"], env=registry.env)
    assert keep.wait() == 1
    assert "a package runs on nil only with --backend nil" in keep.err


def test_print_digest_of_a_package_is_its_workload_digest_even_encrypted(e2e, registry, pkg, capsys):
    steward = e2e.steward()
    w = _workload(e2e, steward, "print-digest")
    key, pub = pkg.keygen("signer")
    for pinned in (
        pkg.publish(w, "e2e/print-digest", key=key),
        _publish_sealed(pkg, w, "e2e/print-sealed", key),
    ):
        out = pkg.donjon("run", "--print-digest", "--trust-signer", str(pub), f"oci://{pinned}")
        assert out == w.digest.hex()


def test_a_download_slower_than_the_total_budget_is_abandoned(e2e, registry, pkg):
    """The whole download is bounded in time, not only each read (a trickling registry)."""
    from donjon.oci.errors import RegistryUnavailable
    from donjon.oci.registry import RetryPolicy

    steward = e2e.steward()
    w = _workload(e2e, steward, "slow")
    pinned = parse_reference(pkg.publish(w, "e2e/slow", key=None))
    client = RegistryClient(
        registry.host,
        credentials=Credentials(REGISTRY_USER, REGISTRY_PASSWORD),
        ca_file=str(registry.ca),
        retry=RetryPolicy(total=0.0),
    )
    with client, pytest.raises(RegistryUnavailable, match="not received within"):
        client.get_blob(pinned, digest_of(w.wasm.read_bytes()), limit=1 << 24)


def test_a_signed_encrypted_update_gets_its_key_by_a_signers_secret_rule(e2e, registry, pkg, served):
    """docs/secrets.md "By package signer": the key bound to the CI key itself (no SPIFFE path, no
    digest). Two signed versions get it from the real Keep with no policy edit; the release log
    names the rule, the signer and each version's package digest."""
    from donjon.oci.signature import fingerprint

    key, pub = pkg.keygen("signer")
    fp = fingerprint(load_public_key(pub.read_bytes()))
    repo = "e2e/sealed-by-signer"
    served.set_policy(
        _signer_policy(e2e, fp, f"{registry.host}/{repo}")
        + f'\n[[secret]]\nname = "app-key"\nsigners = ["{fp}"]\npackages = ["{registry.host}/{repo}"]\n'
        + 'platforms = ["simulated"]\n'
    )
    digests = []
    for version in ("v1", "v2"):
        w = _reader(pkg, served, f"by-signer-{version}")
        pinned = _publish_sealed(pkg, w, repo, key, tag="latest")
        digests.append(pinned.split("@")[1])
        if version == "v1":
            pkg.donjon("steward", "secret", "put", "app-key", "--file", str(pkg.tmp / "app.key"),
                       "--config", str(served.config_path))  # fmt: skip
        keep = _sealed_run(
            e2e, registry, served, f"{registry.host}/{repo}:latest", pub,
            pkg.tmp / "keep-tmp", pkg.tmp / f"cache-by-signer-{version}",
        )  # fmt: skip
        keep.wait_for("listening on")
        assert _ask(w, served) == hashlib.sha256(w.note).hexdigest()
        assert keep.wait() == 0
    released = [r for r in served.log_entries() if r.get("path") == "secret"]
    assert [(r["decision"], r["rule"], r["matched"]) for r in released] == [
        ("released", "secret app-key #1", ["signers", "packages"])
    ] * 2
    assert [r["package"]["digest"] for r in released] == digests
    assert {r["package"]["signer"] for r in released} == {fp}
