"""The WASI host's socket fds over real loopback streams, without a guest: the corner cases.

``poll_oneoff`` is called on a real ``WasiHost`` whose memory is a real wasm memory, with
subscriptions written the way a guest writes them (witx ``$subscription``/``$event``).
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator

import pytest
import wasmtime

from donjon.tls import Identity, Listener, ServerContext, self_signed
from donjon.wasi import ConnectedSocket, GuestSpec, ListenSocket, abi, ffi
from donjon.wasi.errors import Errno
from donjon.wasi.host import WasiHost
from donjon.wasi.sockets import LINGER_SECONDS, StreamSocketFile

SUBS, EVENTS, NEVENTS = 0, 4096, 8192


class Host:
    """A WasiHost with fd 0 = a listener, bound to a real 1-page wasm memory."""

    def __init__(self, listener: Listener) -> None:
        engine = wasmtime.Engine()
        self.store = wasmtime.Store(engine)
        module = wasmtime.Module(engine, '(module (memory (export "memory") 1))')
        instance = wasmtime.Instance(self.store, module, [])
        memory = instance.exports(self.store)["memory"]
        assert isinstance(memory, wasmtime.Memory)
        spec = GuestSpec(args=["probe"], env=[], files=[ListenSocket(listener)])
        self.host = WasiHost(spec, ffi.store_context(self.store))
        self.host.memory.bind(ffi.memory_from_export(self.store, memory))

    def accept(self, nonblocking: bool = True) -> int:
        self.host.sock_accept(0, abi.FDFLAGS_NONBLOCK if nonblocking else 0, NEVENTS)
        return self.host.memory.unpack(struct.Struct("<I"), NEVENTS)[0]

    def poll(self, fd_subs: list[tuple[int, int]], timeout_ns: int) -> list[tuple[int, int, int, int]]:
        """Subscriptions (eventtype, fd) and one relative clock -> events (userdata, errno, type, nbytes)."""
        mem = self.host.memory
        subs = [(i + 1, tag, fd) for i, (tag, fd) in enumerate(fd_subs)]
        for index, (userdata, tag, fd) in enumerate(subs):
            base = SUBS + index * abi.SUBSCRIPTION_SIZE
            mem.pack(abi.SUBSCRIPTION_HEAD, base, userdata, tag)
            mem.pack(abi.SUBSCRIPTION_FD, base + 16, fd)
        base = SUBS + len(subs) * abi.SUBSCRIPTION_SIZE
        mem.pack(abi.SUBSCRIPTION_HEAD, base, 0, abi.EVENTTYPE_CLOCK)
        mem.pack(abi.SUBSCRIPTION_CLOCK, base + 16, abi.CLOCK_MONOTONIC, timeout_ns, 0, 0)
        self.host.poll_oneoff(SUBS, EVENTS, len(subs) + 1, NEVENTS)
        count = mem.unpack(struct.Struct("<I"), NEVENTS)[0]
        events = []
        for i in range(count):
            userdata, err, tag, nbytes, _flags = mem.unpack(abi.EVENT, EVENTS + i * abi.EVENT.size)
            events.append((userdata, err, tag, nbytes))
        return events

    def recv(self, fd: int, n: int) -> bytes:
        buf = bytearray(n)
        got, _ = self.host.fds.get(fd).sock_recv([memoryview(buf)], 0)
        return bytes(buf[:got])


@pytest.fixture
def tls_listener() -> Iterator[Listener]:
    listener = Listener.bind(
        "127.0.0.1", 0, prot="tls", server=ServerContext(Identity(self_signed())), handshake_timeout=0.5
    )
    yield listener
    listener.close()


def tls_client(port: int) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)


def handshake(h: Host, client: ssl.SSLSocket, fd: int) -> None:
    """Drive both sides: the client in non-blocking mode, the Keep's side through poll_oneoff."""
    client.setblocking(False)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        try:
            client.do_handshake()
            break
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            h.poll([(abi.EVENTTYPE_FD_READ, fd)], 20_000_000)
    client.setblocking(True)
    client.settimeout(5)


def test_poll_wakes_for_a_handshake_deadline(tls_listener: Listener) -> None:
    """A silent TLS client: poll returns at its handshake deadline, and the fd then reads ECONNRESET."""
    h = Host(tls_listener)
    silent = socket.create_connection(("127.0.0.1", tls_listener.port), timeout=5)
    try:
        assert h.poll([(abi.EVENTTYPE_FD_READ, 0)], 5_000_000_000)[0][:3] == (1, 0, abi.EVENTTYPE_FD_READ)
        fd = h.accept()
        start = time.monotonic()
        events = h.poll([(abi.EVENTTYPE_FD_READ, fd)], 5_000_000_000)  # the clock alone would be 5 s
        waited = time.monotonic() - start
        assert [e[:3] for e in events] == [(1, 0, abi.EVENTTYPE_FD_READ)]
        assert waited < 2.0
        with pytest.raises(Errno) as info:
            h.recv(fd, 10)
        assert info.value.code == abi.ECONNRESET
    finally:
        silent.close()
        h.host.close()


