"""Signatures (cosign's key-based format), package evidence in CSRs and policy rules by signer."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from donjon.oci.admission import encode_package_evidence, verify_package_evidence
from donjon.oci.artifact import build_manifest, digest_of
from donjon.oci.errors import MalformedPackage, SignatureError, TooLarge
from donjon.oci.signature import (
    MAX_PAYLOAD_BYTES,
    MAX_SIGNATURES,
    PAYLOAD_MEDIA_TYPE,
    SIGNATURE_ANNOTATION,
    fingerprint,
    make_payload,
    parse_signatures,
    sign_payload,
    signature_layers,
    signature_manifest,
    signature_tag,
    verify_signatures,
)

DIGEST = "sha256:" + "ab" * 32


def _signed(key, digest: str = DIGEST, reference: str = "r.example/app"):
    payload = make_payload(reference, digest)
    raw, blobs = signature_manifest([(payload, sign_payload(key, payload))])
    return [(sig, blobs[sig.payload.digest]) for sig in parse_signatures(raw)]


def test_the_payload_and_the_manifest_have_cosigns_shape():
    key = ec.generate_private_key(ec.SECP256R1())
    payload = make_payload("r.example/app", DIGEST)
    assert json.loads(payload) == {
        "critical": {
            "identity": {"docker-reference": "r.example/app"},
            "image": {"docker-manifest-digest": DIGEST},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    raw, blobs = signature_manifest([(payload, sign_payload(key, payload))])
    doc = json.loads(raw)
    layer = doc["layers"][0]
    assert layer["mediaType"] == PAYLOAD_MEDIA_TYPE and blobs[layer["digest"]] == payload
    assert base64.b64decode(layer["annotations"][SIGNATURE_ANNOTATION])
    assert json.loads(blobs[doc["config"]["digest"]])["rootfs"]["diff_ids"] == [layer["digest"]]
    assert signature_tag(DIGEST) == "sha256-" + "ab" * 32 + ".sig"


@pytest.mark.parametrize(
    "make", [lambda: ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate]
)
def test_a_trusted_signature_verifies_and_names_its_signer(make):
    key = make()
    verified = verify_signatures(DIGEST, _signed(key), [key.public_key()])
    assert verified.signer == fingerprint(key.public_key())
    assert verified.docker_reference == "r.example/app"


def test_unsigned_untrusted_and_other_digest_are_refused_by_name():
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureError, match="unsigned"):
        verify_signatures(DIGEST, [], [key.public_key()])
    with pytest.raises(SignatureError, match="not trusted"):
        verify_signatures(DIGEST, _signed(other), [key.public_key()])
    with pytest.raises(SignatureError, match="another manifest"):
        verify_signatures(DIGEST, _signed(key, "sha256:" + "cd" * 32), [key.public_key()])


def test_a_flipped_bit_in_the_payload_never_verifies():
    key = ec.generate_private_key(ec.SECP256R1())
    ((sig, payload),) = _signed(key)
    for i in range(len(payload)):
        flipped = bytearray(payload)
        flipped[i] ^= 1
        with pytest.raises((SignatureError, MalformedPackage)):
            verify_signatures(DIGEST, [(sig, bytes(flipped))], [key.public_key()])


# -- package evidence (the CSR attribute) ---------------------------------------------------------


def _evidence(key, workload: bytes = b"\x01" * 32, *, reference: str = "r.example/app"):
    manifest, _ = build_manifest(b"\x00asm\x01\x00\x00\x00", b"", [], workload)
    payload = make_payload(reference, manifest.digest)
    return manifest, encode_package_evidence(
        manifest.raw, payload, sign_payload(key, payload), key.public_key()
    )


def test_package_evidence_verifies_against_the_csr_workload_digest():
    key = ec.generate_private_key(ec.SECP256R1())
    manifest, der = _evidence(key)
    admitted = verify_package_evidence(der, b"\x01" * 32)
    assert (admitted.digest, admitted.signer, admitted.reference) == (
        manifest.digest,
        fingerprint(key.public_key()),
        "r.example/app",
    )
    with pytest.raises(SignatureError, match="is not the CSR's"):
        verify_package_evidence(der, b"\x02" * 32)


def test_package_evidence_with_a_swapped_manifest_does_not_verify():
    key = ec.generate_private_key(ec.SECP256R1())
    other, _ = build_manifest(b"\x00asm\x01\x00\x00\x00", b"#", [], b"\x01" * 32)
    payload = make_payload("r.example/app", digest_of(b"not the manifest"))
    swapped = encode_package_evidence(other.raw, payload, sign_payload(key, payload), key.public_key())
    with pytest.raises(SignatureError, match="another manifest"):
        verify_package_evidence(swapped, b"\x01" * 32)


@pytest.mark.parametrize("der", [b"", b"\x30\x00", b"\x04\x01\x00", b"\x30" + b"\x84\xff\xff\xff\xff"])
def test_malformed_package_evidence_is_refused(der):
    with pytest.raises((MalformedPackage, TooLarge)):
        verify_package_evidence(der, b"\x01" * 32)


def test_a_csr_carries_the_package_evidence_through_build_and_parse():
    from donjon.csr import build_csr, parse_native_csr
    from donjon.oids import EVIDENCE_NONE

    key = ec.generate_private_key(ec.SECP256R1())
    _, der = _evidence(key)
    csr = build_csr(
        key, statements=[(EVIDENCE_NONE, b"")], workload_digest=b"\x01" * 32, nonce=b"n", package=der
    )
    assert parse_native_csr(csr).package == der
    plain = build_csr(key, statements=[(EVIDENCE_NONE, b"")], workload_digest=b"\x01" * 32, nonce=b"n")
    assert parse_native_csr(plain).package is None


# -- policy rules by signer -----------------------------------------------------------------------


def _policy(body: str, files: dict[str, bytes] | None = None):
    from donjon.steward.policy import parse_policy

    text = (
        'version = 1\nallow_unattested = true\n[[workload]]\nspiffe_path = "/app"\n'
        'platforms = ["unattested"]\n'
    )
    return parse_policy(text + body, read_file=lambda name: (files or {})[name])


def test_a_rule_by_fingerprint_admits_that_signer_and_that_package_name_only():
    from donjon.steward.errors import Refused

    fp = "sha256:" + "ab" * 32
    policy = _policy(f'signer = "{fp}"\npackage = "r.example/app"\n')
    decision = policy.decide(None, b"\x01" * 32, package_signer=fp, package_name="r.example/app")
    assert decision.rule == f"signer {fp} (workload {'01' * 32})"
    for signer, name in ((fp, "r.example/other"), ("sha256:" + "cd" * 32, "r.example/app"), (None, None)):
        with pytest.raises(Refused, match="not in the policy"):
            policy.decide(None, b"\x01" * 32, package_signer=signer, package_name=name)


def test_a_rule_by_key_file_pins_its_fingerprint_and_the_policy_digest_covers_the_key():
    from cryptography.hazmat.primitives import serialization

    def pem(key):
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    one, two = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    a = _policy('signer = "signer.pub"\n', {"signer.pub": pem(one)})
    b = _policy('signer = "signer.pub"\n', {"signer.pub": pem(two)})
    assert a.workloads[0].signer == fingerprint(one.public_key())
    assert a.digest != b.digest


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (f'signer = "sha256:{"ab" * 32}"\ndigest = "{"00" * 32}"\n', "not both"),
        (f'digest = "{"00" * 32}"\npackage = "r.example/app"\n', "package needs signer"),
        ('signer = "sha256:abc"\n', "fingerprint"),
        (f'signer = "sha256:{"ab" * 32}"\npackage = "noslash"\n', "REGISTRY/REPOSITORY"),
    ],
)
def test_a_bad_signer_rule_is_a_policy_error(body, match):
    from donjon.steward.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        _policy(body)


def test_signatures_interoperate_with_openssl_as_cosigns_examples_show(tmp_path):
    """cosign's EXAMPLES.md "Sign With OpenSSL, Verify With Cosign": an ECDSA P-256 key from
    ``openssl ecparam``, ``openssl dgst -sha256 -sign`` over the payload, base64. Donjon verifies
    such a signature, and ``openssl dgst -sha256 -verify`` verifies Donjon's."""
    import shutil
    import subprocess

    from cryptography.hazmat.primitives import serialization

    from donjon.oci.signature import load_private_key, load_public_key

    openssl = shutil.which("openssl")
    assert openssl is not None
    run = lambda *a: subprocess.run([openssl, *a], check=True, capture_output=True, cwd=tmp_path)  # noqa: E731
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "openssl.key")
    run("ec", "-in", "openssl.key", "-pubout", "-out", "openssl.pub")
    payload = make_payload("r.example/app", DIGEST)
    (tmp_path / "payload.json").write_bytes(payload)
    run("dgst", "-sha256", "-sign", "openssl.key", "-out", "payload.sig", "payload.json")
    raw, blobs = signature_manifest([(payload, (tmp_path / "payload.sig").read_bytes())])
    pairs = [(s, blobs[s.payload.digest]) for s in parse_signatures(raw)]
    public = load_public_key((tmp_path / "openssl.pub").read_bytes())
    assert verify_signatures(DIGEST, pairs, [public]).signer == fingerprint(public)

    key = load_private_key((tmp_path / "openssl.key").read_bytes())
    (tmp_path / "donjon.sig").write_bytes(sign_payload(key, payload))
    run("dgst", "-sha256", "-verify", "openssl.pub", "-signature", "donjon.sig", "payload.json")
    assert key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize(
    "change",
    [
        {"digest": "sha256:../../x"},
        {"digest": "sha256:" + "AB" * 32},
        {"digest": "sha256:" + "ab" * 32 + "/../y"},
        {"size": True},
        {"size": -1},
        {"size": MAX_PAYLOAD_BYTES + 1},
    ],
    ids=["path", "uppercase", "suffix", "bool-size", "negative-size", "oversize"],
)
def test_a_hostile_payload_descriptor_is_not_a_signature(change):
    key = ec.generate_private_key(ec.SECP256R1())
    payload = make_payload("r.example/app", DIGEST)
    raw, _ = signature_manifest([(payload, sign_payload(key, payload))])
    doc = json.loads(raw)
    assert len(parse_signatures(raw)) == 1
    doc["layers"][0].update(change)
    assert parse_signatures(json.dumps(doc).encode()) == ()


