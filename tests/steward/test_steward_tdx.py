"""Native issuance for a simulated TDX Keep: the real DCAP verifier, the Steward's own Intel collateral."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon import binding, csr, oids
from donjon.attestation.simtdx import SimulatedTdx

MRTD = hashlib.sha384(b"donjon tdx keep image").digest()
PKCS10 = {"Content-Type": "application/pkcs10"}


@pytest.fixture(scope="module")
def tdx() -> SimulatedTdx:
    return SimulatedTdx(issued_at=datetime.now(UTC) - timedelta(days=1))


def _setup(env, kit, tdx: SimulatedTdx, *, with_collateral: bool = True) -> None:
    kit.trust_sim_tdx(env, tdx, with_collateral=with_collateral)
    env.policy.write_text(
        kit.policy_text()
        + f"""
[platform.tdx]
allowed_measurements = ["{MRTD.hex()}"]
registers = {{ rtmr0 = ["{"00" * 48}"] }}
"""
    )


def _csr(tdx: SimulatedTdx, key, workload: bytes, nonce: bytes, **quote) -> bytes:
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    q = tdx.quote(binding.keep_binding(spki, workload, nonce), mrtd=quote.pop("mrtd", MRTD), **quote)
    return csr.build_csr(key, statements=[(oids.EVIDENCE_TDX, q)], workload_digest=workload, nonce=nonce)


def test_simulated_tdx_keep_gets_a_certificate(env, kit, tdx):
    _setup(env, kit, tdx)
    key = ec.generate_private_key(ec.SECP256R1())
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        nonce = kit.Keep.nonce(client, srv.url)
        r = client.post(f"{srv.url}/attest", content=_csr(tdx, key, kit.WORKLOAD, nonce), headers=PKCS10)
        assert r.status_code == 200, r.text
        leaf = x509.load_pem_x509_certificates(r.content)[0]
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
            "spiffe://example.org/sim/test/web"
        ]
        entry = srv.steward.log.find_serial(format(leaf.serial_number, "x"))
        assert entry.record["claims"]["tee"] == "tdx" and entry.record["claims"]["simulated"] is True
        assert entry.record["collateral"] == "steward"
        # Another MRTD is not in the policy; an RTMR0 the policy does not pin is refused too.
        nonce = kit.Keep.nonce(client, srv.url)
        other = _csr(tdx, key, kit.WORKLOAD, nonce, mrtd=bytes(48))
        r = client.post(f"{srv.url}/attest", content=other, headers=PKCS10)
        assert r.status_code == 403 and r.json()["check"] == "policy.measurement"
        rtmr = _csr(tdx, key, kit.WORKLOAD, nonce, rtmrs=(b"\x01" * 48,) + (bytes(48),) * 3)
        r = client.post(f"{srv.url}/attest", content=rtmr, headers=PKCS10)
        assert r.status_code == 403 and r.json()["check"] == "policy.register"


def test_simulated_tdx_without_steward_collateral_is_refused(env, kit, tdx):
    _setup(env, kit, tdx, with_collateral=False)
    key = ec.generate_private_key(ec.SECP256R1())
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        nonce = kit.Keep.nonce(client, srv.url)
        r = client.post(f"{srv.url}/attest", content=_csr(tdx, key, kit.WORKLOAD, nonce), headers=PKCS10)
        assert r.status_code == 403 and r.json()["check"] == "collateral.missing"