def test_poll_sees_plaintext_already_decrypted(tls_listener: Listener) -> None:
    """Half a record read: the rest is in user space, not on the socket, and poll still says readable."""
    h = Host(tls_listener)
    client = tls_client(tls_listener.port)
    try:
        h.poll([(abi.EVENTTYPE_FD_READ, 0)], 5_000_000_000)
        fd = h.accept()
        handshake(h, client, fd)
        client.sendall(b"a" * 100)  # one TLS record
        assert h.poll([(abi.EVENTTYPE_FD_READ, fd)], 5_000_000_000)[0][:3] == (1, 0, abi.EVENTTYPE_FD_READ)
        assert h.recv(fd, 40) == b"a" * 40
        events = h.poll([(abi.EVENTTYPE_FD_READ, fd)], 0)  # the clock is due at once, too
        assert (1, 0, abi.EVENTTYPE_FD_READ, 60) in events  # nbytes: the buffered plaintext
        assert h.recv(fd, 100) == b"a" * 60
        assert h.poll([(abi.EVENTTYPE_FD_READ, fd)], 1_000_000) == [(0, 0, abi.EVENTTYPE_CLOCK, 0)]
    finally:
        client.close()
        h.host.close()


def test_a_peer_that_never_reads_gets_eagain_and_close_still_delivers_everything(
    tls_listener: Listener,
) -> None:
    h = Host(tls_listener)
    client = tls_client(tls_listener.port)
    try:
        h.poll([(abi.EVENTTYPE_FD_READ, 0)], 5_000_000_000)
        fd = h.accept()
        handshake(h, client, fd)
        f = h.host.fds.get(fd)
        assert isinstance(f, StreamSocketFile)
        block = memoryview(bytes(range(256)) * 256)
        sent = 0
        with pytest.raises(Errno) as info:
            for _ in range(1024):  # at most 64 MiB: the host must refuse long before
                sent += f.sock_send([block], 0)
        assert info.value.code == abi.EAGAIN
        assert sent < 16 << 20  # kernel socket buffers plus at most 64 KiB held by the stream
        assert f.stream.output_pending  # the last chunk is held in user space...
        h.host.fd_close(fd)  # ...and closing must not drop it
        assert len(h.host.lingering) == 1
        received = bytearray()
        client.settimeout(0.2)
        end = time.monotonic() + LINGER_SECONDS
        while len(received) < sent and time.monotonic() < end:
            try:
                chunk = client.recv(1 << 16)
            except (TimeoutError, ssl.SSLWantReadError):
                h.host.lingering.step()  # what a poll or a blocking wait of the host does
                continue
            if not chunk:
                break
            received += chunk
        assert len(received) == sent
        assert bytes(received[: len(block)]) == bytes(block)
        h.host.lingering.step()
        assert len(h.host.lingering) == 0
    finally:
        client.close()
        h.host.close()


def test_blocking_recv_waits_for_data_and_eof() -> None:
    """A blocking fd waits in poll(2) (no busy loop) until the peer sends, then sees end of stream."""
    listener = Listener.bind("127.0.0.1", 0, prot="tcp")
    h = Host(listener)
    peer = socket.create_connection(("127.0.0.1", listener.port), timeout=5)
    try:
        fd = h.accept(nonblocking=False)

        def later() -> None:
            time.sleep(0.3)
            peer.sendall(b"late")
            time.sleep(0.1)
            peer.shutdown(socket.SHUT_WR)

        threading.Thread(target=later, daemon=True).start()
        start_cpu, start = time.process_time(), time.monotonic()
        assert h.recv(fd, 10) == b"late"
        assert time.monotonic() - start >= 0.25
        assert time.process_time() - start_cpu < 0.2  # waited, did not spin
        assert h.recv(fd, 10) == b""
    finally:
        peer.close()
        h.host.close()


def test_connected_socket_in_the_spec_and_errnos() -> None:
    """A pre-opened connected stream: fdstat, bad flags, shutdown of both sides, reset by the peer."""
    from donjon.tls import connect

    server = socket.create_server(("127.0.0.1", 0))
    stream = connect("127.0.0.1", server.getsockname()[1], prot="tcp")
    accepted, _ = server.accept()
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    host = WasiHost(GuestSpec(args=["x"], env=[], files=[ConnectedSocket(stream)]), ffi.store_context(store))
    try:
        f = host.fds.get(0)
        assert f.filetype == abi.FILETYPE_SOCKET_STREAM and f.is_socket
        with pytest.raises(Errno) as info:
            f.set_fdflags(abi.FDFLAGS_APPEND)
        assert info.value.code == abi.EINVAL
        with pytest.raises(Errno) as info:
            f.sock_accept(0)
        assert info.value.code == abi.EINVAL  # a socket, but not a listening one (POSIX accept(2))
        with pytest.raises(Errno) as info:
            f.sock_recv([memoryview(bytearray(4))], 1 << 5)
        assert info.value.code == abi.EINVAL  # unknown riflags
        accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        accepted.close()  # reset
        time.sleep(0.05)
        with pytest.raises(Errno) as info:
            f.sock_recv([memoryview(bytearray(4))], 0)
        assert info.value.code == abi.ECONNRESET
        f.sock_shutdown(abi.SDFLAGS_RD | abi.SDFLAGS_WR)  # the peer is gone: nothing left to shut
    finally:
        host.close()
        server.close()
    assert stream.closed


def test_a_full_fd_table_closes_the_accepted_connection() -> None:
    """ENFILE from sock_accept: the connection taken from the backlog is closed, not leaked."""
    from donjon.wasi.fdtable import MAX_FDS
    from donjon.wasi.files import NullFile

    listener = Listener.bind("127.0.0.1", 0, prot="tcp")
    h = Host(listener)
    while len(h.host.fds.items()) < MAX_FDS:
        h.host.fds.insert(NullFile())
    client = socket.create_connection(("127.0.0.1", listener.port), timeout=5)
    try:
        h.poll([(abi.EVENTTYPE_FD_READ, 0)], 5_000_000_000)
        with pytest.raises(Errno) as info:
            h.accept()
        assert info.value.code == abi.ENFILE
        assert client.recv(10) == b""  # the Keep closed it
    finally:
        client.close()
        h.host.close()