def test_re_signing_keeps_other_signers_layers_verbatim_and_the_diff_ids_consistent():
    """A cosign keyless layer carries a certificate, chain and bundle besides the signature; a
    layer of another format is no signature of ours but is kept too. A layer that is no
    descriptor would make the manifest invalid: it is dropped."""
    mine = ec.generate_private_key(ec.SECP256R1())
    payload = make_payload("r.example/app", DIGEST)
    keyless = {
        "mediaType": PAYLOAD_MEDIA_TYPE,
        "digest": digest_of(payload),
        "size": len(payload),
        "annotations": {
            SIGNATURE_ANNOTATION: base64.b64encode(b"keyless signature").decode(),
            "dev.sigstore.cosign/certificate": "-----BEGIN CERTIFICATE-----\n...",
            "dev.sigstore.cosign/chain": "-----BEGIN CERTIFICATE-----\n...",
            "dev.sigstore.cosign/bundle": json.dumps({"SignedEntryTimestamp": "x" * 6000}),
        },
    }
    other_format = {"mediaType": "application/vnd.example.other", "digest": "sha256:" + "cd" * 32, "size": 7}
    earlier = json.dumps({"layers": [keyless, other_format, {"digest": "sha256:../x"}, "junk"]}).encode()
    layers = signature_layers(earlier)
    assert [layer for layer, _ in layers] == [keyless, other_format]
    assert layers[0][1] is not None and layers[1][1] is None
    raw, blobs = signature_manifest(
        [(payload, sign_payload(mine, payload))], kept=[layer for layer, _ in layers]
    )
    doc = json.loads(raw)
    assert doc["layers"][:2] == [keyless, other_format]
    assert doc["layers"][2]["annotations"].keys() == {SIGNATURE_ANNOTATION}
    config = json.loads(blobs[doc["config"]["digest"]])
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in doc["layers"]]
    assert verify_signatures(DIGEST, [(s, payload) for s in parse_signatures(raw)], [mine.public_key()])


def test_re_signing_leaves_room_for_the_new_signature_within_what_a_verifier_reads():
    key = ec.generate_private_key(ec.SECP256R1())
    payload = make_payload("r.example/app", DIGEST)
    raw, _ = signature_manifest([(payload, sign_payload(key, payload))] * MAX_SIGNATURES)
    kept = [layer for layer, _ in signature_layers(raw)]
    assert len(kept) == MAX_SIGNATURES - 1
    again, _ = signature_manifest([(payload, sign_payload(key, payload))], kept=kept)
    assert len(parse_signatures(again)) == MAX_SIGNATURES
