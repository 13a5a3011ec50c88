"""How TLS records meet TCP segments: split records, many records at once, close_notify ordering.

These tests shape the ciphertext on the wire with a peer whose records the test writes by hand,
and check what a guest (or the WASI host's poll loop) sees: nothing before a record is complete,
every byte once it is, and a wake-up for every end of the input (close_notify without FIN,
FIN without close_notify) — whether the stream reads records from the kernel one by one or
reads ahead into user space, where the kernel cannot see them.
"""

from __future__ import annotations

import hashlib
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from OpenSSL import SSL

from donjon.tls import Identity, Listener, ServerContext, TLSStream, WouldBlock
from donjon.tls.stream import WRITE_CHUNK

TIMEOUT = 5.0


def kernel_readable(fd: int, timeout: float = 0.0) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


class HandPeer:
    """A TLS 1.3 client whose ciphertext the test sends itself, in whatever segments it likes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctx = SSL.Context(SSL.TLS_METHOD)  # about record framing: the server is not verified
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()

    def wire(self) -> bytes:
        """The ciphertext OpenSSL has written since the last call."""
        out = b""
        while True:
            try:
                out += self.conn.bio_read(1 << 16)
            except SSL.WantReadError:
                return out

    def handshake(self, server: TLSStream) -> None:
        done = False
        end = time.monotonic() + TIMEOUT
        while not (done and server.handshake_done):
            assert time.monotonic() < end, "handshake did not complete"
            if not done:
                try:
                    self.conn.do_handshake()
                    done = True
                except SSL.WantReadError:
                    pass
            out = self.wire()
            if out:
                self.sock.sendall(out)
            server.progress()
            if kernel_readable(self.sock.fileno(), 0.01):
                self.conn.bio_write(self.sock.recv(1 << 16))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def hand_pair(server_creds) -> Iterator[tuple[TLSStream, HandPeer]]:  # type: ignore[no-untyped-def]
    listener = Listener.bind("127.0.0.1", 0, prot="tls", server=ServerContext(Identity(server_creds)))
    peer = HandPeer(listener.port)
    end = time.monotonic() + TIMEOUT
    while True:
        try:
            server = listener.accept()
            break
        except WouldBlock:
            assert time.monotonic() < end
            select.select([listener.fileno()], [], [], 0.05)
    assert isinstance(server, TLSStream)
    peer.handshake(server)
    yield server, peer
    server.close()
    peer.close()
    listener.close()


def test_a_record_split_across_many_segments_shows_only_when_complete(hand_pair):  # type: ignore[no-untyped-def]
    server, peer = hand_pair
    payload = os.urandom(3000)
    peer.conn.send(payload)
    wire = peer.wire()
    sizes = [1, 2, 3, 50, 200]  # the 5-byte header split too, then pieces of the body
    pieces, pos, i = [], 0, 0
    while pos < len(wire):
        pieces.append(wire[pos : pos + sizes[i % len(sizes)]])
        pos += len(pieces[-1])
        i += 1
    assert len(pieces) > 20
    for piece in pieces[:-1]:
        peer.sock.sendall(piece)
        assert kernel_readable(server.fileno(), TIMEOUT)
        assert not server.readable()  # half a record is not something to read
        with pytest.raises(WouldBlock):
            server.recv(1 << 16)
        assert server.pending() == 0
        assert server.poll_events(True, False) == select.POLLIN
    peer.sock.sendall(pieces[-1])
    assert kernel_readable(server.fileno(), TIMEOUT)
    assert server.readable()
    assert server.recv(1 << 16) == payload


def test_many_records_in_one_read_then_close_notify_without_fin(hand_pair):  # type: ignore[no-untyped-def]
    """Records already read stay visible to a poll loop, and so does the end of the input."""
    server, peer = hand_pair
    records = [bytes([i]) * 100 for i in range(50)]
    for record in records:
        assert peer.conn.send(record) == 100  # one record each
    peer.conn.shutdown()  # close_notify; TCP stays open (no FIN)
    peer.sock.sendall(peer.wire())
    expected = b"".join(records)
    got = b""
    deadline = time.monotonic() + TIMEOUT
    while len(got) < len(expected):
        assert time.monotonic() < deadline
        if not server.pending():
            assert kernel_readable(server.fileno(), TIMEOUT)
        got += server.recv(10)
        if len(got) < len(expected) and not kernel_readable(server.fileno()):
            # Nothing left in the kernel: the rest must show without its help.
            assert server.pending() > 0
            assert server.readable()
    assert got == expected
    poller = select.poll()
    poller.register(server.fileno(), server.poll_events(True, False))
    assert poller.poll(0), "a poll loop waiting to read would sleep through the close_notify"
    assert server.readable()
    assert server.recv(100) == b""
    assert not server.truncated  # a clean end: close_notify


def test_ragged_eof_after_buffered_records_is_truncation(hand_pair):  # type: ignore[no-untyped-def]
    server, peer = hand_pair
    peer.conn.send(b"last words")
    peer.sock.sendall(peer.wire())
    peer.sock.shutdown(socket.SHUT_WR)  # FIN without close_notify
    end = time.monotonic() + TIMEOUT
    got = b""
    while True:
        assert time.monotonic() < end
        try:
            data = server.recv(100)
        except WouldBlock:
            kernel_readable(server.fileno(), 0.05)
            continue
        if not data:
            break
        got += data
    assert got == b"last words"
    assert server.truncated


def test_large_writes_to_a_slow_reader_stay_bounded_and_end_with_close_notify(ca, server_creds):  # type: ignore[no-untyped-def]
    """Every byte arrives in order, no send takes more than WRITE_CHUNK, and the close_notify
    follows the last byte and precedes the FIN (the reader sees a clean end, not a truncation)."""
    payload = os.urandom(2 << 20)
    listener = Listener.bind("127.0.0.1", 0, prot="tls", server=ServerContext(Identity(server_creds)))
    outcome: list[object] = []

    def slow_reader() -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
        timeval = struct.pack("ll", int(TIMEOUT), 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        sock.connect(("127.0.0.1", listener.port))
        conn = SSL.Connection(SSL.Context(SSL.TLS_METHOD), sock)
        conn.set_connect_state()
        conn.do_handshake()
        digest = hashlib.sha256()
        reads = 0
        try:
            while True:
                digest.update(conn.recv(4096))
                reads += 1
                if reads % 64 == 0:
                    time.sleep(0.002)
        except SSL.ZeroReturnError:
            outcome.append(digest.digest())
        except SSL.Error as e:
            outcome.append(e)
        sock.close()

    thread = threading.Thread(target=slow_reader, daemon=True)
    thread.start()
    with listener:
        end = time.monotonic() + TIMEOUT
        while True:
            try:
                stream = listener.accept()
                break
            except WouldBlock:
                assert time.monotonic() < end
                select.select([listener.fileno()], [], [], 0.05)
        assert isinstance(stream, TLSStream)
        stream._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 << 10)
        sent = 0
        stuck = 0
        end = time.monotonic() + 4 * TIMEOUT
        while sent < len(payload):
            assert time.monotonic() < end
            try:
                taken = stream.send(payload[sent:])
            except WouldBlock:
                stuck += 1
                select.select([], [stream.fileno()], [], 0.05)
                stream.progress()
                continue
            assert 0 < taken <= WRITE_CHUNK
            sent += taken
        assert stuck > 0  # the reader really was slower than the writer
        stream.shutdown(socket.SHUT_WR)
        while stream.output_pending:
            assert time.monotonic() < end
            select.select([], [stream.fileno()], [], 0.05)
            stream.progress()
        thread.join(TIMEOUT)
        stream.close()
    assert outcome == [hashlib.sha256(payload).digest()]
