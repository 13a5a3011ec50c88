"""Real TLS clients against a single-threaded server on donjon.tls streams (127.0.0.1 only).

Clients: pyOpenSSL (cryptography's OpenSSL, with ML-KEM), Python's ``ssl``, the system's
``openssl s_client`` and ``curl`` (Debian's OpenSSL 3.0, without ML-KEM).
"""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from donjon.tls import UNATTESTED, Identity, ServerContext, parse_spiffe_id, self_signed

TIMEOUT = 5.0


def pyopenssl_echo(port: int, ca_pem: Path, payload: bytes) -> tuple[bytes, str | None, str]:
    """A plain pyOpenSSL client with OpenSSL's default groups; returns (echo, group, version)."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.load_verify_locations(str(ca_pem))
    ctx.set_verify(SSL.VERIFY_PEER, lambda *args: bool(args[-1]))
    sock = blocking_with_timeouts(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
    conn = SSL.Connection(ctx, sock)
    conn.set_connect_state()
    conn.set_tlsext_host_name(b"localhost")
    try:
        conn.do_handshake()
        conn.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += conn.recv(65536)
        return got, conn.get_group_name(), conn.get_protocol_version_name()
    finally:
        sock.close()


def blocking_with_timeouts(sock: socket.socket) -> socket.socket:
    """pyOpenSSL needs a blocking socket; kernel timeouts keep it bounded (EAGAIN after 5 s)."""
    sock.settimeout(None)
    timeval = struct.pack("ll", int(TIMEOUT), 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    return sock


def ssl_context(ca_pem: Path, **kwargs: object) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_pem))
    for name, value in kwargs.items():
        setattr(ctx, name, value)
    return ctx


def ssl_echo(port: int, ctx: ssl.SSLContext, payload: bytes, host: str = "localhost") -> tuple[bytes, str]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = tls.recv(65536)
            if not chunk:
                break
            got += chunk
        return got, tls.version() or ""


def wait_for(predicate: object, timeout: float = TIMEOUT) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


def handshake_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "donjon.tls" and r.levelno == logging.WARNING and "handshake" in r.getMessage()
    ]


@pytest.fixture
def ca_pem(ca, tmp_path):  # type: ignore[no-untyped-def]
    return ca.pem(tmp_path)


@pytest.fixture
def tls_server(serve, server_creds):  # type: ignore[no-untyped-def]
    return serve(ServerContext(Identity(server_creds)))


def test_pyopenssl_client_negotiates_tls13_with_hybrid_pq_group(tls_server, ca_pem):  # type: ignore[no-untyped-def]
    payload = b"hello post-quantum world" * 100
    got, group, version = pyopenssl_echo(tls_server.port, ca_pem, payload)
    assert got == payload
    assert version == "TLSv1.3"
    assert group == "X25519MLKEM768"
    wait_for(lambda: tls_server.infos)
    assert tls_server.infos[0].group == "X25519MLKEM768"
    assert tls_server.infos[0].version == "TLSv1.3"


def test_python_ssl_client_echo(tls_server, ca_pem):  # type: ignore[no-untyped-def]
    got, version = ssl_echo(tls_server.port, ssl_context(ca_pem), b"x" * 200_000)
    assert got == b"x" * 200_000
    assert version == "TLSv1.3"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
def test_openssl_s_client_falls_back_to_classical_group(tls_server, ca_pem):  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(
        [
            "openssl", "s_client", "-connect", f"127.0.0.1:{tls_server.port}", "-CAfile", str(ca_pem),
            "-verify_return_error", "-verify_hostname", "localhost", "-servername", "localhost", "-brief",
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"ping from s_client\n")
        proc.stdin.flush()
        line = _readline_with_timeout(proc.stdout)
        assert line == b"ping from s_client\n"
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=TIMEOUT)
    text = err.decode(errors="replace")
    assert "Protocol version: TLSv1.3" in text
    assert "Verification: OK" in text
    assert "X25519" in text and "MLKEM" not in text.upper()
    wait_for(lambda: tls_server.infos)
    assert tls_server.infos[0].group is not None
    assert tls_server.infos[0].group.lower() == "x25519"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
def test_small_negotiated_records_still_echo_every_byte(tls_server, ca_pem):  # type: ignore[no-untyped-def]
    """A client asking for 512-byte records (RFC 6066 max_fragment_length) gets all its bytes back."""
    proc = subprocess.Popen(
        [
            "openssl", "s_client", "-connect", f"127.0.0.1:{tls_server.port}", "-CAfile", str(ca_pem),
            "-verify_return_error", "-servername", "localhost", "-maxfraglen", "512", "-quiet",
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    line = bytes(range(33, 127)) * 200 + b"\n"
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(line)
        proc.stdin.flush()
        assert _readline_with_timeout(proc.stdout) == line
    finally:
        proc.kill()
        proc.communicate(timeout=TIMEOUT)


def _readline_with_timeout(stream, timeout: float = TIMEOUT) -> bytes:  # type: ignore[no-untyped-def]
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else b""


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl binary")
def test_curl_https_get(serve, server_creds, ca_pem):  # type: ignore[no-untyped-def]
    server = serve(ServerContext(Identity(server_creds)), mode="http")
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-v",
            "--max-time",
            "5",
            "--cacert",
            str(ca_pem),
            f"https://localhost:{server.port}/",
        ],
        capture_output=True,
        timeout=10,
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    assert b"hello from a Donjon test" in out.stdout
    assert b"TLSv1.3" in out.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl binary")
def test_curl_refuses_unattested_self_signed_keep_without_its_certificate(serve):  # type: ignore[no-untyped-def]
    server = serve(ServerContext(Identity(self_signed())), mode="http")
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "5", f"https://localhost:{server.port}/"],
        capture_output=True,
        timeout=10,
    )
    assert out.returncode == 60  # CURLE_PEER_FAILED_VERIFICATION


def test_unattested_identity_is_said_on_every_connection_line(serve, tmp_path, caplog):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="donjon.tls")
    creds = self_signed(spiffe_id=parse_spiffe_id("spiffe://example.org/keep/server"))
    server = serve(ServerContext(Identity(creds)))
    pem = tmp_path / "self.pem"
    pem.write_bytes(creds.leaf.public_bytes(serialization.Encoding.PEM))
    assert ssl_echo(server.port, ssl_context(pem), b"abc")[0] == b"abc"
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw:
        raw.sendall(b"not TLS\r\n\r\n")
        raw.recv(100)
    wait_for(lambda: len([r for r in caplog.records if r.name == "donjon.tls"]) >= 2)
    lines = [r.getMessage() for r in caplog.records if r.name == "donjon.tls"]
    assert all(UNATTESTED in line for line in lines), lines
