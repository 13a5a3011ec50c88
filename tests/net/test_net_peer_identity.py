"""A Keep's TLS peer checks by SPIFFE ID follow the relying party's rules (docs/run.md "Sockets").

``client_auth``/``client_identity`` on ``listen`` and ``peer_identity`` on ``connect`` hold the
peer to :func:`donjon.peer.check_identity`: an identity the Steward marked simulated (``/sim/``)
or unattested (``/unattested/``) passes only when the config names that exact ID. Each case is
one real TLS 1.3 handshake over a socket pair, with the contexts ``donjon run`` builds.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from OpenSSL import SSL

from donjon.config.model import ConnectEntry, ListenEntry
from donjon.tls import Identity, TrustAnchors, parse_spiffe_id
from donjon.tls.context import ClientContext, HandshakeNotes, ServerContext, SpiffeIds
from donjon.tls.endpoints import client_context_for, server_context_for

TD = "spiffe://steward.test"
PLAIN, SIM, UNATTESTED, OTHER_SIM = (
    f"{TD}/keep/b",
    f"{TD}/sim/keep/b",
    f"{TD}/unattested/keep/b",
    f"{TD}/sim/keep/c",
)


def handshake(server: ServerContext, client: ClientContext) -> tuple[HandshakeNotes, HandshakeNotes]:
    """One handshake plus one byte each way (TLS 1.3 reports a refused client on the next read)."""
    a, b = socket.socketpair()  # blocking: pyOpenSSL's do_handshake on a blocking socket
    s_conn, _, s_notes = server.wrap(a)
    c_conn, _, c_notes = client.wrap(b)

    def serve() -> None:
        try:
            s_conn.do_handshake()
            s_conn.sendall(s_conn.recv(1))
        except (SSL.Error, OSError):
            pass
        finally:
            a.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        c_conn.do_handshake()
        c_conn.sendall(b"x")
        assert c_conn.recv(1) == b"x"
    except (SSL.Error, OSError):
        pass
    finally:
        thread.join(5)
        b.close()
    return s_notes, c_notes


@pytest.fixture
def pki(net: SimpleNamespace) -> SimpleNamespace:
    ca = net.CA("Steward CA")
    return SimpleNamespace(ca=ca, server=Identity(ca.issue(spiffe_id=f"{TD}/sim/keep/a")))


def server_for(pki: SimpleNamespace, client_identity: str | None) -> ServerContext:
    entry = ListenEntry("web", "127.0.0.1", 1, "tls", "steward", client_identity)
    context = server_context_for(entry, pki.server, [pki.ca.cert])
    assert context is not None
    return context


def client_as(pki: SimpleNamespace, uri: str) -> ClientContext:
    """A client presenting a certificate with the URI SAN ``uri``, expecting the server's ID."""
    return ClientContext(
        TrustAnchors.steward_ca([pki.ca.cert]),
        SpiffeIds.of([parse_spiffe_id(f"{TD}/sim/keep/a")]),
        identity=Identity(pki.ca.issue(spiffe_id=uri)),
    )


def test_client_auth_without_an_identity_accepts_an_attested_client_only(pki: SimpleNamespace) -> None:
    server = server_for(pki, None)
    accepted, _ = handshake(server, client_as(pki, PLAIN))
    assert accepted.failure is None and str(accepted.peer_spiffe_id) == PLAIN
    for marked, check in ((SIM, "simulated"), (UNATTESTED, "unattested")):
        refused, _ = handshake(server, client_as(pki, marked))
        assert refused.failure is not None and f"{check}:" in refused.failure and marked in refused.failure


@pytest.mark.parametrize("marked", [SIM, UNATTESTED])
def test_naming_a_marked_identity_exactly_accepts_it_and_only_it(pki: SimpleNamespace, marked: str) -> None:
    server = server_for(pki, marked)
    accepted, _ = handshake(server, client_as(pki, marked))
    assert accepted.failure is None and str(accepted.peer_spiffe_id) == marked
    refused, _ = handshake(server, client_as(pki, OTHER_SIM))
    assert refused.failure is not None and "not an expected one" in refused.failure


def test_client_auth_refuses_a_certificate_without_a_spiffe_id(pki: SimpleNamespace, tmp_path: Path) -> None:
    refused, _ = handshake(server_for(pki, None), client_as(pki, "https://not.spiffe/x"))
    assert refused.failure is not None and "not an X.509-SVID" in refused.failure


def test_peer_identity_checks_the_server_by_spiffe_id_not_host_name(
    pki: SimpleNamespace, tmp_path: Path
) -> None:
    server = ServerContext(pki.server)  # its certificate names "localhost", and /sim/keep/a
    ca_pem = pki.ca.pem(tmp_path)
    named = ConnectEntry("peer", "192.0.2.7", 1, "tls", "file", ca_pem.name, (f"{TD}/sim/keep/a",))
    client = client_context_for(named, config_dir=tmp_path, identity=pki.server)
    assert client is not None and isinstance(client.peer, SpiffeIds)
    _, ok = handshake(server, client)
    assert ok.failure is None and str(ok.peer_spiffe_id) == f"{TD}/sim/keep/a"

    other = ConnectEntry("peer", "localhost", 1, "tls", "file", ca_pem.name, (OTHER_SIM,))
    client = client_context_for(other, config_dir=tmp_path, identity=pki.server)
    assert client is not None
    _, refused = handshake(server, client)
    assert refused.failure is not None and "not an expected one" in refused.failure

    # Without peer_identity the host name is checked: 192.0.2.7 is not in the certificate.
    by_host = ConnectEntry("peer", "192.0.2.7", 1, "tls", "file", ca_pem.name)
    client = client_context_for(by_host, config_dir=tmp_path, identity=pki.server)
    assert client is not None
    _, refused = handshake(server, client)
    assert refused.failure is not None and "192.0.2.7" in refused.failure
