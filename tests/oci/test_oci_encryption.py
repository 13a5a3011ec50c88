"""Encrypted packages: sealing, opening, the manifest's rules, and the Keep's use of the secret client."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from donjon.config import parse_config
from donjon.oci.artifact import TreeEntry, build_manifest, canonical_json, digest_of, parse_manifest
from donjon.oci.encryption import new_content_key, open_layer, parse_key_target, seal_layer
from donjon.oci.errors import BadReference, DigestMismatch, MalformedPackage
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


def test_another_key_opens_nothing():
    _, _, pulled = _sealed(new_content_key())
    with pytest.raises(DigestMismatch, match="does not open"):
        unseal(pulled, new_content_key())


def test_a_sealed_layer_moved_to_another_path_does_not_open():
    key = new_content_key()
    blob = seal_layer(key, "application/x", "a", b"data", digest_of(b"data"))
    assert open_layer(key, "application/x", "a", blob, digest_of(b"data"), "a") == b"data"
    with pytest.raises(DigestMismatch):
        open_layer(key, "application/x", "b", blob, digest_of(b"data"), "b")
    with pytest.raises(DigestMismatch):
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


# -- the Keep side, against issue 11's client API (donjon.keep.secrets.fetch_secrets) --------------


class _Secret:
    def __init__(self, value: bytes) -> None:
        self.value = value


def _fake_secrets(monkeypatch, answer):
    calls = []
    module = types.ModuleType("donjon.keep.secrets")

    class SecretRefused(Exception):
        pass

    def fetch_secrets(endpoint, credentials, requests):
        calls.append((endpoint.url, credentials, list(requests)))
        if answer is None:
            raise SecretRefused("secret app-key: refused by the Steward: secret.digest: not admitted")
        return answer, {}

    module.SecretRefused = SecretRefused  # type: ignore[attr-defined]
    module.fetch_secrets = fetch_secrets  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "donjon.keep.secrets", module)
    return calls, SecretRefused


def _ca():
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test Steward CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    return (cert,)


class _Attested:
    steward_url = "https://steward.example:8443"

    def credentials(self):
        return "the Keep's certificate and key"


def test_the_key_is_asked_for_by_secret_name_with_the_keeps_new_certificate(monkeypatch):
    from donjon.cli.run import _content_key

    key = new_content_key()
    calls, _ = _fake_secrets(monkeypatch, {"app-key": _Secret(key)})
    assert _content_key("app-key", _Attested(), _ca()) == key  # type: ignore[arg-type]
    assert calls == [("https://steward.example:8443", "the Keep's certificate and key", ["app-key"])]


def test_a_refused_key_is_exit_1_and_nothing_decrypted(monkeypatch, capsys):
    from donjon.cli.run import _content_key

    _fake_secrets(monkeypatch, None)
    assert _content_key("app-key", _Attested(), _ca()) == 1  # type: ignore[arg-type]
    assert "nothing decrypted" in capsys.readouterr().err


def test_without_the_secret_client_an_encrypted_package_is_exit_3(monkeypatch, capsys):
    from donjon.cli.run import _content_key

    monkeypatch.setitem(sys.modules, "donjon.keep.secrets", None)
    assert _content_key("app-key", _Attested(), _ca()) == 3  # type: ignore[arg-type]
    assert "no secret client" in capsys.readouterr().err
