"""Pure parts: SPIFFE IDs, host name matching, trust anchors, identity values."""

from __future__ import annotations

import datetime
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from donjon.tls import (
    UNATTESTED,
    ClientAuth,
    Credentials,
    HostName,
    Identity,
    InvalidSpiffeId,
    PeerIdentityMismatch,
    SpiffeIds,
    TLSConfigError,
    TrustAnchors,
    check_spiffe_id,
    parse_spiffe_id,
    self_signed,
    spiffe_id_of,
)
from donjon.tls.anchors import MAX_ANCHOR_BYTES
from donjon.tls.hostname import check_host_name


def cert_with_san(*names: x509.GeneralName) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=True)
    return builder.sign(key, hashes.SHA256())


@pytest.mark.parametrize(
    "text",
    [
        "spiffe://example.org",
        "spiffe://example.org/keep/a",
        "spiffe://trust_domain-1.example/a.b/C-d_e/0",
    ],
)
def test_valid_spiffe_ids_round_trip(text: str) -> None:
    assert str(parse_spiffe_id(text)) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("SPIFFE://example.org/a", "scheme"),
        ("https://example.org/a", "scheme"),
        ("spiffe://", "empty trust domain"),
        ("spiffe:///a", "empty trust domain"),
        ("spiffe://Example.org/a", "characters"),
        ("spiffe://example.org:443/a", "port"),
        ("spiffe://user@example.org/a", "user info"),
        ("spiffe://example.org/a/", "trailing"),
        ("spiffe://example.org//a", "empty path segment"),
        ("spiffe://example.org/a/../b", "'..'"),
        ("spiffe://example.org/./b", "'.'"),
        ("spiffe://example.org/a b", "characters"),
        ("spiffe://example.org/a%20b", "characters"),
        ("spiffe://example.org/a?x=1", "query"),
        ("spiffe://example.org/a#f", "fragment"),
        ("spiffe://example.org/" + "a" * 2100, "2048"),
    ],
)
def test_invalid_spiffe_ids_are_refused(text: str, why: str) -> None:
    with pytest.raises(InvalidSpiffeId, match=why.replace(".", r"\.").replace("?", r"\?")):
        parse_spiffe_id(text)


@given(st.text(max_size=300))
def test_any_string_parses_or_raises_invalid_spiffe_id(text: str) -> None:
    try:
        parsed = parse_spiffe_id(text)
    except InvalidSpiffeId:
        return
    assert str(parsed) == text


def test_svid_must_carry_exactly_one_uri_san() -> None:
    a = x509.UniformResourceIdentifier("spiffe://example.org/a")
    b = x509.UniformResourceIdentifier("spiffe://example.org/b")
    assert str(spiffe_id_of(cert_with_san(a, x509.DNSName("localhost")))) == "spiffe://example.org/a"
    for cert in (cert_with_san(), cert_with_san(x509.DNSName("x")), cert_with_san(a, b)):
        with pytest.raises(PeerIdentityMismatch):
            spiffe_id_of(cert)
    with pytest.raises(PeerIdentityMismatch, match="not a SPIFFE ID"):
        spiffe_id_of(cert_with_san(x509.UniformResourceIdentifier("https://example.org/a")))
    allowed = {parse_spiffe_id("spiffe://example.org/b")}
    with pytest.raises(
        PeerIdentityMismatch, match=re.escape("expected spiffe://example.org/b, got spiffe://example.org/a")
    ):
        check_spiffe_id(cert_with_san(a), allowed)


@pytest.mark.parametrize(
    ("san", "host", "ok"),
    [
        (x509.DNSName("keep.example.com"), "keep.example.com", True),
        (x509.DNSName("keep.example.com"), "KEEP.Example.com.", True),
        (x509.DNSName("*.example.com"), "keep.example.com", True),
        (x509.DNSName("*.example.com"), "a.keep.example.com", False),
        (x509.DNSName("*.example.com"), "example.com", False),
        (x509.DNSName("*.com"), "example.com", False),
        (x509.DNSName("k*.example.com"), "keep.example.com", False),
        (x509.DNSName("keep.example.com"), "other.example.com", False),
        (x509.DNSName("127.0.0.1"), "127.0.0.1", False),  # an address matches only an IP SAN
        (x509.UniformResourceIdentifier("spiffe://keep.example.com"), "keep.example.com", False),
    ],
)
def test_host_name_matching(san: x509.GeneralName, host: str, ok: bool) -> None:
    cert = cert_with_san(san)
    if ok:
        check_host_name(cert, host)
    else:
        with pytest.raises(PeerIdentityMismatch):
            check_host_name(cert, host)


def test_ip_address_matching() -> None:
    import ipaddress

    cert = cert_with_san(x509.IPAddress(ipaddress.ip_address("::1")), x509.DNSName("localhost"))
    check_host_name(cert, "::1")
    check_host_name(cert, "[::1]")
    with pytest.raises(PeerIdentityMismatch):
        check_host_name(cert, "127.0.0.1")


def test_malformed_host_names_are_configuration_errors() -> None:
    for bad in ("", "a..b", "x" * 300, "bücher.example"):
        with pytest.raises(TLSConfigError):
            HostName(bad)


def test_trust_anchor_sources(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TLSConfigError, match="no certificate"):
        TrustAnchors()
    with pytest.raises(TLSConfigError, match="not a PEM"):
        TrustAnchors.from_pem(b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    with pytest.raises(TLSConfigError, match="exceed"):
        TrustAnchors.from_pem(b"x" * (MAX_ANCHOR_BYTES + 1))
    with pytest.raises(TLSConfigError, match="cannot read"):
        TrustAnchors.from_pem_file(tmp_path / "missing.pem")
    cert = cert_with_san(x509.DNSName("x"))
    with pytest.raises(TLSConfigError, match="not both"):
        TrustAnchors(certificates=(cert,), system=True)
    with pytest.raises(TLSConfigError, match="system roots"):
        ClientAuth(TrustAnchors.system_roots())
    with pytest.raises(TLSConfigError, match="admits nobody"):
        SpiffeIds(frozenset())


def test_self_signed_identity_is_unattested_p256_and_swappable() -> None:
    creds = self_signed(spiffe_id=parse_spiffe_id("spiffe://example.org/keep"))
    assert creds.attested is False and creds.description == UNATTESTED
    assert isinstance(creds.key, ec.EllipticCurvePrivateKey) and creds.key.curve.name == "secp256r1"
    assert str(spiffe_id_of(creds.leaf)) == "spiffe://example.org/keep"
    assert "key=" not in repr(creds)
    identity = Identity(creds)
    generation, first = identity.current()
    assert first is creds
    other = self_signed()
    identity.replace(other)
    assert identity.current() == (generation + 1, other)


def test_credentials_refuse_a_key_that_does_not_match() -> None:
    a, b = self_signed(), self_signed()
    with pytest.raises(TLSConfigError, match="does not match"):
        Credentials(chain=a.chain, key=b.key, attested=False, description="x")
    with pytest.raises(TLSConfigError, match="empty"):
        Credentials(chain=(), key=a.key, attested=False, description="x")
