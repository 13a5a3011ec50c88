"""examples/echo in a real ``donjon run``, driven by real clients over TCP and TLS on loopback.

One single-threaded guest (poll + non-blocking sockets) serves every client at once; the Keep
terminates TLS. Misbehaving clients (silent, plain TCP on the TLS port, untrusting, vanishing
mid-stream) cost only their own connection.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import ssl
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
from OpenSSL import SSL

MESSAGES = [b"hello", os.urandom(100_000), bytes(range(256)) * 256]


def echo_round_trips(sock: Any, messages: list[bytes]) -> bool:
    for message in messages:
        sock.sendall(message)
        got = bytearray()
        while len(got) < len(message):
            chunk = sock.recv(65536)
            assert chunk, "the Keep closed the connection early"
            got += chunk
        assert bytes(got) == message
    return True


def vanish_mid_stream(port: int, ctx: ssl.SSLContext | None) -> None:
    """Send a lot without ever reading the echo, then reset the connection."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock: Any = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
    sock.settimeout(0.5)
    block = b"z" * 65536
    try:
        for _ in range(64):  # at most 4 MiB: stops once both directions' buffers are full
            sock.send(block)
    except (TimeoutError, ssl.SSLWantWriteError, BlockingIOError):
        pass
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
    sock.close()


def insecure_client() -> ssl.SSLContext:
    """The Keep is unattested: its certificate is self-signed, so nothing can verify it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_tcp_echo_serves_many_clients_and_survives_one_that_vanishes(keep, net: SimpleNamespace) -> None:  # type: ignore[no-untyped-def]
    port = net.free_port()
    clients = 16
    config = net.config_text(
        net.listen_entry("ingest", port, "tcp"), env={"ECHO_EXIT_AFTER": str(clients + 1)}
    )
    k = keep(net.EXAMPLES / "echo/echo.wasm", config)
    assert f"listening on tcp 127.0.0.1:{port}" in k.stderr
    vanish_mid_stream(port, None)

    def client(_: int) -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=net.TIMEOUT) as sock:
            return echo_round_trips(sock, MESSAGES)

    with ThreadPoolExecutor(clients) as pool:
        assert all(pool.map(client, range(clients)))
    code, _ = k.finish()
    assert code == 0, k.stderr
    assert f"served {clients + 1} connections" in k.stderr


def _retry(conn: SSL.Connection, op: Any) -> Any:
    """Run a pyOpenSSL call on a socket with a timeout (non-blocking underneath) until it completes."""
    while True:
        try:
            return op()
        except (SSL.WantReadError, SSL.WantWriteError):
            readable, writable, _ = select.select([conn], [conn], [], 10)
            assert readable or writable, "timed out"


def pyopenssl_echo(port: int) -> tuple[str, str]:
    """A pyOpenSSL client (OpenSSL 3.5+: offers X25519MLKEM768); (version, group) after an echo."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        conn = SSL.Connection(ctx, raw)
        conn.set_connect_state()
        conn.set_tlsext_host_name(b"localhost")
        _retry(conn, conn.do_handshake)
        _retry(conn, lambda: conn.sendall(b"post-quantum hello"))
        got = b""
        while len(got) < 18:
            got += _retry(conn, lambda: conn.recv(100))
        assert got == b"post-quantum hello"
        version, group = conn.get_protocol_version_name(), conn.get_group_name()
        conn.shutdown()
    return version, group or ""


def test_tls_echo_with_real_clients_and_misbehaving_ones(keep, net: SimpleNamespace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = net.free_port()
    good = 8
    # silent + plain TCP + good + pyOpenSSL + s_client + wrong CA + vanishing
    total = 1 + 1 + good + 1 + 1 + 1 + 1
    config = net.config_text(net.listen_entry("ingest", port, "tls"), env={"ECHO_EXIT_AFTER": str(total)})
    k = keep(net.EXAMPLES / "echo/echo.wasm", config)

    # A client that connects and says nothing holds up nobody.
    silent = socket.create_connection(("127.0.0.1", port), timeout=net.TIMEOUT)

    # Plain TCP on the TLS port: refused in the handshake, that connection only.
    with socket.create_connection(("127.0.0.1", port), timeout=net.TIMEOUT) as plain:
        plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
        try:
            while plain.recv(4096):
                pass
        except ConnectionResetError:
            pass
    k.wait_for("handshake failed")

    # A client that trusts another CA refuses the Keep's certificate.
    other = net.CA("Not The Keep CA")
    strict = ssl.create_default_context(cafile=str(other.pem(tmp_path)))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=net.TIMEOUT) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        strict.wrap_socket(raw, server_hostname="localhost")

    vanish_mid_stream(port, insecure_client())

    def client(_: int) -> str:
        with socket.create_connection(("127.0.0.1", port), timeout=net.TIMEOUT) as raw:
            sock = insecure_client().wrap_socket(raw, server_hostname="localhost")
            echo_round_trips(sock, MESSAGES)
            version = sock.version() or ""
            sock.close()
            return version

    with ThreadPoolExecutor(good) as pool:
        assert list(pool.map(client, range(good))) == ["TLSv1.3"] * good

    # pyOpenSSL's OpenSSL negotiates the hybrid post-quantum group with the Keep.
    assert pyopenssl_echo(port) == ("TLSv1.3", "X25519MLKEM768")

    # The system's openssl s_client (Debian OpenSSL 3.0): no ML-KEM, classical X25519 fallback.
    if shutil.which("openssl"):
        result = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief", "-tls1_3"],
            input=b"",
            capture_output=True,
            timeout=net.TIMEOUT,
        )
        text = (result.stdout + result.stderr).decode(errors="replace")
        assert "Protocol version: TLSv1.3" in text, text
        assert "X25519" in text, text
    else:  # keep the connection count right without the binary
        pyopenssl_echo(port)

    silent.close()
    code, _ = k.finish()
    assert code == 0, k.stderr
    assert f"served {total} connections" in k.stderr
    ok = [line for line in k.lines if "tls: connection from" in line]
    failed = [line for line in k.lines if "tls: handshake failed" in line]
    assert len(ok) >= good + 2  # the good ones, pyOpenSSL, s_client (and the vanishing one)
    assert any("group X25519MLKEM768" in line for line in ok)
    assert any("group x25519" in line.lower() and "MLKEM" not in line for line in ok)
    assert any("wrong version number" in line or "http request" in line for line in failed), failed
    assert any("unknown ca" in line.lower() or "bad certificate" in line.lower() for line in failed), failed
    assert all("UNATTESTED" in line for line in ok + failed)
    assert all("TLSv1.3" in line for line in ok)
