"""Keys in a SoftHSM2 token: created inside, never shown; signatures and KEK wraps that verify.

The token is real (tests/conftest.py ``softhsm``); the checks of non-extractability ask the
token itself through the binding, as an attacker holding the PIN would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11e

from donjon.hsm import (
    BadPin,
    ModuleNotFound,
    ObjectNotFound,
    TokenError,
    TokenNotFound,
    UnwrapFailed,
    parse_uri,
)
from donjon.hsm.keys import (
    create_ec_key,
    create_ed25519_key,
    create_kek,
    open_ec_signer,
    open_ed25519_key,
    open_pkcs11_kek,
)
from donjon.hsm.token import TokenSession, read_pin
from donjon.steward.ca import CertificateAuthority, create_ca_certificate
from donjon.tlog.checkpoint import NoteSigner, open_checkpoint


def _raw_private(softhsm, label, object_class=ObjectClass.PRIVATE_KEY):
    """The object as the binding shows it, outside Donjon's wrappers."""
    session = TokenSession.open(parse_uri(softhsm.uri(label)))
    return session, session.find_key(object_class)


def test_the_ca_key_is_created_sensitive_and_not_extractable(softhsm):
    label = softhsm.label_for("ca")
    signer = create_ec_key(parse_uri(softhsm.uri(label)))
    signer.close()
    session, private = _raw_private(softhsm, label)
    try:
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.NEVER_EXTRACTABLE] is True  # generated inside, never shown
        assert private[Attribute.TOKEN] is True
        with pytest.raises(p11e.AttributeSensitive):  # C_GetAttributeValue(CKA_VALUE) is refused
            private[Attribute.VALUE]
        with pytest.raises(p11e.PKCS11Error):  # and the token will not wrap it out either
            private[Attribute.EXTRACTABLE] = True
    finally:
        session.close()


@pytest.mark.parametrize("curve", ["p256", "p384"])
def test_certificates_signed_in_the_token_verify(softhsm, curve):
    signer = create_ec_key(parse_uri(softhsm.uri(softhsm.label_for(f"ca-{curve}"))), curve)
    try:
        now = datetime.now(UTC)
        ca_cert = create_ca_certificate(signer, "Token CA", now=now)
        ca_cert.verify_directly_issued_by(ca_cert)
        assert ca_cert.public_key() == signer.public_key()
        ca = CertificateAuthority(signer, ca_cert, trust_domain="example.org")
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        from cryptography.hazmat.primitives import serialization

        spki = leaf_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        issued = ca.issue(spki, spiffe_path="/w", dns_names=["w.example.org"], lifetime=3600, now=now)
        issued.certificate.verify_directly_issued_by(ca_cert)
        expected = hashes.SHA384 if curve == "p384" else hashes.SHA256
        assert isinstance(issued.certificate.signature_hash_algorithm, expected)
        assert issued.certificate.not_valid_after_utc <= now + timedelta(seconds=3600)
        san = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "spiffe://example.org/w" in san.get_values_for_type(x509.UniformResourceIdentifier)
    finally:
        signer.close()


def test_an_existing_key_is_used_and_a_second_create_is_refused(softhsm):
    uri = parse_uri(softhsm.uri(softhsm.label_for("ca")))
    first = create_ec_key(uri)
    public = first.public_key()
    first.close()
    with pytest.raises(TokenError, match="a key is created once"):
        create_ec_key(uri)
    again = open_ec_signer(uri)
    try:
        assert again.public_key() == public
    finally:
        again.close()


def test_a_wrong_ca_certificate_for_the_token_key_is_refused(softhsm):
    signer = create_ec_key(parse_uri(softhsm.uri(softhsm.label_for("ca"))))
    try:
        other = ec.generate_private_key(ec.SECP256R1())
        cert = create_ca_certificate(other, "Another CA", now=datetime.now(UTC))
        with pytest.raises(ValueError, match="does not match"):
            CertificateAuthority(signer, cert, trust_domain="example.org")
    finally:
        signer.close()


