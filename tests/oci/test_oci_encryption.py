"""Encrypted packages: sealing, opening and the manifest's rules.

The Keep's side - the key released by a Steward, refused, or the wrong one - is proven end to end
in tests/e2e/test_e2e_oci.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from donjon.config import parse_config
from donjon.oci.artifact import TreeEntry, build_manifest, canonical_json, digest_of, parse_manifest
from donjon.oci.encryption import new_content_key, open_layer, parse_key_target, seal_layer
from donjon.oci.errors import BadReference, KeyMismatch, MalformedPackage
from donjon.oci.pull import PulledPackage
from donjon.oci.reference import parse_reference
from donjon.oci.unpack import package_config, unseal

ROOT = Path(__file__).resolve().parents[2]
MODULE = (ROOT / "examples" / "hello" / "hello.wasm").read_bytes()
CONFIG = b'[[files]]\nkind = "dir"\nname = "d"\npath = "d"\nguest_path = "/d"\n'


def _sealed(key: bytes):
    from donjon.config import workload_digest

    config = parse_config(CONFIG).config
    trees = [TreeEntry("d", "dir", b"tar bytes")]
    manifest, blobs = build_manifest(
        MODULE, CONFIG, trees, workload_digest(MODULE, config), seal=("steward:app-key", key)
    )
    pulled = PulledPackage(
        parse_reference("r.example/app@" + manifest.digest),
        manifest,
        blobs[manifest.module.digest],
        blobs[manifest.config.digest],
        (TreeEntry("d", "dir", blobs[manifest.trees[0].digest]),),
        None,
    )
    return manifest, blobs, pulled


def test_an_encrypted_package_hides_the_module_and_files_but_not_the_config():
    key = new_content_key()
    manifest, blobs, _ = _sealed(key)
    assert manifest.sealed_to == "app-key"
    assert MODULE[8:64] not in blobs[manifest.module.digest]
    assert b"tar bytes" not in blobs[manifest.trees[0].digest]
    assert blobs[manifest.config.digest] == CONFIG
    doc = json.loads(manifest.raw)
    assert doc["layers"][0]["mediaType"].endswith("+wasm+encrypted")
    assert doc["layers"][0]["annotations"]["dev.donjon.plaintext.digest"] == digest_of(MODULE)
    assert doc["annotations"]["dev.donjon.encryption.key"] == "steward:app-key"


def test_the_workload_digest_is_known_before_decryption_and_the_plaintext_is_checked_after():
    key = new_content_key()
    _, _, pulled = _sealed(key)
    config = package_config(pulled)  # from the plaintext digest annotation: nothing decrypted yet
    assert config.files[0].kind == "dir"
    opened = unseal(pulled, key)
    assert opened.module == MODULE and opened.trees[0].blob == b"tar bytes"


def test_another_key_opens_nothing_and_the_error_names_the_secret():
    _, _, pulled = _sealed(new_content_key())
    with pytest.raises(KeyMismatch) as e:
        unseal(pulled, new_content_key())
    assert str(e.value) == (
        "module: does not decrypt under Steward secret app-key: not the key it was encrypted to"
    )
    assert e.value.key == "Steward secret app-key"


def test_a_key_of_the_wrong_size_opens_nothing():
    """A text file stored as the secret by mistake: refused by its size, before AES is asked."""
    _, _, pulled = _sealed(new_content_key())
    with pytest.raises(KeyMismatch, match="is 12 bytes, not a 32-byte AES-256 key"):
        unseal(pulled, b"not-the-key\n")


def test_a_sealed_layer_moved_to_another_path_does_not_open():
    key = new_content_key()
    blob = seal_layer(key, "application/x", "a", b"data", digest_of(b"data"))
    assert open_layer(key, "application/x", "a", blob, digest_of(b"data"), "a") == b"data"
    with pytest.raises(KeyMismatch):
        open_layer(key, "application/x", "b", blob, digest_of(b"data"), "b")
    with pytest.raises(KeyMismatch):
        open_layer(key, "application/y", "a", blob, digest_of(b"data"), "a")


def test_mixed_encrypted_and_plain_layers_are_refused():
    manifest, _, _ = _sealed(new_content_key())
    doc = json.loads(manifest.raw)
    del doc["annotations"]["dev.donjon.encryption.key"]
    with pytest.raises(MalformedPackage, match="mixed"):
        parse_manifest(canonical_json(doc))


@pytest.mark.parametrize("target", ["age:x", "steward:", "steward:a/b", "steward:..", "steward:" + "a" * 129])
def test_a_bad_key_target_is_a_usage_error(target):
    with pytest.raises(BadReference):
        parse_key_target(target)
