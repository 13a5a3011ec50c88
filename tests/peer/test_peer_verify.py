"""The relying party's checks, on certificates from the Steward's own CA code (no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from donjon.peer import (
    PeerExpectation,
    PeerRefused,
    check_identity,
    find_claims,
    parse_claims_value,
    verify_chain,
    verify_peer,
)
from donjon.steward.ca import CertificateAuthority, create_ca

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OID = "1.3.6.1.4.1.99999.1"
DIGEST = bytes(range(32))
CLAIMS = {
    "tee": "sev-snp",
    "measurement": "ab" * 48,
    "tcb_status": "UpToDate",
    "workload_digest": DIGEST.hex(),
    "simulated": False,
    "fresh": True,
}


def _spki(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _ca(claims_oid: str | None = OID, name: str = "Test Steward CA") -> CertificateAuthority:
    key, cert = create_ca(name, now=NOW - timedelta(days=1))
    return CertificateAuthority(key, cert, trust_domain="example.org", claims_oid=claims_oid)


def _issue(ca: CertificateAuthority, path: str = "/web", claims: dict | None = None, lifetime: int = 3600):
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.issue(
        _spki(key),
        spiffe_path=path,
        dns_names=["web.example.org"],
        lifetime=lifetime,
        now=NOW,
        claims=CLAIMS if claims is None else claims,
    )
    return issued.certificate


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return _ca()


def test_a_steward_certificate_verifies_and_says_what_it_carries(ca):
    leaf = _issue(ca)
    expect = PeerExpectation.of(["spiffe://example.org/web"], workload_digest=DIGEST, claims_oid=OID)
    peer = verify_peer([leaf, ca.cert], [ca.cert], expect, at=NOW)
    assert str(peer.spiffe_id) == "spiffe://example.org/web"
    assert peer.dns_names == ("web.example.org",)
    assert peer.workload_digest == DIGEST
    assert peer.claims is not None and peer.claims.tee == "sev-snp" and peer.claims.oid == OID
    assert not peer.simulated and not peer.unattested
    assert peer.chain == (leaf, ca.cert)
    assert peer.as_dict()["claims"]["workload_digest"] == DIGEST.hex()
    # Recognised by content when the claims OID is not given.
    assert verify_peer([leaf], [ca.cert], PeerExpectation(workload_digest=DIGEST), at=NOW).claims.oid == OID


def test_another_ca_is_refused(ca):
    leaf = _issue(ca)
    other = _ca(name="Another CA")
    with pytest.raises(PeerRefused) as info:
        verify_peer([leaf, ca.cert], [other.cert], PeerExpectation(), at=NOW)
    assert info.value.check == "chain"


@pytest.mark.parametrize("offset", [timedelta(hours=2), -timedelta(minutes=10)], ids=["expired", "not-yet"])
def test_outside_the_validity_period_is_refused(ca, offset):
    leaf = _issue(ca)
    with pytest.raises(PeerRefused) as info:
        verify_peer([leaf], [ca.cert], PeerExpectation(), at=NOW + offset)
    assert info.value.check == "chain"


def test_a_naive_time_is_a_programming_error(ca):
    with pytest.raises(ValueError):
        verify_chain([_issue(ca)], [ca.cert], at=datetime(2026, 6, 1))


def test_the_wrong_spiffe_id_is_refused_with_both_ids(ca):
    leaf = _issue(ca)
    with pytest.raises(PeerRefused) as info:
        verify_peer([leaf], [ca.cert], PeerExpectation.of(["spiffe://example.org/db"]), at=NOW)
    assert info.value.check == "spiffe_id"
    assert info.value.expected == "spiffe://example.org/db"
    assert info.value.got == "spiffe://example.org/web"


def test_simulated_identities_need_an_opt_in_or_their_exact_id(ca):
    leaf = _issue(ca, "/sim/web", claims={**CLAIMS, "simulated": True})
    with pytest.raises(PeerRefused) as info:
        verify_peer([leaf], [ca.cert], PeerExpectation(), at=NOW)
    assert info.value.check == "simulated"
    # Nothing was expected: the message names what was got, never "expected None".
    assert "expected None" not in str(info.value)
    assert "(got spiffe://example.org/sim/web)" in str(info.value)
    assert verify_peer([leaf], [ca.cert], PeerExpectation(allow_simulated=True), at=NOW).simulated
    named = PeerExpectation.of(["spiffe://example.org/sim/web"])
    assert verify_peer([leaf], [ca.cert], named, at=NOW).simulated
    # The claim alone marks it too, whatever the path.
    marked = _issue(ca, "/web", claims={**CLAIMS, "simulated": True})
    with pytest.raises(PeerRefused, match="SIMULATED"):
        verify_peer([marked], [ca.cert], PeerExpectation(), at=NOW)


def test_unattested_identities_need_an_opt_in_or_their_exact_id(ca):
    leaf = _issue(ca, "/unattested/web")
    with pytest.raises(PeerRefused) as info:
        verify_peer([leaf], [ca.cert], PeerExpectation(allow_simulated=True), at=NOW)
    assert info.value.check == "unattested"
    assert verify_peer([leaf], [ca.cert], PeerExpectation(allow_unattested=True), at=NOW).unattested


def test_workload_digest_mismatch_is_refused(ca):
    leaf = _issue(ca)
    with pytest.raises(PeerRefused) as info:
        verify_peer([leaf], [ca.cert], PeerExpectation(workload_digest=bytes(32)), at=NOW)
    assert info.value.check == "workload_digest"
    assert info.value.got == DIGEST.hex()


def test_a_digest_cannot_be_checked_without_claims():
    bare = _ca(claims_oid=None)
    leaf = _issue(bare)
    assert find_claims(leaf) is None
    with pytest.raises(PeerRefused) as info:
        verify_peer([leaf], [bare.cert], PeerExpectation(workload_digest=DIGEST), at=NOW)
    assert info.value.check == "workload_digest"
    assert "no claims" in info.value.reason
    # Under another claims OID than the Steward's there are no claims either.
    with_claims = _ca()
    expect = PeerExpectation(workload_digest=DIGEST, claims_oid="1.2.3.4")
    with pytest.raises(PeerRefused, match="no claims"):
        verify_peer([_issue(with_claims)], [with_claims.cert], expect, at=NOW)


def aki(key) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())


def _leaf_by_hand(ca: CertificateAuthority, *, uris: list[str], eku: list[x509.ObjectIdentifier]):
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=5))
        .not_valid_after(NOW + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    return builder.sign(ca.key, hashes.SHA256())


def test_a_server_needs_server_auth(ca):
    leaf = _leaf_by_hand(ca, uris=["spiffe://example.org/web"], eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    with pytest.raises(PeerRefused) as info:
        verify_peer([leaf], [ca.cert], PeerExpectation(), at=NOW)
    assert info.value.check == "key_usage"
    assert verify_peer([leaf], [ca.cert], PeerExpectation(role="client"), at=NOW).spiffe_id.path == "/web"


def test_an_svid_has_exactly_one_uri(ca):
    both = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    leaf = _leaf_by_hand(ca, uris=["spiffe://example.org/a", "spiffe://example.org/b"], eku=both)
    with pytest.raises(PeerRefused) as info:
        verify_peer([leaf], [ca.cert], PeerExpectation(), at=NOW)
    assert info.value.check == "spiffe_id"
    not_spiffe = _leaf_by_hand(ca, uris=["https://example.org/a"], eku=both)
    with pytest.raises(PeerRefused, match=r"not an X\.509-SVID"):
        verify_peer([not_spiffe], [ca.cert], PeerExpectation(), at=NOW)


def test_the_ca_itself_is_not_a_peer(ca):
    with pytest.raises(PeerRefused) as info:
        verify_peer([ca.cert], [ca.cert], PeerExpectation(), at=NOW)
    assert info.value.check == "chain"


def test_chains_are_bounded_and_intermediates_are_used():
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Org Root")])
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=2))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    steward = _ca(name="Steward under Org Root")
    # Re-issue the Steward CA certificate under the org root (same key).
    inter = (
        x509.CertificateBuilder()
        .subject_name(steward.cert.subject)
        .issuer_name(root_name)
        .public_key(steward.key.public_key())
        .serial_number(2)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(steward.key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )
    leaf = _issue(steward)
    assert verify_peer([leaf, inter], [root], PeerExpectation(), at=NOW).chain == (leaf, inter, root)
    with pytest.raises(PeerRefused, match="chain"):
        verify_peer([leaf], [root], PeerExpectation(), at=NOW)
    with pytest.raises(PeerRefused, match="more than"):
        verify_peer([leaf] + [inter] * 5, [root], PeerExpectation(), at=NOW)
    with pytest.raises(PeerRefused):
        verify_peer([], [root], PeerExpectation(), at=NOW)


def test_check_identity_alone_serves_a_tls_verify_callback(ca):
    # After OpenSSL has verified the chain, the TLS layer can apply the same identity rules.
    peer = check_identity(_issue(ca), PeerExpectation.of(["spiffe://example.org/web"]))
    assert str(peer.spiffe_id) == "spiffe://example.org/web"


def _utf8(text: bytes) -> bytes:
    n = len(text)
    if n < 0x80:
        return b"\x0c" + bytes([n]) + text
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\x0c" + bytes([0x80 | len(raw)]) + raw + text


def test_claims_parsing_refuses_what_the_steward_never_writes():
    assert parse_claims_value(OID, _utf8(b'{"tee":"tdx"}')).tee == "tdx"
    long_doc = b'{"pad":"' + b"x" * 300 + b'"}'
    assert parse_claims_value(OID, _utf8(long_doc)).values["pad"] == "x" * 300
    bad = [
        b"",
        b"\x04\x02{}",  # an OCTET STRING, not a UTF8String
        b"\x0c\x81\x02{}",  # non-minimal length
        b"\x0c\x05{}",  # length beyond the value
        _utf8(b"[1, 2]"),  # not an object
        _utf8(b"\xff\xfe"),  # not UTF-8
        _utf8(b'{"workload_digest": "XYZ"}'),
        _utf8(b" " * 20000),  # too large
    ]
    for value in bad:
        with pytest.raises(PeerRefused) as info:
            parse_claims_value(OID, value)
        assert info.value.check == "claims"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_claims_bytes_parse_or_are_refused(data):
    # Rule: whatever bytes an extension holds, reading them as claims either succeeds or
    # raises PeerRefused("claims"); never another exception.
    try:
        parse_claims_value(OID, data)
    except PeerRefused as e:
        assert e.check == "claims"


def test_expectation_values_are_checked():
    with pytest.raises(ValueError):
        PeerExpectation(workload_digest=b"short")
    with pytest.raises(ValueError):
        PeerExpectation(role="proxy")  # type: ignore[arg-type]


# --- issue 10: another Steward's CA is named as such; DICE claims are read without a claims OID ---


@pytest.mark.parametrize("other_name", ["Test Steward CA", "Another Steward CA"])
def test_a_chain_from_another_ca_says_so(ca, other_name):
    """Same CA name (another Steward of the same trust domain) or another: "not issued by the CA in
    FILE", where path building alone said "signature does not match" or "path length constraint
    violated" (the chain carrying its own, foreign, CA)."""
    leaf = _issue(ca)
    other = _ca(name=other_name)
    for chain in ([leaf, ca.cert], [leaf]):
        with pytest.raises(PeerRefused) as info:
            verify_chain(chain, [other.cert], at=NOW, anchors_source="other-ca.pem")
        assert info.value.check == "chain"
        assert "not issued by the CA in other-ca.pem" in info.value.reason
        assert "path length" not in info.value.reason
    # A chain of the right CA failing for another reason keeps that reason.
    with pytest.raises(PeerRefused) as info:
        verify_chain([leaf, ca.cert], [ca.cert], at=NOW + timedelta(days=1), anchors_source="ca.pem")
    assert "not issued" not in info.value.reason


