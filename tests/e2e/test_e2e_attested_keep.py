"""Attested Keeps end to end (issue 6): Steward + ``donjon run`` on sim-snp / sim-tdx + a client.

The Keep is the real command line in a child process; the Steward is the real one (in this
process, trusting only the simulated vendors); the client trusts only the Steward's CA.
"""

from __future__ import annotations

import socket
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from donjon.demo.steward import DEMO_CLAIMS_OID
from donjon.peer import PeerExpectation, PeerRefused, fetch_peer_chain, verify_peer

from .conftest import https_get

SPIFFE_PATH = "/e2e/web"


def _expected_id(steward) -> str:
    return f"spiffe://{steward.trust_domain}/sim{SPIFFE_PATH}"


@pytest.mark.parametrize("backend", ["sim-snp", "sim-tdx"])
def test_client_sees_a_steward_certificate_with_the_spiffe_id_and_workload_digest(e2e, backend):
    steward = e2e.steward()
    w = e2e.workload("http", steward_url=steward.url, steward_ca=steward.ca_path, name="web")
    steward.set_policy(e2e.policy([e2e.rule(w.digest, SPIFFE_PATH)]))
    # Without --no-cache: an attested Keep keeps the module cache off unless --cache-dir names it.
    keep = e2e.keep(["--backend", backend, "--config", str(w.config), str(w.wasm)], no_cache=False)
    keep.wait_for("listening on")
    assert f"attested by the Steward at {steward.url}: {_expected_id(steward)} [SIMULATED TEE]" in keep.err
    assert "module cache off for an attested backend" in keep.err

    session = fetch_peer_chain("127.0.0.1", w.port, timeout=10)
    ca = tuple(x509.load_pem_x509_certificates(steward.ca_pem))
    expectation = PeerExpectation.of(
        [_expected_id(steward)], workload_digest=w.digest, claims_oid=DEMO_CLAIMS_OID
    )
    identity = verify_peer(session.chain, ca, expectation, at=datetime.now(UTC))
    assert session.version == "TLSv1.3"
    assert str(identity.spiffe_id) == _expected_id(steward)
    assert identity.workload_digest == w.digest
    assert identity.claims is not None
    assert identity.claims.values["tee"] == ("sev-snp" if backend == "sim-snp" else "tdx")
    assert identity.simulated
    # The Steward's log holds the certificate the client saw.
    issued = [r for r in steward.log_entries() if r.get("decision") == "issued"]
    assert [r["serial"] for r in issued] == [identity.serial]
    # And the workload behind it answers over a connection checked against the Steward CA.
    answer = https_get(w.port, steward.ca_path, server_hostname="localhost")
    assert answer.startswith(b"HTTP/1.1 200") and b"Hello from a Donjon Keep" in answer


def test_a_client_expecting_another_workload_refuses_the_keep(e2e):
    steward = e2e.steward()
    w = e2e.workload("http", steward_url=steward.url, steward_ca=steward.ca_path, name="web")
    steward.set_policy(e2e.policy([e2e.rule(w.digest, SPIFFE_PATH)]))
    keep = e2e.keep(["--backend", "sim-snp", "--config", str(w.config), str(w.wasm)])
    keep.wait_for("listening on")
    session = fetch_peer_chain("127.0.0.1", w.port, timeout=10)
    ca = tuple(x509.load_pem_x509_certificates(steward.ca_pem))
    other = bytes(32)
    with pytest.raises(PeerRefused) as e:
        verify_peer(
            session.chain,
            ca,
            PeerExpectation.of(workload_digest=other, allow_simulated=True),
            at=datetime.now(UTC),
        )
    assert e.value.check == "workload_digest"


def test_policy_without_the_workload_refuses_and_the_keep_never_listens(e2e, helpers):
    steward = e2e.steward()  # a policy that names no workload
    w = e2e.workload("http", steward_url=steward.url, steward_ca=steward.ca_path, name="web")
    keep = e2e.keep(["--backend", "sim-snp", "--config", str(w.config), str(w.wasm)])
    assert keep.wait() == 1
    assert "attestation refused by the Steward: policy" in keep.err
    assert "serving nothing" in keep.err
    assert "listening" not in keep.err and "Traceback" not in keep.err
    assert helpers.refuses_connections(w.port)
    refused = [r for r in steward.log_entries() if r.get("decision") == "refused"]
    assert len(refused) == 1 and refused[0]["workload_digest"] == w.digest.hex()


def test_a_tampered_module_has_another_digest_and_is_refused(e2e, helpers):
    steward = e2e.steward()
    module = (Path(__file__).resolve().parents[2] / "examples" / "http" / "http.wasm").read_bytes()
    # A custom section (id 0) appended: still a valid module, one more byte string to hash.
    tampered = module + b"\x00\x07\x03evil\x01\x02\x03"
    w = e2e.workload("http", steward_url=steward.url, steward_ca=steward.ca_path, name="web", module=tampered)
    steward.set_policy(e2e.policy([e2e.rule(w.digest, SPIFFE_PATH)]))  # the ORIGINAL's digest
    keep = e2e.keep(["--backend", "sim-snp", "--config", str(w.config), str(w.wasm)])
    assert keep.wait() == 1
    assert "attestation refused by the Steward: policy" in keep.err
    assert helpers.refuses_connections(w.port)


