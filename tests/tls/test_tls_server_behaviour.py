"""The single-threaded server under misbehaving and numerous clients: nobody stalls anybody."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from donjon.tls import Identity, ServerContext

TIMEOUT = 5.0


def client_ctx(ca_pem, **kwargs):  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context(cafile=str(ca_pem))
    for name, value in kwargs.items():
        setattr(ctx, name, value)
    return ctx


def round_trips(port: int, ctx: ssl.SSLContext, messages: list[bytes]) -> bool:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        for message in messages:
            tls.sendall(message)
            got = b""
            while len(got) < len(message):
                chunk = tls.recv(65536)
                assert chunk, "server closed early"
                got += chunk
            assert got == message
    return True


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "donjon.tls" and r.levelno >= logging.WARNING]


def wait_for(predicate, timeout: float = TIMEOUT) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def ca_pem(ca, tmp_path):  # type: ignore[no-untyped-def]
    return ca.pem(tmp_path)


@pytest.fixture
def tls_server(serve, server_creds):  # type: ignore[no-untyped-def]
    return serve(ServerContext(Identity(server_creds)))


def test_many_concurrent_clients_are_all_echoed(tls_server, ca_pem):  # type: ignore[no-untyped-def]
    ctx = client_ctx(ca_pem)

    def one(i: int) -> bool:
        rng = [os.urandom(1 + (i * 7919) % 3000), os.urandom(64), os.urandom(70_000 if i % 8 == 0 else 10)]
        return round_trips(tls_server.port, ctx, rng)

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(one, range(48)))
    assert all(results) and len(results) == 48
    wait_for(lambda: tls_server.accepted == 48 and not tls_server.conns)
    assert not tls_server.errors


def test_silent_clients_do_not_stall_others_and_time_out(serve, server_creds, ca_pem, caplog):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="donjon.tls")
    server = serve(ServerContext(Identity(server_creds)), handshake_timeout=0.6)
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    # A client that sends half a ClientHello record header and then nothing.
    partial = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    partial.sendall(b"\x16\x03\x01\x02")
    try:
        started = time.monotonic()
        assert round_trips(server.port, client_ctx(ca_pem), [b"still served"])
        assert time.monotonic() - started < 0.5, "a silent client delayed another connection"
        # The silent ones are cut off by the handshake timeout: the server closes them.
        assert silent.recv(100) == b""
        assert partial.recv(100) == b""
    finally:
        silent.close()
        partial.close()
    wait_for(lambda: len([w for w in warnings_of(caplog) if "timed out" in w]) == 2)


def test_client_vanishing_mid_stream_affects_nobody_else(tls_server, ca_pem):  # type: ignore[no-untyped-def]
    ctx = client_ctx(ca_pem)
    raw = socket.create_connection(("127.0.0.1", tls_server.port), timeout=TIMEOUT)
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    tls.sendall(os.urandom(500_000))  # more than the server will buffer while we do not read
    # Reset the TCP connection abruptly (RST, no close_notify) in the middle of the echo.
    tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    tls.close()
    assert round_trips(tls_server.port, ctx, [b"after the reset", os.urandom(100_000)])
    wait_for(lambda: not tls_server.conns)
    assert tls_server.crashed is None


def test_plain_tcp_client_on_tls_port_is_refused_and_logged(tls_server, ca_pem, caplog):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="donjon.tls")
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=TIMEOUT) as plain:
        local = plain.getsockname()
        plain.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        reply = b""
        while chunk := plain.recv(4096):
            reply += chunk
    assert b"HTTP" not in reply  # at most a TLS alert, then the server closed the connection
    wait_for(lambda: warnings_of(caplog))
    (line,) = warnings_of(caplog)
    assert f"127.0.0.1:{local[1]}" in line
    assert "handshake failed" in line
    assert "\n" not in line
    assert round_trips(tls_server.port, client_ctx(ca_pem), [b"server unaffected"])


def test_client_with_wrong_ca_refuses_the_server(tls_server, other_ca, tmp_path, caplog):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="donjon.tls")
    with pytest.raises(ssl.SSLCertVerificationError):
        round_trips(tls_server.port, client_ctx(other_ca.pem(tmp_path)), [b"x"])
    wait_for(lambda: warnings_of(caplog))
    assert "unknown ca" in warnings_of(caplog)[0]


def test_client_checking_another_host_name_refuses(tls_server, ca_pem):  # type: ignore[no-untyped-def]
    ctx = client_ctx(ca_pem)
    with (
        socket.create_connection(("127.0.0.1", tls_server.port), timeout=TIMEOUT) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="match"),
    ):
        ctx.wrap_socket(raw, server_hostname="not-this-keep.example")


def test_tls12_only_client_is_refused(tls_server, ca_pem, caplog):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="donjon.tls")
    ctx = client_ctx(ca_pem, maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        round_trips(tls_server.port, ctx, [b"x"])
    wait_for(lambda: warnings_of(caplog))
    assert "unsupported protocol" in warnings_of(caplog)[0]
    assert round_trips(tls_server.port, client_ctx(ca_pem), [b"1.3 still fine"])


def test_plain_tcp_server_uses_the_same_loop(serve):  # type: ignore[no-untyped-def]
    server = serve(None)
    results: list[bytes] = []

    def one() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
            s.sendall(b"plain bytes")
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(100):
                data += chunk
            results.append(data)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert results == [b"plain bytes"] * 10


def test_garbage_on_the_tls_port_never_hurts_the_server(serve, server_creds, ca_pem):  # type: ignore[no-untyped-def]
    """Any bytes a client sends before a handshake end in a refused connection, never a crash."""
    server = serve(ServerContext(Identity(server_creds)), handshake_timeout=0.5)
    blobs = [
        b"\x16\x03\x01\xff\xff" + os.urandom(2000),  # a handshake record claiming 65535 bytes
        b"\x16\x03\x03\x00\x05\x01\x00\x00\x01\x00",  # a ClientHello of length 1
        b"\x15\x03\x03\x00\x02\x02\x28",  # a fatal alert before anything else
        b"\x17\x03\x03\x00\x10" + os.urandom(16),  # application data before a handshake
        b"\x80\x2e\x01\x03\x01" + os.urandom(46),  # an SSLv2-style ClientHello
        *(os.urandom(n) for n in (1, 5, 100, 5000)),
    ]

    def send(blob: bytes) -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw:
            raw.sendall(blob)
            with contextlib.suppress(ConnectionResetError):
                while raw.recv(4096):
                    pass

    with ThreadPoolExecutor(max_workers=len(blobs)) as pool:
        list(pool.map(send, blobs))
    assert round_trips(server.port, client_ctx(ca_pem), [b"still standing"])
    wait_for(lambda: not server.conns)
    assert server.crashed is None
