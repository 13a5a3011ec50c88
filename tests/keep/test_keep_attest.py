"""The Keep's attestation flow against a real Steward over HTTPS, with simulated TEEs."""

from __future__ import annotations

import json
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID

from donjon.backends import NilBackend
from donjon.config import workload_digest
from donjon.keep import (
    AttestationRefused,
    Attestor,
    RetryPolicy,
    StewardEndpoint,
    StewardUnreachable,
    StewardUntrusted,
    attest,
)
from donjon.peer import PeerExpectation, verify_peer
from donjon.tls import Identity, ServerContext


def _spki(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_sim_snp_attestation_issues_the_expected_identity(steward, steward_env, sim_snp, h):
    result = attest(sim_snp, h.DIGEST, steward.url, steward_env.ca_pem)
    # The identity the policy maps this workload to, marked simulated by the Steward.
    assert str(result.spiffe_id) == h.SIM_SPIFFE_ID
    assert result.simulated and not result.unattested
    assert result.claims is not None
    assert result.claims["workload_digest"] == h.DIGEST.hex()
    assert result.claims["tee"] == "sev-snp"
    assert result.claims["measurement"] == h.MEASUREMENT.hex()
    assert result.evidence_kind == "snp-report" and result.backend == "sim-snp"
    # The certificate is for the Keep's own in-memory key, signed by the pinned CA.
    leaf = result.leaf
    assert _spki(leaf.public_key()) == _spki(result.key.public_key())
    leaf.verify_directly_issued_by(steward_env.ca[0])
    san = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [h.SIM_SPIFFE_ID]
    # A relying party that knows the digest accepts it too.
    expect = PeerExpectation.of([h.SIM_SPIFFE_ID], workload_digest=h.DIGEST, claims_oid=h.CLAIMS_OID)
    verify_peer(result.chain, steward_env.ca, expect, at=result.obtained_at)
    # The Steward logged a fresh (nonce-checked) issuance for this key and workload.
    entry = steward.steward.log.find_serial(result.serial)
    assert entry is not None
    assert entry.record["decision"] == "issued" and entry.record["fresh"] is True
    assert entry.record["workload_digest"] == h.DIGEST.hex()
    # Usable as the TLS identity (H6's holder and server context accept it).
    credentials = result.credentials()
    assert credentials.attested and "SIMULATED" in credentials.description
    ServerContext(Identity(credentials))


def test_each_attestation_uses_a_new_key(steward, steward_env, sim_snp, h):
    first = attest(sim_snp, h.DIGEST, steward.url, steward_env.ca_pem)
    second = attest(sim_snp, h.DIGEST, steward.url, steward_env.ca_pem)
    assert _spki(first.key.public_key()) != _spki(second.key.public_key())
    assert first.serial != second.serial


def test_workload_not_in_policy_is_refused_with_the_stewards_reason(steward, steward_env, sim_snp, h):
    other = bytes(32)
    with pytest.raises(AttestationRefused) as info:
        attest(sim_snp, other, steward.url, steward_env.ca_pem)
    assert info.value.check == "policy.workload"
    assert other.hex() in info.value.reason
    assert info.value.status == 403
    assert "policy.workload" in str(info.value)


def test_tampered_module_gives_another_digest_and_is_refused(steward, steward_env, sim_snp, h):
    tampered = bytearray(h.MODULE)
    tampered[-1] ^= 0x01
    digest = workload_digest(bytes(tampered), h.CONFIG)
    assert digest != h.DIGEST
    attestor = Attestor(sim_snp, digest, StewardEndpoint.from_pem(steward.url, steward_env.ca_pem))
    with pytest.raises(AttestationRefused) as info:
        attestor.attest()
    assert info.value.check == "policy.workload"
    assert attestor.attempts == 1  # a refusal is final: never retried


def test_evidence_for_another_measurement_is_refused(steward, steward_env, sim_vendor, h):
    from donjon.backends import SimBackend

    backend = SimBackend("sim-snp", vendor=sim_vendor, report_options={"measurement": bytes(48)})
    with pytest.raises(AttestationRefused) as info:
        attest(backend, h.DIGEST, steward.url, steward_env.ca_pem)
    assert info.value.check == "policy.measurement"


def test_nil_is_refused_by_a_default_policy(steward, steward_env, h):
    with pytest.raises(AttestationRefused) as info:
        attest(NilBackend(), h.DIGEST, steward.url, steward_env.ca_pem)
    assert info.value.check == "policy.unattested"


def test_nil_with_allow_unattested_is_marked_unattested(steward, steward_env, h):
    steward.reload_policy(h.policy_text(allow_unattested=True))
    result = attest(NilBackend(), h.DIGEST, steward.url, steward_env.ca_pem)
    assert str(result.spiffe_id) == f"spiffe://{h.TRUST_DOMAIN}/unattested{h.SPIFFE_PATH}"
    assert result.unattested and result.evidence_kind == "none"
    assert not result.credentials().attested


def test_steward_down_at_start_retries_within_the_bound(steward_env, sim_snp, h):
    url = f"https://127.0.0.1:{h.free_port()}"  # nothing listens there
    retry = RetryPolicy(initial=0.05, multiplier=2.0, max_delay=0.2, total=1.5)
    attestor = Attestor(sim_snp, h.DIGEST, StewardEndpoint.from_pem(url, steward_env.ca_pem), retry=retry)
    started = time.monotonic()
    with pytest.raises(StewardUnreachable) as info:
        attestor.attest()
    elapsed = time.monotonic() - started
    assert elapsed <= retry.total + 0.5, elapsed
    assert attestor.attempts >= 4  # 0.05 + 0.1 + 0.2 + 0.2 ... fit in 1.5 s
    assert info.value.attempts == attestor.attempts
    assert info.value.elapsed <= retry.total + 0.5
    assert url in str(info.value) and "unreachable" in str(info.value)


def test_a_steward_answering_503_is_retried_until_it_recovers(steward_env, sim_snp, h):
    failures = {"left": 2}

    def flaky(app):
        async def wrapped(scope, receive, send):
            if scope["type"] == "http" and scope["path"] == "/challenge" and failures["left"] > 0:
                failures["left"] -= 1
                await send({"type": "http.response.start", "status": 503, "headers": []})
                await send({"type": "http.response.body", "body": b"busy"})
                return
            await app(scope, receive, send)

        return wrapped

    with h.StewardServer(steward_env, app_wrapper=flaky) as server:
        retry = RetryPolicy(initial=0.05, max_delay=0.1, total=10)
        endpoint = StewardEndpoint.from_pem(server.url, steward_env.ca_pem)
        attestor = Attestor(sim_snp, h.DIGEST, endpoint, retry=retry)
        result = attestor.attest()
    assert attestor.attempts == 3
    assert str(result.spiffe_id) == h.SIM_SPIFFE_ID


def test_a_steward_with_another_ca_is_untrusted_and_not_retried(steward, tmp_path, sim_vendor, sim_snp, h):
    other = h.make_env(tmp_path / "other", sim_vendor)
    attestor = Attestor(
        sim_snp, h.DIGEST, StewardEndpoint.from_pem(steward.url, other.ca_pem), retry=RetryPolicy(total=30)
    )
    started = time.monotonic()
    with pytest.raises(StewardUntrusted) as info:
        attestor.attest()
    assert time.monotonic() - started < 5
    assert attestor.attempts == 1
    assert "pinned" in str(info.value)


def test_another_stewards_ca_is_named_as_such(steward, tmp_path, sim_vendor, sim_snp, h):
    """Issue 10: another Steward's CA says "not issued by the CA in FILE", for the HTTPS connection
    (TLS) and for the issued chain (the Keep's own check), not "path length constraint violated"."""
    other = h.make_env(tmp_path / "other", sim_vendor)
    source = str(other.dir / "ca.pem")
    endpoint = StewardEndpoint(url=steward.url, ca=other.ca, ca_source=source)
    with pytest.raises(StewardUntrusted) as info:
        Attestor(sim_snp, h.DIGEST, endpoint, retry=RetryPolicy(total=5)).attest()
    assert f"not issued by the CA in {source}" in str(info.value)
    from donjon.keep import IssuedCertificateInvalid

    endpoint = StewardEndpoint(url=steward.url, ca=other.ca, tls_anchors=steward.env.ca, ca_source=source)
    with pytest.raises(IssuedCertificateInvalid) as issued:
        Attestor(sim_snp, h.DIGEST, endpoint).attest()
    assert issued.value.check == "chain"
    assert f"not issued by the CA in {source}" in str(issued.value)
    assert "path length" not in str(issued.value)


def test_plain_http_needs_an_explicit_opt_in(steward_env):
    with pytest.raises(ValueError, match="plain HTTP"):
        StewardEndpoint.from_pem("http://127.0.0.1:1", steward_env.ca_pem)
    endpoint = StewardEndpoint.from_pem("http://127.0.0.1:1", steward_env.ca_pem, allow_insecure_http=True)
    assert endpoint.base == "http://127.0.0.1:1"
    for bad in ("ftp://x", "https://", "https://u:p@host/", "https://host/?q=1"):
        with pytest.raises(ValueError):
            StewardEndpoint.from_pem(bad, steward_env.ca_pem)


def test_the_chain_is_checked_against_the_pinned_ca_not_the_answer(
    steward, steward_env, tmp_path, sim_vendor, sim_snp, h
):
    # The HTTPS connection trusts this Steward (tls_anchors), but the pinned issuing CA is
    # another one: the issued chain must be refused by the Keep itself.
    other = h.make_env(tmp_path / "other", sim_vendor)
    endpoint = StewardEndpoint(url=steward.url, ca=other.ca, tls_anchors=steward_env.ca)
    from donjon.keep import IssuedCertificateInvalid

    with pytest.raises(IssuedCertificateInvalid) as info:
        Attestor(sim_snp, h.DIGEST, endpoint).attest()
    assert info.value.check == "chain"


def test_summary_is_json(steward, steward_env, sim_snp, h):
    result = attest(sim_snp, h.DIGEST, steward.url, steward_env.ca_pem)
    doc = json.loads(json.dumps(result.summary()))
    assert doc["spiffe_id"] == h.SIM_SPIFFE_ID and doc["workload_digest"] == h.DIGEST.hex()