def test_the_log_key_signs_checkpoints_in_the_token(softhsm):
    uri = parse_uri(softhsm.uri(softhsm.label_for("log")))
    key = create_ed25519_key(uri)
    key.close()
    key = open_ed25519_key(uri)
    try:
        signer = NoteSigner("example.org/log", key)
        note = signer.sign(b"example.org/log\n1\n" + b"A" * 43 + b"=\n")
        open_checkpoint(note, signer.verifier)  # cryptography verifies the token's Ed25519 signature
    finally:
        key.close()
    session, private = _raw_private(softhsm, uri.object)
    try:
        assert private[Attribute.EXTRACTABLE] is False
        with pytest.raises(p11e.AttributeSensitive):
            private[Attribute.VALUE]
    finally:
        session.close()


def test_the_kek_wraps_and_unwraps_and_refuses_another_aad(softhsm):
    uri = parse_uri(softhsm.uri(softhsm.label_for("kek")))
    kek = create_kek(uri)
    kek.close()
    kek = open_pkcs11_kek(str(uri))  # the setting's text, as steward.toml gives it
    other = create_kek(parse_uri(softhsm.uri(softhsm.label_for("kek-other"))))
    try:
        assert "pin" not in kek.name.split("?")[0] and kek.name.startswith("pkcs11:")
        data_key = bytes(range(32))
        wrapped = kek.wrap(data_key, b"db-password\x00v1")
        assert len(wrapped) == 61 and data_key not in wrapped
        assert kek.unwrap(wrapped, b"db-password\x00v1") == data_key
        assert kek.wrap(data_key, b"a") != kek.wrap(data_key, b"a")  # a fresh nonce each time
        with pytest.raises(UnwrapFailed):
            kek.unwrap(wrapped, b"db-password\x00v2")
        flipped = wrapped[:20] + bytes([wrapped[20] ^ 1]) + wrapped[21:]
        with pytest.raises(UnwrapFailed):
            kek.unwrap(flipped, b"db-password\x00v1")
        with pytest.raises(UnwrapFailed):
            other.unwrap(wrapped, b"db-password\x00v1")
        with pytest.raises(UnwrapFailed, match="61 bytes"):
            kek.unwrap(wrapped[:-1], b"db-password\x00v1")
        # A failed unwrap leaves the session usable.
        assert kek.unwrap(wrapped, b"db-password\x00v1") == data_key
    finally:
        kek.close()
        other.close()
    session, key = _raw_private(softhsm, uri.object, ObjectClass.SECRET_KEY)
    try:
        assert key[Attribute.EXTRACTABLE] is False and key[Attribute.VALUE_LEN] == 32
        with pytest.raises(p11e.AttributeSensitive):
            key[Attribute.VALUE]
    finally:
        session.close()


def test_clear_errors_for_a_missing_token_object_or_module(softhsm, tmp_path):
    with pytest.raises(TokenNotFound, match=f"present: '{softhsm.label}'"):
        TokenSession.open(parse_uri(softhsm.uri("ca", token="no-such-token")))
    with pytest.raises(ObjectNotFound, match="no private key with object='absent'"):
        open_ec_signer(parse_uri(softhsm.uri("absent")))
    with pytest.raises(ModuleNotFound, match="does not name a file"):
        TokenSession.open(parse_uri(f"pkcs11:token=x?module-path={tmp_path}/nothing.so"))
    with pytest.raises(BadPin, match="needs a PIN"):
        TokenSession.open(parse_uri(softhsm.uri("ca", pin=False)))


def test_pin_files(softhsm, tmp_path):
    loose = tmp_path / "pin"
    loose.write_text("1234\n")
    loose.chmod(0o644)
    with pytest.raises(BadPin, match="chmod 600"):
        read_pin(parse_uri(f"pkcs11:token=t?pin-source=file:{loose}"))
    loose.chmod(0o600)
    assert read_pin(parse_uri("pkcs11:token=t?pin-source=pin"), base=tmp_path) == "1234"
    assert read_pin(parse_uri(f"pkcs11:token=t?pin-source=file://{loose}")) == "1234"
    with pytest.raises(BadPin, match="only a file"):
        read_pin(parse_uri("pkcs11:token=t?pin-source=|/bin/getpin"))
    with pytest.raises(BadPin, match="cannot read the PIN file"):
        read_pin(parse_uri(f"pkcs11:token=t?pin-source=file:{tmp_path}/none"))
    assert read_pin(parse_uri("pkcs11:token=t?pin-value=42")) == "42"


