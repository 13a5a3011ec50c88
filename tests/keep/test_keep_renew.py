"""Renewal: a new attestation (new key, new nonce) before expiry, swapped in without dropping
connections; and at expiry without renewal, no new TLS connection is served."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from donjon.keep import (
    Attestor,
    IdentityExpired,
    KeepIdentity,
    Renewer,
    RetryPolicy,
    StewardEndpoint,
    StewardUnreachable,
)
from donjon.peer import PeerUnreachable, fetch_peer_chain
from donjon.tls import ServerContext
from donjon.tls.identity import self_signed

FAST = RetryPolicy(initial=0.05, max_delay=0.1, total=0.3)


def _spki(cert) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _ping(conn, data: bytes = b"ping") -> bytes:
    conn.sendall(data)
    return conn.recv(len(data))


def test_renewal_replaces_the_identity_and_keeps_open_connections(steward_env, sim_snp, h):
    steward_env.set_policy(h.policy_text(lifetime="3s"))
    with h.StewardServer(steward_env) as server:
        attestor = Attestor(
            sim_snp, h.DIGEST, StewardEndpoint.from_pem(server.url, steward_env.ca_pem), retry=FAST
        )
        first = attestor.attest()
        assert 1.5 <= first.lifetime <= 3.5  # notAfter has whole seconds
        holder = KeepIdentity(first.credentials())
        renewed: list = []
        event = threading.Event()

        def on_renewed(identity) -> None:
            renewed.append(identity)
            event.set()

        with h.TlsEchoServer(ServerContext(holder)) as tls:
            before = fetch_peer_chain("127.0.0.1", tls.port)
            assert before.chain[0].serial_number == first.leaf.serial_number
            old = h.tls_client(tls.port)
            assert _ping(old) == b"ping"
            with Renewer(holder, attestor.attest, first, fraction=0.5, on_renewed=on_renewed) as renewer:
                assert event.wait(10), renewer.last_error
                second = renewed[0]
                # New connections present the renewed certificate, for a new key.
                after = fetch_peer_chain("127.0.0.1", tls.port)
                served = after.chain[0]
                assert served.serial_number != first.leaf.serial_number
                assert _spki(served) != _spki(first.leaf)
                assert str(second.spiffe_id) == h.SIM_SPIFFE_ID
                assert holder.current()[0] >= 1
            # The connection opened with the first certificate was not dropped.
            assert _ping(old, b"still here") == b"still here"
            old.close()
        # Renewal attested again: another fresh (nonce-checked) issuance in the Steward's log.
        issued = [e for e in server.steward.log.entries() if e.record.get("decision") == "issued"]
        assert len(issued) >= 1 + renewer.renewals >= 2
        assert all(e.record["fresh"] and e.record["workload_digest"] == h.DIGEST.hex() for e in issued)


def test_expiry_without_renewal_refuses_new_connections_until_renewed(steward_env, sim_snp, h):
    steward_env.set_policy(h.policy_text(lifetime="2s"))
    port = h.free_port()
    with h.StewardServer(steward_env, port=port) as server:
        endpoint = StewardEndpoint.from_pem(server.url, steward_env.ca_pem)
        attestor = Attestor(sim_snp, h.DIGEST, endpoint, retry=FAST)
        first = attestor.attest()
    # The Steward is gone: renewal cannot succeed.
    holder = KeepIdentity(first.credentials())
    expired = threading.Event()
    renewed = threading.Event()
    with h.TlsEchoServer(ServerContext(holder)) as tls:
        old = h.tls_client(tls.port)
        renewer = Renewer(
            holder,
            attestor.attest,
            first,
            fraction=0.5,
            retry_initial=0.1,
            retry_max=0.3,
            on_expired=lambda _: expired.set(),
            on_renewed=lambda _: renewed.set(),
        )
        with renewer:
            assert expired.wait(10)
            assert renewer.failures >= 1
            assert isinstance(renewer.last_error, StewardUnreachable)
            assert holder.expired
            with pytest.raises(IdentityExpired):
                holder.current()
            # No new TLS connection is served with the expired certificate...
            with pytest.raises(PeerUnreachable):
                fetch_peer_chain("127.0.0.1", tls.port, timeout=3)
            assert tls.refused >= 1
            # ...while the one already open carries on.
            assert _ping(old) == b"ping"
            # When the Steward is back, renewal succeeds and the Keep serves again.
            with h.StewardServer(steward_env, port=port):
                assert renewed.wait(10), renewer.last_error
                session = fetch_peer_chain("127.0.0.1", tls.port)
                assert session.chain[0].serial_number != first.leaf.serial_number
        old.close()


def test_an_expired_identity_cannot_start_a_server_context():
    past = datetime.now(UTC) - timedelta(hours=2)
    credentials = self_signed(now=past, lifetime=timedelta(hours=1))
    holder = KeepIdentity(credentials)
    assert holder.expired
    with pytest.raises(IdentityExpired):
        ServerContext(holder)


def test_renewer_arguments_are_checked():
    holder = KeepIdentity(self_signed())
    with pytest.raises(ValueError):
        Renewer(holder, lambda: None, None, fraction=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Renewer(holder, lambda: None, None, retry_initial=2, retry_max=1)  # type: ignore[arg-type]