def test_a_nil_keep_is_refused_by_a_default_policy(e2e, helpers):
    steward = e2e.steward()
    w = e2e.workload("http", steward_url=steward.url, steward_ca=steward.ca_path, name="web", backends=None)
    steward.set_policy(e2e.policy([e2e.rule(w.digest, SPIFFE_PATH)]))  # allow_unattested = false
    keep = e2e.keep(["--backend", "nil", "--config", str(w.config), str(w.wasm)])
    assert keep.wait() == 1
    assert "attestation refused by the Steward" in keep.err and "unattested" in keep.err
    assert helpers.refuses_connections(w.port)


def test_a_backend_outside_the_allow_list_is_refused_before_anything(e2e, helpers):
    steward = e2e.steward()
    w = e2e.workload(
        "http", steward_url=steward.url, steward_ca=steward.ca_path, name="web", backends=("sim-tdx",)
    )
    keep = e2e.keep(["--backend", "sim-snp", "--config", str(w.config), str(w.wasm)])
    assert keep.wait() == 1
    assert "backend 'sim-snp' refused" in keep.err
    assert steward.log_entries() == []  # never asked the Steward
    assert helpers.refuses_connections(w.port)


def test_steward_down_at_start_bounded_retries_then_a_clear_exit(e2e, helpers, tmp_path):
    steward = e2e.steward()
    w = e2e.workload("http", steward_url=steward.url, steward_ca=steward.ca_path, name="web")
    steward.stop_serving()
    keep = e2e.keep(
        ["--backend", "sim-snp", "--attest-timeout", "1.5", "--config", str(w.config), str(w.wasm)]
    )
    started = time.monotonic()
    assert keep.wait() == 3
    elapsed = time.monotonic() - started
    assert "is unreachable after" in keep.err and "no self-signed fall-back" in keep.err
    attempts = int(keep.err.split("unreachable after ")[1].split(" ")[0])
    assert attempts >= 2  # 0.5 s then 1 s of backoff fit in 1.5 s
    # 1.5 s of retries, one attempt's own time, and the interpreter's start-up.
    assert elapsed < 1.5 + 0.5 + 5
    assert "listening" not in keep.err and "Traceback" not in keep.err
    assert helpers.refuses_connections(w.port)


def test_an_attested_backend_without_a_steward_does_not_start(e2e, helpers):
    w = e2e.workload("http", steward_url=None, steward_ca=None, name="web")
    keep = e2e.keep(["--backend", "sim-snp", "--config", str(w.config), str(w.wasm)])
    assert keep.wait() == 2
    assert "needs a Steward" in keep.err and "never falls back to a self-signed" in keep.err
    assert helpers.refuses_connections(w.port)


def test_an_unreadable_steward_ca_is_operational_and_a_non_pem_one_usage(e2e, tmp_path):
    steward = e2e.steward()
    missing = tmp_path / "missing.pem"
    w = e2e.workload("http", steward_url=steward.url, steward_ca=missing, name="web")
    keep = e2e.keep(["--backend", "sim-snp", "--config", str(w.config), str(w.wasm)])
    assert keep.wait() == 3
    assert f"Steward CA {missing}: cannot read" in keep.err
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    keep = e2e.keep(
        ["--backend", "sim-snp", "--steward-ca", str(garbage), "--config", str(w.config), str(w.wasm)]
    )
    assert keep.wait() == 2
    assert "not PEM certificates" in keep.err


def test_a_steward_with_another_ca_is_not_trusted(e2e, tmp_path):
    steward = e2e.steward()
    impostor = e2e.steward()  # another CA: the Keep pins the first one
    w = e2e.workload("http", steward_url=impostor.url, steward_ca=steward.ca_path, name="web")
    keep = e2e.keep(["--backend", "sim-snp", "--config", str(w.config), str(w.wasm)])
    assert keep.wait() == 3
    assert "is not the pinned one" in keep.err
    assert impostor.log_entries() == []


def test_renewal_during_a_long_running_connection(e2e):
    steward = e2e.steward()
    w = e2e.workload("echo", steward_url=steward.url, steward_ca=steward.ca_path, name="ingest")
    steward.set_policy(e2e.policy([e2e.rule(w.digest, SPIFFE_PATH, lifetime="3s")]))
    keep = e2e.keep(["--backend", "sim-snp", "--config", str(w.config), str(w.wasm)])
    keep.wait_for("listening on")
    context = ssl.create_default_context(cafile=str(steward.ca_path))
    with (
        socket.create_connection(("127.0.0.1", w.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as long_lived,
    ):
        first = x509.load_der_x509_certificate(long_lived.getpeercert(binary_form=True))
        long_lived.sendall(b"before renewal\n")
        assert long_lived.recv(100) == b"before renewal\n"
        keep.wait_for("identity renewed", timeout=10)
        # The connection made before the renewal is still served...
        long_lived.sendall(b"after renewal\n")
        assert long_lived.recv(100) == b"after renewal\n"
        # ... while a new one gets the new certificate, from the same Steward CA.
        session = fetch_peer_chain("127.0.0.1", w.port, timeout=10)
        assert session.chain[0].serial_number != first.serial_number
        ca = tuple(x509.load_pem_x509_certificates(steward.ca_pem))
        renewed = verify_peer(
            session.chain,
            ca,
            PeerExpectation.of([_expected_id(steward)], workload_digest=w.digest),
            at=datetime.now(UTC),
        )
        assert renewed.not_after > first.not_valid_after_utc
    issued = [r for r in steward.log_entries() if r.get("decision") == "issued"]
    assert len(issued) >= 2
