"""Peer authentication: client certificates on a listening socket, and Donjon as a verifying client."""

from __future__ import annotations

import errno
import logging
import select
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from donjon.tls import (
    ClientAuth,
    ClientContext,
    HandshakeFailed,
    HostName,
    Identity,
    ServerContext,
    SpiffeIds,
    Stream,
    TLSStream,
    TrustAnchors,
    WouldBlock,
    connect,
    parse_spiffe_id,
)

TIMEOUT = 5.0
SERVER = "spiffe://example.org/keep/server"
A = "spiffe://example.org/keep/a"
B = "spiffe://example.org/keep/b"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "donjon.tls" and r.levelno >= logging.WARNING]


def wait_for(predicate: Callable[[], object], timeout: float = TIMEOUT) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


def python_client(ca_pem, cert=None, key=None):  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context(cafile=str(ca_pem))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def try_echo(port: int, ctx: ssl.SSLContext, payload: bytes = b"who am I talking to?") -> bytes:
    """Echo ``payload``; a refused client certificate shows up as an SSL error or EOF."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = tls.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def refused(port: int, ctx: ssl.SSLContext) -> bool:
    try:
        return try_echo(port, ctx) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def drive(
    stream: Stream, op: Callable[[], bytes | int], *, read: bool, timeout: float = TIMEOUT
) -> bytes | int:
    """Run a non-blocking operation to completion the way a WASI poll loop would."""
    end = time.monotonic() + timeout
    while True:
        try:
            return op()
        except WouldBlock:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("operation did not complete in time") from None
            poller = select.poll()
            poller.register(stream.fileno(), stream.poll_events(read, not read))
            poller.poll(left * 1000)


def echo_via(stream: Stream, payload: bytes) -> bytes:
    sent = 0
    while sent < len(payload):
        rest = payload[sent:]
        sent += int(drive(stream, lambda rest=rest: stream.send(rest), read=False))
    got = b""
    while len(got) < len(payload):
        chunk = drive(stream, lambda: stream.recv(65536), read=True)
        assert isinstance(chunk, bytes) and chunk, "stream ended early"
        got += chunk
    return got


@pytest.fixture
def ca_pem(ca, tmp_path):  # type: ignore[no-untyped-def]
    return ca.pem(tmp_path)


@pytest.fixture
def mtls_server(serve, ca, server_creds):  # type: ignore[no-untyped-def]
    auth = ClientAuth(ca.anchors(), frozenset({parse_spiffe_id(A)}))
    return serve(ServerContext(Identity(server_creds), client_auth=auth))


# -- client authentication on listen --------------------------------------------------------------


def test_client_with_the_required_spiffe_id_is_accepted(mtls_server, ca, ca_pem, write_creds):  # type: ignore[no-untyped-def]
    cert, key = write_creds(ca.issue(spiffe_id=A), "a")
    assert try_echo(mtls_server.port, python_client(ca_pem, cert, key)) == b"who am I talking to?"
    wait_for(lambda: mtls_server.infos)
    assert str(mtls_server.infos[0].peer_spiffe_id) == A


def test_client_without_certificate_is_refused(mtls_server, ca_pem, caplog):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="donjon.tls")
    assert refused(mtls_server.port, python_client(ca_pem))
    wait_for(lambda: warnings_of(caplog))
    assert "certificate" in warnings_of(caplog)[0]


def test_client_with_wrong_spiffe_id_is_refused(mtls_server, ca, ca_pem, write_creds, caplog):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="donjon.tls")
    cert, key = write_creds(ca.issue(spiffe_id=B), "b")
    assert refused(mtls_server.port, python_client(ca_pem, cert, key))
    wait_for(lambda: warnings_of(caplog))
    line = warnings_of(caplog)[0]
    assert "SPIFFE ID" in line and B in line and A in line


def test_client_from_another_ca_is_refused(mtls_server, other_ca, ca_pem, write_creds, caplog):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="donjon.tls")
    cert, key = write_creds(other_ca.issue(spiffe_id=A), "foreign")
    assert refused(mtls_server.port, python_client(ca_pem, cert, key))
    wait_for(lambda: warnings_of(caplog))
    assert "trust anchor" in warnings_of(caplog)[0]


def test_expired_or_server_only_client_certificates_are_refused(mtls_server, ca, ca_pem, write_creds):  # type: ignore[no-untyped-def]
    cert, key = write_creds(ca.issue(spiffe_id=A, expired=True), "expired")
    assert refused(mtls_server.port, python_client(ca_pem, cert, key))
    cert, key = write_creds(ca.issue(spiffe_id=A, eku=(ExtendedKeyUsageOID.SERVER_AUTH,)), "server-only")
    assert refused(mtls_server.port, python_client(ca_pem, cert, key))


def test_client_auth_without_spiffe_constraint_accepts_any_client_of_the_ca(
    serve, ca, server_creds, ca_pem, write_creds
):  # type: ignore[no-untyped-def]
    server = serve(ServerContext(Identity(server_creds), client_auth=ClientAuth(ca.anchors())))
    cert, key = write_creds(ca.issue(spiffe_id=B), "b")
    assert try_echo(server.port, python_client(ca_pem, cert, key)) == b"who am I talking to?"
    assert refused(server.port, python_client(ca_pem))


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl binary")
def test_curl_with_client_certificate(serve, ca, server_creds, ca_pem, write_creds):  # type: ignore[no-untyped-def]
    auth = ClientAuth(ca.anchors(), frozenset({parse_spiffe_id(A)}))
    server = serve(ServerContext(Identity(server_creds), client_auth=auth), mode="http")
    url = f"https://localhost:{server.port}/"
    cert, key = write_creds(ca.issue(spiffe_id=A), "a")
    base = ["curl", "-sS", "--max-time", "5", "--cacert", str(ca_pem)]
    ok = subprocess.run([*base, "--cert", str(cert), "--key", str(key), url], capture_output=True, timeout=10)
    assert ok.returncode == 0 and b"hello from a Donjon test" in ok.stdout
    anonymous = subprocess.run([*base, url], capture_output=True, timeout=10)
    assert anonymous.returncode != 0 and b"hello" not in anonymous.stdout


# -- Donjon as a client (connect entries, Keep to Keep) --------------------------------------------


def test_connect_verifies_the_server_spiffe_id(serve, ca, server_creds):  # type: ignore[no-untyped-def]
    server = serve(ServerContext(Identity(server_creds)))
    client = ClientContext(ca.anchors(), SpiffeIds.of([parse_spiffe_id(SERVER)]))
    stream = connect("127.0.0.1", server.port, prot="tls", client=client)
    try:
        assert echo_via(stream, b"keep to keep" * 5000) == b"keep to keep" * 5000
        assert isinstance(stream, TLSStream) and stream.info is not None
        assert str(stream.info.peer_spiffe_id) == SERVER
        assert stream.info.version == "TLSv1.3" and stream.info.group == "X25519MLKEM768"
    finally:
        stream.close()


def test_connect_refuses_a_server_with_another_spiffe_id(serve, ca, server_creds, caplog):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="donjon.tls")
    server = serve(ServerContext(Identity(server_creds)))
    client = ClientContext(ca.anchors(), SpiffeIds.of([parse_spiffe_id(A)]))
    stream = connect("127.0.0.1", server.port, prot="tls", client=client)
    with pytest.raises(HandshakeFailed, match="SPIFFE ID") as info:
        drive(stream, lambda: stream.send(b"secret"), read=False)
    assert info.value.errno == errno.ECONNRESET
    with pytest.raises(HandshakeFailed):  # every later use fails the same way
        stream.recv(10)
    assert stream.readable() and stream.writable()  # a poll loop wakes up to see the error
    stream.close()
    stream.close()
    client_lines = [w for w in warnings_of(caplog) if f"to 127.0.0.1:{server.port}" in w]
    assert len(client_lines) == 1 and A in client_lines[0]


def test_connect_checks_the_host_name(serve, ca, server_creds):  # type: ignore[no-untyped-def]
    server = serve(ServerContext(Identity(server_creds)))
    for host, ok in (("localhost", True), ("127.0.0.1", True), ("other.example", False)):
        stream = connect(
            "127.0.0.1", server.port, prot="tls", client=ClientContext(ca.anchors(), HostName(host))
        )
        try:
            if ok:
                assert echo_via(stream, b"hi") == b"hi"
            else:
                with pytest.raises(HandshakeFailed, match="does not name the host"):
                    echo_via(stream, b"hi")
        finally:
            stream.close()


def test_connect_with_wrong_anchors_fails(serve, other_ca, server_creds):  # type: ignore[no-untyped-def]
    server = serve(ServerContext(Identity(server_creds)))
    for anchors in (other_ca.anchors(), TrustAnchors.system_roots()):
        client = ClientContext(anchors, HostName("localhost"))
        stream = connect("127.0.0.1", server.port, prot="tls", client=client)
        with pytest.raises(HandshakeFailed, match="trust anchor"):
            echo_via(stream, b"hi")
        stream.close()


def test_mutual_tls_between_keeps(serve, ca, server_creds):  # type: ignore[no-untyped-def]
    auth = ClientAuth(ca.anchors(), frozenset({parse_spiffe_id(A)}))
    server = serve(ServerContext(Identity(server_creds), client_auth=auth))
    client = ClientContext(
        ca.anchors(), SpiffeIds.of([parse_spiffe_id(SERVER)]), identity=Identity(ca.issue(spiffe_id=A))
    )
    stream = connect("127.0.0.1", server.port, prot="tls", client=client)
    try:
        assert echo_via(stream, b"mutual") == b"mutual"
    finally:
        stream.close()
    wait_for(lambda: server.infos)
    assert str(server.infos[0].peer_spiffe_id) == A


@pytest.mark.parametrize(
    ("path", "flag"),
    [("/sim/keep/server", "allow_simulated"), ("/unattested/keep/server", "allow_unattested")],
)
def test_connect_by_host_name_refuses_a_marked_server_unless_allowed(serve, ca, path, flag):  # type: ignore[no-untyped-def]
    """Issue 9 finding 3: the certificate names the host, but a Steward marked it as not a TEE."""
    creds = ca.issue(spiffe_id=f"spiffe://example.org{path}", dns=("localhost",), ips=("127.0.0.1",))
    server = serve(ServerContext(Identity(creds)))
    for host in ("localhost", "127.0.0.1"):
        stream = connect(
            "127.0.0.1", server.port, prot="tls", client=ClientContext(ca.anchors(), HostName(host))
        )
        with pytest.raises(HandshakeFailed, match=f"{flag} = true"):
            echo_via(stream, b"hi")
        stream.close()
        allowed = ClientContext(ca.anchors(), HostName(host, **{flag: True}))
        stream = connect("127.0.0.1", server.port, prot="tls", client=allowed)
        try:
            assert echo_via(stream, b"hi") == b"hi"
        finally:
            stream.close()
    # The other flag does not open this door.
    other = "allow_unattested" if flag == "allow_simulated" else "allow_simulated"
    stream = connect(
        "127.0.0.1",
        server.port,
        prot="tls",
        client=ClientContext(ca.anchors(), HostName("localhost", **{other: True})),
    )
    with pytest.raises(HandshakeFailed, match=flag):
        echo_via(stream, b"hi")
    stream.close()


def test_a_server_of_another_ca_is_named_as_such(serve, ca, other_ca, server_creds, tmp_path):  # type: ignore[no-untyped-def]
    """Issue 10: "not issued by the CA in FILE" (trust = "file") or "...the Steward CA this Keep
    pins" (trust = "steward"), whatever OpenSSL's own code for it, with that code after it."""
    server = serve(ServerContext(Identity(server_creds)))
    path = other_ca.pem(tmp_path)
    for anchors, where in (
        (TrustAnchors.from_pem_file(path), f"not issued by the CA in {path}"),
        (TrustAnchors.steward_ca([other_ca.cert]), "not issued by the Steward CA this Keep pins"),
    ):
        stream = connect(
            "127.0.0.1", server.port, prot="tls", client=ClientContext(anchors, HostName("localhost"))
        )
        with pytest.raises(HandshakeFailed, match=where):
            echo_via(stream, b"hi")
        stream.close()