def test_dice_claims_carry_the_workload_digest_without_a_claims_oid():
    from donjon.dice import MULTI_TCB_INFO_OID
    from donjon.steward.dice_claims import dice_entries

    plain = _ca(claims_oid=None)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = plain.issue(
        _spki(key),
        spiffe_path="/web",
        dns_names=[],
        lifetime=3600,
        now=NOW,
        claims=CLAIMS,
        dice=dice_entries(None, DIGEST, simulated=False),
    ).certificate
    peer = verify_peer([leaf], [plain.cert], PeerExpectation(workload_digest=DIGEST), at=NOW)
    assert peer.claims is not None and peer.claims.oid == MULTI_TCB_INFO_OID
    assert peer.workload_digest == DIGEST
    # No evidence behind it: the workload entry carries notSecure (not "simulated": that is the
    # TEE entry's mark; an unattested certificate says so in its SPIFFE path).
    assert peer.claims.values["not_secure"] is True and not peer.claims.simulated
    with pytest.raises(PeerRefused) as info:
        verify_peer([leaf], [plain.cert], PeerExpectation(workload_digest=bytes(32)), at=NOW)
    assert info.value.check == "workload_digest"


def test_a_garbled_dice_extension_is_a_claims_refusal(ca):
    from donjon.dice import MULTI_TCB_INFO_OID

    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://example.org/web")]),
            critical=True,
        )
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(MULTI_TCB_INFO_OID), b"\x30\x03\x02\x01\x01"),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    with pytest.raises(PeerRefused) as info:
        find_claims(leaf)
    assert info.value.check == "claims" and "DICE" in info.value.reason