def test_the_module_is_softhsm(softhsm):
    from donjon.hsm.token import find_module

    lib = pkcs11.lib(find_module(parse_uri("pkcs11:")))
    assert "SoftHSM" in lib.manufacturer_id


def test_closing_twice_is_harmless_and_use_after_close_is_an_error(softhsm):
    signer = create_ec_key(parse_uri(softhsm.uri(softhsm.label_for("ca"))))
    signer.close()
    signer.close()
    with pytest.raises(TokenError, match="closed"):
        signer.sign_digest(b"\x00" * 32)


def test_pin_locations_resolve_relative_to_the_base(softhsm, tmp_path):
    (tmp_path / "pin").write_text(softhsm.pin)
    (tmp_path / "pin").chmod(0o600)
    uri = parse_uri(f"pkcs11:token={softhsm.label};object={softhsm.label_for('ca')}?pin-source=file:pin")
    signer = create_ec_key(uri, base=Path(tmp_path))
    signer.close()


def test_a_session_the_token_dropped_is_opened_again(softhsm):
    """An HSM that restarts forgets its sessions: the next signature logs in again, once."""
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    uri = parse_uri(softhsm.uri(softhsm.label_for("drop")))
    signer = create_ec_key(uri)
    kek = create_kek(uri.with_object(softhsm.label_for("drop-kek")))
    try:
        wrapped = kek.wrap(b"k" * 32, b"aad")
        # Close both sessions behind their owners' backs: the token logs the application out
        # (PKCS#11 v2.40 section 5.6, the last session closed), as after a restart.
        signer.session._session.close()
        kek.session._session.close()
        digest = b"\x11" * 32
        signer.public_key().verify(signer.sign_digest(digest), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        assert kek.unwrap(wrapped, b"aad") == b"k" * 32
    finally:
        signer.close()
        kek.close()


def test_ec_points_are_read_der_wrapped_or_bare():
    """PKCS#11 v2.40 wraps CKA_EC_POINT in an OCTET STRING; some modules give the bare point."""
    from cryptography.hazmat.primitives import serialization

    from donjon.hsm.keys import _ec_point

    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    assert _ec_point("t", {Attribute.EC_POINT: b"\x04\x41" + point}) == point
    assert _ec_point("t", {Attribute.EC_POINT: point}) == point
    with pytest.raises(TokenError, match="CKA_EC_POINT"):
        _ec_point("t", {Attribute.EC_POINT: b"\x30\x03junk"})


@pytest.fixture(scope="module")
def module_kek(softhsm):
    kek = create_kek(parse_uri(softhsm.uri(softhsm.label_for("prop-kek"))))
    yield kek
    kek.close()


@settings(max_examples=60, deadline=None)
@given(
    data_key=st.binary(min_size=32, max_size=32), aad=st.binary(max_size=64), bit=st.integers(0, 61 * 8 - 1)
)
def test_a_flipped_bit_in_a_wrapped_key_never_unwraps(module_kek, data_key, aad, bit):
    """Rule: any single flipped bit of a wrapped key (format, nonce, ciphertext, tag) is refused."""
    wrapped = module_kek.wrap(data_key, aad)
    assert module_kek.unwrap(wrapped, aad) == data_key
    flipped = bytearray(wrapped)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(UnwrapFailed):
        module_kek.unwrap(bytes(flipped), aad)


def test_threads_share_the_token_safely(softhsm):
    """The Steward signs from worker threads (CA) and the log's thread (checkpoints) at once."""
    from concurrent.futures import ThreadPoolExecutor

    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    ca = create_ec_key(parse_uri(softhsm.uri(softhsm.label_for("threads-ca"))))
    log = create_ed25519_key(parse_uri(softhsm.uri(softhsm.label_for("threads-log"))))
    try:

        def sign_both(i: int) -> None:
            digest = i.to_bytes(32, "big")
            ca.public_key().verify(ca.sign_digest(digest), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
            log.public_key().verify(log.sign(digest), digest)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(sign_both, range(200)))
    finally:
        ca.close()
        log.close()
