"""Hostile or broken Steward answers, and chains that must not become the Keep's identity.

The "Steward" here is the real one behind an ASGI wrapper that replaces chosen answers, so
the Keep's client meets each bad answer over the same HTTPS connection it always uses.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.keep import (
    AttestationRefused,
    Attestor,
    IssuedCertificateInvalid,
    RetryPolicy,
    StewardEndpoint,
    StewardProtocolError,
    StewardUnreachable,
    check_issued,
)
from donjon.steward.ca import CertificateAuthority, create_ca

ONCE = RetryPolicy(initial=0.05, max_delay=0.05, total=0.2)


def _replacing(path: str, status: int, body: bytes, ctype: str, extra: list | None = None):
    def wrapper(app):
        async def wrapped(scope, receive, send):
            if scope["type"] == "http" and scope["path"] == path:
                headers = [(b"content-type", ctype.encode()), *(extra or [])]
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await app(scope, receive, send)

        return wrapped

    return wrapper


CASES = [
    ("/challenge", 200, b"not json", "application/json", StewardProtocolError, "nonce"),
    ("/challenge", 200, b'{"nonce": 5}', "application/json", StewardProtocolError, "nonce"),
    ("/challenge", 200, b'{"nonce": ""}', "application/json", StewardProtocolError, "nonce"),
    (
        "/challenge",
        200,
        b'{"nonce": "' + b"A" * 400 + b'"}',
        "application/json",
        StewardProtocolError,
        "nonce",
    ),
    ("/challenge", 200, b"x" * 5000, "application/json", StewardProtocolError, "exceeds"),
    ("/challenge", 404, b"<html>", "text/html", StewardProtocolError, "404"),
    ("/attest", 200, b"hello", "application/pem-certificate-chain", StewardProtocolError, "PEM"),
    (
        "/attest",
        200,
        b"A" * (70 * 1024),
        "application/pem-certificate-chain",
        StewardProtocolError,
        "exceeds",
    ),
    ("/attest", 403, b'{"error": "refused"}', "application/json", StewardProtocolError, "403"),
    ("/attest", 403, b"[]", "application/json", StewardProtocolError, "403"),
    ("/attest", 302, b"", "text/plain", StewardProtocolError, "302"),
]


@pytest.mark.parametrize(("path", "status", "body", "ctype", "error", "text"), CASES)
def test_bad_answers_are_specific_errors(steward_env, sim_snp, h, path, status, body, ctype, error, text):
    with h.StewardServer(steward_env, app_wrapper=_replacing(path, status, body, ctype)) as server:
        attestor = Attestor(
            sim_snp, h.DIGEST, StewardEndpoint.from_pem(server.url, steward_env.ca_pem), retry=ONCE
        )
        with pytest.raises(error) as info:
            attestor.attest()
    assert text in str(info.value)
    assert attestor.attempts == 1


def test_a_chain_of_too_many_certificates_is_refused(steward_env, sim_snp, h):
    pem = steward_env.ca_pem * 6
    wrapper = _replacing("/attest", 200, pem, "application/pem-certificate-chain")
    with h.StewardServer(steward_env, app_wrapper=wrapper) as server:
        attestor = Attestor(sim_snp, h.DIGEST, StewardEndpoint.from_pem(server.url, steward_env.ca_pem))
        with pytest.raises(StewardProtocolError, match="6 certificates"):
            attestor.attest()


def test_a_refusal_carries_the_stewards_details(steward_env, sim_snp, h):
    body = b'{"error":"refused","check":"policy.tcb_status","reason":"TCB OutOfDate","details":{"got":"x"}}'
    wrapper = _replacing("/attest", 403, body, "application/json")
    with h.StewardServer(steward_env, app_wrapper=wrapper) as server:
        attestor = Attestor(sim_snp, h.DIGEST, StewardEndpoint.from_pem(server.url, steward_env.ca_pem))
        with pytest.raises(AttestationRefused) as info:
            attestor.attest()
    assert (info.value.check, info.value.reason, info.value.status) == (
        "policy.tcb_status",
        "TCB OutOfDate",
        403,
    )
    assert info.value.details == {"got": "x"}


def test_a_steward_that_stays_at_503_is_unreachable_within_the_bound(steward_env, sim_snp, h):
    wrapper = _replacing("/attest", 503, b"overloaded", "text/plain")
    with h.StewardServer(steward_env, app_wrapper=wrapper) as server:
        retry = RetryPolicy(initial=0.05, max_delay=0.1, total=0.8)
        attestor = Attestor(
            sim_snp, h.DIGEST, StewardEndpoint.from_pem(server.url, steward_env.ca_pem), retry=retry
        )
        with pytest.raises(StewardUnreachable) as info:
            attestor.attest()
    # No attempt starts after the budget; the last one may take its own (short) time.
    assert info.value.attempts >= 2 and info.value.elapsed <= retry.total + 0.5
    assert "HTTP 503" in info.value.reason


# --- check_issued: what the Keep accepts as its own identity (no network) ---

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DIGEST = bytes(32)


def _spki(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    key, cert = create_ca("Keep test CA", now=NOW - timedelta(days=1))
    return CertificateAuthority(key, cert, trust_domain="example.org", claims_oid="1.3.6.1.4.1.99999.1")


def _issue(ca, key, digest: bytes = DIGEST):
    issued = ca.issue(
        _spki(key),
        spiffe_path="/web",
        dns_names=[],
        lifetime=3600,
        now=NOW,
        claims={"workload_digest": digest.hex(), "simulated": False},
    )
    return (issued.certificate, ca.cert)


def test_check_issued_accepts_our_certificate(ca):
    key = ec.generate_private_key(ec.SECP256R1())
    peer = check_issued(_issue(ca, key), key, (ca.cert,), workload_digest=DIGEST, at=NOW)
    assert str(peer.spiffe_id) == "spiffe://example.org/web"


def test_check_issued_refuses_a_certificate_for_another_key(ca):
    ours, theirs = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(IssuedCertificateInvalid) as info:
        check_issued(_issue(ca, theirs), ours, (ca.cert,), workload_digest=DIGEST, at=NOW)
    assert info.value.check == "key"


def test_check_issued_refuses_another_workload(ca):
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(IssuedCertificateInvalid) as info:
        check_issued(_issue(ca, key, b"\x01" * 32), key, (ca.cert,), workload_digest=DIGEST, at=NOW)
    assert info.value.check == "workload_digest"


def test_check_issued_refuses_an_expired_or_foreign_chain(ca):
    key = ec.generate_private_key(ec.SECP256R1())
    chain = _issue(ca, key)
    with pytest.raises(IssuedCertificateInvalid) as info:
        check_issued(chain, key, (ca.cert,), workload_digest=DIGEST, at=NOW + timedelta(hours=2))
    assert info.value.check == "chain"
    _, other = create_ca("Other", now=NOW - timedelta(days=1))
    with pytest.raises(IssuedCertificateInvalid) as info:
        check_issued(chain, key, (other,), workload_digest=DIGEST, at=NOW)
    assert info.value.check == "chain"


def test_retry_policy_bounds():
    policy = RetryPolicy(initial=1, multiplier=2, max_delay=5, total=10, jitter=0.1)
    for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 5), (10, 5)]:
        assert base * 0.9 <= policy.delay(attempt) <= base * 1.1
    for bad in (dict(initial=0), dict(multiplier=0.5), dict(initial=2, max_delay=1), dict(jitter=1)):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)
