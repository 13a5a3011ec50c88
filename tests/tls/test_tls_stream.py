"""The stream interface itself: non-blocking semantics, errnos, bounded buffers, identity renewal."""

from __future__ import annotations

import errno
import hashlib
import os
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from donjon.tls import (
    BrokenPipe,
    ClientContext,
    ConnectionReset,
    HandshakeFailed,
    HostName,
    Identity,
    Listener,
    ServerContext,
    Stream,
    StreamClosed,
    TCPStream,
    TLSStream,
    WouldBlock,
    connect,
)

TIMEOUT = 5.0


def accept(listener: Listener, timeout: float = TIMEOUT) -> Stream:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            return listener.accept()
        except WouldBlock:
            select.select([listener.fileno()], [], [], 0.05)
    raise AssertionError("no connection to accept")


def until(stream: Stream, predicate, *, read: bool = True, timeout: float = TIMEOUT):  # type: ignore[no-untyped-def]
    """Poll the way a WASI host would until ``predicate()`` holds."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        stream.progress()
        poller = select.poll()
        poller.register(stream.fileno(), stream.poll_events(read, not read) or select.POLLIN)
        poller.poll(20)


@pytest.fixture
def tls_pair(ca, server_creds) -> Iterator[tuple[TLSStream, TLSStream]]:  # type: ignore[no-untyped-def]
    """(server stream, client stream), both Donjon's, handshake done, in this one thread."""
    listener = Listener.bind("127.0.0.1", 0, prot="tls", server=ServerContext(Identity(server_creds)))
    context = ClientContext(ca.anchors(), HostName("localhost"))
    client = connect("127.0.0.1", listener.port, prot="tls", client=context)
    server = accept(listener)
    assert isinstance(server, TLSStream) and isinstance(client, TLSStream)
    end = time.monotonic() + TIMEOUT
    while not (server.handshake_done and client.handshake_done):
        assert time.monotonic() < end
        server.progress()
        client.progress()
    yield server, client
    server.close()
    client.close()
    listener.close()


def test_recv_without_data_would_block_with_eagain(tls_pair):  # type: ignore[no-untyped-def]
    server, _ = tls_pair
    with pytest.raises(WouldBlock) as info:
        server.recv(100)
    assert info.value.errno == errno.EAGAIN
    assert not server.readable()
    assert server.poll_events(True, False) == select.POLLIN


def test_peek_pending_and_partial_reads(tls_pair):  # type: ignore[no-untyped-def]
    server, client = tls_pair
    assert client.send(b"0123456789" * 10) == 100
    until(server, server.readable)
    assert server.recv(5, peek=True) == b"01234"
    assert server.recv(10) == b"0123456789"
    assert server.pending() == 90  # the rest of the record is decrypted and buffered
    assert server.readable()
    assert server.recv(1000) == (b"0123456789" * 9)
    assert server.recv(0) == b""


def test_half_close_delivers_eof_and_keeps_the_other_direction(tls_pair):  # type: ignore[no-untyped-def]
    server, client = tls_pair
    client.send(b"request")
    client.shutdown(socket.SHUT_WR)  # close_notify: TLS 1.3 half-close
    with pytest.raises(BrokenPipe) as info:
        client.send(b"more")
    assert info.value.errno == errno.EPIPE
    until(server, server.readable)
    assert server.recv(100) == b"request"
    until(server, server.readable)
    assert server.recv(100) == b""  # clean end of stream
    assert server.send(b"response") == 8
    until(client, client.readable)
    assert client.recv(100) == b"response"
    server.close()
    until(client, client.readable)
    assert client.recv(100) == b""


def test_closed_stream_is_ebadf_and_close_is_idempotent(tls_pair):  # type: ignore[no-untyped-def]
    server, _ = tls_pair
    server.close()
    server.close()
    for op in (lambda: server.recv(1), lambda: server.send(b"x"), lambda: server.shutdown(socket.SHUT_WR)):
        with pytest.raises(StreamClosed) as info:
            op()
        assert info.value.errno == errno.EBADF


def test_handshake_is_incremental_and_times_out(ca, server_creds):  # type: ignore[no-untyped-def]
    listener = Listener.bind(
        "127.0.0.1", 0, prot="tls", server=ServerContext(Identity(server_creds)), handshake_timeout=0.3
    )
    with listener, socket.create_connection(("127.0.0.1", listener.port), timeout=TIMEOUT) as silent:
        stream = accept(listener)
        started = time.monotonic()
        with pytest.raises(WouldBlock):
            stream.recv(10)
        with pytest.raises(WouldBlock):
            stream.send(b"x")
        assert time.monotonic() - started < 0.1  # never waits for the peer
        assert not stream.readable() and not stream.writable()
        assert stream.deadline is not None
        time.sleep(max(0.0, stream.deadline - time.monotonic()) + 0.01)
        stream.progress()
        assert stream.readable()
        with pytest.raises(HandshakeFailed, match="timed out") as info:
            stream.recv(10)
        assert info.value.errno == errno.ECONNRESET
        assert silent.recv(10) == b""  # the server side closed the connection
        stream.close()


