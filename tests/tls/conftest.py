"""Fixtures for the TLS tests: a throwaway PKI, and a single-threaded server on donjon.tls streams.

The server is what a guest does through the WASI host, minus the guest: one thread, one poll
loop, non-blocking accept, per-connection buffers. It runs on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from donjon.tls import (
    Credentials,
    Listener,
    ServerContext,
    StreamError,
    TLSInfo,
    TLSStream,
    TrustAnchors,
    WouldBlock,
)

NOW = datetime.datetime.now(datetime.UTC)
SOCKET_TIMEOUT = 5.0
SERVER_SPIFFE = "spiffe://example.org/keep/server"
CLIENT_A = "spiffe://example.org/keep/a"
CLIENT_B = "spiffe://example.org/keep/b"


@dataclass
class CA:
    """A small certificate authority standing in for the Steward's."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(hours=1))
            .not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def pem(self, directory: Path) -> Path:
        path = directory / f"{self.name.replace(' ', '_')}.pem"
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(
        self,
        *,
        spiffe_id: str | None = None,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        eku: tuple[x509.ObjectIdentifier, ...] = (
            ExtendedKeyUsageOID.SERVER_AUTH,
            ExtendedKeyUsageOID.CLIENT_AUTH,
        ),
        expired: bool = False,
    ) -> Credentials:
        """A leaf shaped like a Steward-issued SVID: empty subject, critical SAN, digitalSignature."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if spiffe_id is not None:
            names.append(x509.UniformResourceIdentifier(spiffe_id))
        start = NOW - datetime.timedelta(days=3 if expired else 0, hours=1)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=1, minutes=30))
            .add_extension(x509.SubjectAlternativeName(names), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return Credentials(
            chain=(cert, self.cert), key=key, attested=True, description=f"attested (issued by {self.name})"
        )

    def anchors(self) -> TrustAnchors:
        return TrustAnchors.steward_ca([self.cert])


def write_credentials(creds: Credentials, directory: Path, stem: str) -> tuple[Path, Path]:
    """PEM files (chain, key) for command-line clients. Test keys only."""
    cert_path = directory / f"{stem}.crt"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in creds.chain))
    key_path.write_bytes(
        creds.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass
class _Conn:
    stream: TLSStream | object
    out: bytearray = field(default_factory=bytearray)
    inbuf: bytearray = field(default_factory=bytearray)
    eof: bool = False
    responded: bool = False


class PollServer:
    """One thread, one poll loop, many connections: an echo server or a one-shot HTTP server."""

    #: Per-connection output limit: beyond it the server stops reading from that client.
    OUT_LIMIT = 1 << 16

    def __init__(self, listener: Listener, *, mode: str = "echo") -> None:
        self.listener = listener
        self.mode = mode
        self.conns: dict[int, _Conn] = {}
        self.infos: list[TLSInfo] = []
        self.errors: list[StreamError] = []
        self.crashed: BaseException | None = None
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="donjon-tls-test-server", daemon=True)

    @property
    def port(self) -> int:
        return self.listener.port

    def start(self) -> PollServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self.conns.values():
            conn.stream.close()  # type: ignore[attr-defined]
        self.listener.close()
        if self.crashed is not None:
            raise AssertionError("test server crashed") from self.crashed

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
        except BaseException as e:  # surfaced by stop()
            self.crashed = e

    def _accept_all(self) -> None:
        while True:
            try:
                stream = self.listener.accept()
            except WouldBlock:
                return
            except StreamError as e:
                self.errors.append(e)
                continue
            self.accepted += 1
            self.conns[stream.fileno()] = _Conn(stream)

    def _serve(self, conn: _Conn) -> bool:
        """Move bytes until nothing moves; False when the connection is finished."""
        stream = conn.stream
        while True:
            moved = False
            if conn.out:
                try:
                    n = stream.send(conn.out)  # type: ignore[attr-defined]
                    del conn.out[:n]
                    moved = True
                except WouldBlock:
                    pass
            if not conn.eof and len(conn.out) < self.OUT_LIMIT:
                try:
                    data = stream.recv(1 << 16)  # type: ignore[attr-defined]
                except WouldBlock:
                    data = None
                if data is not None:
                    moved = True
                    if not data:
                        conn.eof = True
                    elif self.mode == "echo":
                        conn.out += data
                    else:
                        conn.inbuf += data
                        if not conn.responded and b"\r\n\r\n" in conn.inbuf:
                            body = b"<html><body>hello from a Donjon test</body></html>\n"
                            conn.out += (
                                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                                + body
                            )
                            conn.responded = True
            if isinstance(stream, TLSStream) and stream.info is not None and stream.info not in self.infos:
                self.infos.append(stream.info)
            if (conn.eof or conn.responded) and not conn.out:
                return False
            if not moved:
                return True

    def _step(self) -> None:
        self._accept_all()
        for fd, conn in list(self.conns.items()):
            try:
                alive = self._serve(conn)
            except StreamError as e:
                self.errors.append(e)
                alive = False
            if not alive:
                if self.mode == "http":
                    with contextlib.suppress(StreamError):
                        conn.stream.shutdown(2)  # type: ignore[attr-defined]
                conn.stream.close()  # type: ignore[attr-defined]
                del self.conns[fd]
        poller = select.poll()
        poller.register(self.listener.fileno(), select.POLLIN)
        timeout = 0.05
        now = time.monotonic()
        for fd, conn in self.conns.items():
            stream = conn.stream
            events = stream.poll_events(  # type: ignore[attr-defined]
                not conn.eof and len(conn.out) < self.OUT_LIMIT, bool(conn.out)
            )
            if events:
                poller.register(fd, events)
            deadline = stream.deadline  # type: ignore[attr-defined]
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - now))
        poller.poll(timeout * 1000)


@pytest.fixture(scope="session")
def ca() -> CA:
    return CA("Test Steward CA")


@pytest.fixture(scope="session")
def other_ca() -> CA:
    return CA("Some Other CA")


@pytest.fixture(scope="session")
def server_creds(ca: CA) -> Credentials:
    return ca.issue(spiffe_id=SERVER_SPIFFE, dns=("localhost",), ips=("127.0.0.1",))


@pytest.fixture
def serve() -> Iterator[object]:
    """``serve(context=..., mode=..., handshake_timeout=...)`` starts a PollServer on 127.0.0.1."""
    servers: list[PollServer] = []

    def start(
        context: ServerContext | None = None, *, mode: str = "echo", handshake_timeout: float | None = 5.0
    ) -> PollServer:
        listener = Listener.bind(
            "127.0.0.1",
            0,
            prot="tls" if context is not None else "tcp",
            server=context,
            handshake_timeout=handshake_timeout,
        )
        server = PollServer(listener, mode=mode).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def write_creds(tmp_path: Path) -> object:
    """``write_creds(credentials, stem) -> (chain.pem, key.pem)`` in a temporary directory."""

    def write(creds: Credentials, stem: str) -> tuple[Path, Path]:
        return write_credentials(creds, tmp_path, stem)

    return write