def test_a_peer_that_never_reads_cannot_grow_our_buffers(ca, server_creds):  # type: ignore[no-untyped-def]
    """send() stops taking bytes (WouldBlock) after socket buffers plus one record; no byte is lost."""
    payload = os.urandom(4 << 20)
    listener = Listener.bind("127.0.0.1", 0, prot="tls", server=ServerContext(Identity(server_creds)))
    start_reading = threading.Event()
    received: list[bytes] = []

    def slow_client() -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        timeval = struct.pack("ll", int(TIMEOUT), 0)  # blocking, but bounded: pyOpenSSL needs blocking
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        sock.connect(("127.0.0.1", listener.port))
        ctx = SSL.Context(SSL.TLS_METHOD)  # this test is about buffering; it does not verify the server
        conn = SSL.Connection(ctx, sock)
        conn.set_connect_state()
        conn.do_handshake()
        start_reading.wait(TIMEOUT)
        digest = hashlib.sha256()
        total = 0
        while total < len(payload):
            chunk = conn.recv(1 << 16)
            digest.update(chunk)
            total += len(chunk)
        received.append(digest.digest())
        sock.close()

    thread = threading.Thread(target=slow_client, daemon=True)
    thread.start()
    with listener:
        stream = accept(listener)
        assert isinstance(stream, TLSStream)
        until(stream, lambda: stream.handshake_done)
        stream._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
        sent = 0
        with pytest.raises(WouldBlock):
            while True:
                sent += stream.send(payload[sent:])
        assert sent < 1 << 20, f"{sent} bytes taken while the peer reads nothing"
        assert not stream.writable()
        # While output is stuck, a reader still waits for input too (the peer may talk first).
        assert stream.poll_events(True, False) == select.POLLIN | select.POLLOUT
        start_reading.set()
        while sent < len(payload):
            try:
                sent += stream.send(payload[sent:])
            except WouldBlock:
                until(stream, stream.writable, read=False)
        until(stream, lambda: not thread.is_alive() or stream.writable(), read=False)
        thread.join(TIMEOUT)
        stream.close()
    assert received == [hashlib.sha256(payload).digest()]


def test_renewed_identity_is_used_by_new_connections_only(serve, ca, tmp_path):  # type: ignore[no-untyped-def]
    first, second = ca.issue(dns=("localhost",)), ca.issue(dns=("localhost",))
    identity = Identity(first)
    server = serve(ServerContext(identity))
    ctx = ssl.create_default_context(cafile=str(ca.pem(tmp_path)))

    def open_() -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        return ctx.wrap_socket(raw, server_hostname="localhost")

    def der(c) -> bytes:  # type: ignore[no-untyped-def]
        return bytes(c.public_bytes(serialization.Encoding.DER))

    old = open_()
    assert old.getpeercert(binary_form=True) == der(first.leaf)
    identity.replace(second)
    with open_() as new:
        assert new.getpeercert(binary_form=True) == der(second.leaf)
        new.sendall(b"new")
        assert new.recv(10) == b"new"
    old.sendall(b"old still works")
    assert old.recv(100) == b"old still works"
    old.close()


def test_tcp_stream_maps_reset_to_econnreset():  # type: ignore[no-untyped-def]
    listener = Listener.bind("127.0.0.1", 0, prot="tcp")
    with listener:
        client = connect("127.0.0.1", listener.port, prot="tcp")
        server = accept(listener)
        assert isinstance(client, TCPStream) and isinstance(server, TCPStream)
        with pytest.raises(WouldBlock):
            client.recv(10)
        server.send(b"hello")
        until(client, client.readable)
        assert client.recv(2, peek=True) == b"he"
        assert client.recv(10) == b"hello"
        server._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.close()
        until(client, client.readable)
        with pytest.raises(ConnectionReset) as info:
            client.recv(10)
        assert info.value.errno == errno.ECONNRESET
        client.close()
        with pytest.raises(StreamClosed):
            client.recv(1)


class ScriptedConn:
    """An ``SSL.Connection`` stand-in whose ``send`` follows a script: bytes taken, or an exception."""

    def __init__(self, script: list[object]) -> None:
        self.script = script
        self.calls: list[bytes] = []

    def do_handshake(self) -> None:
        pass

    def get_peer_certificate(self, *, as_cryptography: bool) -> None:
        return None

    def get_protocol_version_name(self) -> str:
        return "TLSv1.3"

    def get_cipher_name(self) -> str:
        return "TLS_AES_128_GCM_SHA256"

    def get_group_name(self) -> str:
        return "x25519"

    def send(self, data: bytes) -> int:
        self.calls.append(bytes(data))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        assert isinstance(step, int)
        return step


def test_held_bytes_are_retried_until_all_are_sent():  # type: ignore[no-untyped-def]
    """After WANT_WRITE the same bytes go again; a partial retry (small records) loses nothing."""
    from donjon.tls.context import HandshakeNotes
    from donjon.tls.stream import WRITE_CHUNK

    data = os.urandom(WRITE_CHUNK + 100)
    first = data[:WRITE_CHUNK]
    script: list[object] = [SSL.WantWriteError(), 512, SSL.WantWriteError(), SSL.WantWriteError()]
    conn = ScriptedConn([*script, WRITE_CHUNK - 512, 4])
    left, right = socket.socketpair()
    with left, right:
        fake: Any = conn
        stream = TLSStream(left, fake, HandshakeNotes(), role="to", peer="test", credentials=None)
        assert stream.send(data) == WRITE_CHUNK  # held, counted as sent
        assert not stream.writable()  # the retry sent 512 bytes; the rest is stuck again
        with pytest.raises(WouldBlock):
            stream.send(b"next")  # still stuck: "next" is not taken
        stream.progress()  # the rest goes
        assert stream.send(b"next") == 4
        assert conn.calls == [first, first, first[512:], first[512:], first[512:], b"next"]
