"""Loopback servers around the test registry (test code): a token service for distribution's token
auth, a blob origin and a scriptable redirecting front, a CONNECT proxy. All on 127.0.0.1, each
with its own throwaway CA, each recording what it was sent so a test can assert on it.

The token service follows distribution 2.8 (registry/auth/token/token.go, docs/spec/auth/jwt.md):
a JWT signed ES256 whose header's ``x5c`` holds the signing certificate; the registry checks it
chains to a root in its ``rootcertbundle``, then ``iss`` (its ``issuer``), ``aud`` (its
``service``), ``exp``/``nbf`` (60 s leeway) and that ``access`` grants the actions a request needs.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import secrets
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class CA:
    """A throwaway CA that issues TLS certificates for 127.0.0.1 and token-signing certificates."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def __post_init__(self) -> None:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        self.cert = (
            self._builder(subject, subject, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(self.key, hashes.SHA256())
        )

    @staticmethod
    def _builder(subject: x509.Name, issuer: x509.Name, public: Any) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, *, tls: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = self._builder(subject, self.cert.subject, key.public_key()).add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        if tls:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(self.key, hashes.SHA256()), key

    def server_context(self, directory: Path, name: str) -> ssl.SSLContext:
        cert, key = self.issue(name, tls=True)
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        return context


class _Server:
    """A threaded HTTPS server on 127.0.0.1 whose handler calls ``self.handle(request)``."""

    def __init__(self, context: ssl.SSLContext) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.handle(self)

            def do_HEAD(self) -> None:
                owner.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # A client that hangs up mid-answer or fails the handshake is what some tests do: quiet.
        self.httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.origin = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    @staticmethod
    def answer(
        request: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class TokenService(_Server):
    """distribution's token flow: ``GET /token?service=S&scope=repository:NAME:ACTIONS`` with HTTP
    Basic; answers a JWT granting the asked actions that ``grant`` allows (default: all).

    ``requests`` records every token request's scope (``None`` for a refused one)."""

    issuer = "donjon-test-token-issuer"
    service = "donjon-test-registry"

    def __init__(self, directory: Path, tls: CA, users: dict[str, str]) -> None:
        self.users = users
        self.grant: Callable[[str], set[str]] = lambda name: {"pull", "push"}
        self.oversize = False
        self.requests: list[str | None] = []
        # The signing chain: a root in the registry's rootcertbundle, a leaf in each token's x5c.
        self.root = CA("donjon test token root")
        self.signing_cert, self.signing_key = self.root.issue("donjon test token signer", tls=False)
        self.rootcertbundle = directory / "token-root.pem"
        self.rootcertbundle.write_bytes(self.root.pem)
        super().__init__(tls.server_context(directory, "token-service"))
        self.realm = f"{self.origin}/token"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        user = self._user(request.headers.get("Authorization", ""))
        if url.path != "/token" or user is None:
            self.requests.append(None)
            self.answer(
                request, 401, b'{"details":"bad credentials"}', {"WWW-Authenticate": 'Basic realm="t"'}
            )
            return
        wanted = query.get("scope", [""])[0]
        self.requests.append(wanted)
        if self.oversize:  # an answer that never ends: the client must stop reading
            request.send_response(200)
            request.send_header("Connection", "close")
            request.end_headers()
            with contextlib.suppress(OSError):
                request.wfile.write(b'{"token":"' + b"A" * (4 << 20) + b'"}')
            request.close_connection = True
            return
        body = json.dumps(
            {"token": self.token(user, query.get("service", [""])[0], wanted), "expires_in": 300}
        ).encode()
        self.answer(request, 200, body, {"Content-Type": "application/json"})

    def _user(self, header: str) -> str | None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None
        ok = user in self.users and secrets.compare_digest(self.users[user], password)
        return user if ok else None

    def token(self, user: str, service: str, wanted: str) -> str:
        access = []
        if wanted:
            kind, _, rest = wanted.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = sorted(set(actions.split(",")) & self.grant(name))
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self.signing_cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": self.issuer, "sub": user, "aud": service, "exp": now + 300, "nbf": now - 5,
            "iat": now, "jti": secrets.token_hex(16), "access": access,
        }  # fmt: skip
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        der = self.signing_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)  # JWS (RFC 7515 A.3): R || S, 32 bytes each
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def registry_auth(self) -> str:
        """The ``auth:`` value of the registry's config.yml (flow YAML)."""
        return (
            f"{{token: {{realm: '{self.realm}', service: {self.service}, issuer: {self.issuer}, "
            f"rootcertbundle: {self.rootcertbundle}}}}}"
        )


class BlobOrigin(_Server):
    """Object storage stand-in: serves ``root``/PATH (or ``body``, when set) and records each GET's
    path and its ``Authorization`` header (``None`` when absent)."""

    def __init__(self, directory: Path, tls: CA, root: Path | None = None) -> None:
        self.root = root
        self.body: bytes | None = None
        self.hang_up = False  # close each connection after its answer, without saying so
        self.failures: list[tuple[int, bytes]] = []  # answered (status, body) first, in order
        self.seen: list[tuple[str, str | None]] = []
        super().__init__(tls.server_context(directory, "blob-origin"))

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        self.seen.append((request.path, request.headers.get("Authorization")))
        if self.failures:
            status, body = self.failures.pop(0)
            self.answer(request, status, body, {"Content-Type": "application/json"})
            return
        if self.body is not None:
            self.answer(request, 200, self.body)
            request.close_connection = self.hang_up
            return
        assert self.root is not None
        path = (self.root / request.path.lstrip("/")).resolve()
        if not path.is_relative_to(self.root.resolve()) or not path.is_file():
            self.answer(request, 404)
            return
        self.answer(request, 200, path.read_bytes(), {"Content-Type": "application/octet-stream"})


class RedirectFront(_Server):
    """A registry front answering every GET with a 307 to ``location(path)``; records each path
    and its ``Authorization`` header."""

    def __init__(self, directory: Path, tls: CA) -> None:
        self.location: Callable[[str], str] = lambda path: path
        self.seen: list[tuple[str, str | None]] = []
        super().__init__(tls.server_context(directory, "front"))
        self.host = f"127.0.0.1:{self.port}"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        self.seen.append((request.path, request.headers.get("Authorization")))
        self.answer(request, 307, b"", {"Location": self.location(request.path)})


class ConnectProxy:
    """An HTTP proxy that only tunnels (RFC 9110 9.3.6 ``CONNECT``), recording each target."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.tunnels: list[str] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                data = client.recv(4096)
                if not data:
                    return
                head += data
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            self.tunnels.append(target)
            host, _, port = target.rpartition(":")
            try:
                upstream = socket.create_connection((host, int(port)), timeout=10)
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pair = {client: upstream, upstream: client}
                while True:
                    ready, _, _ = select.select(list(pair), [], [], 30)
                    if not ready:
                        return
                    for sock in ready:
                        data = sock.recv(65536)
                        if not data:
                            return
                        pair[sock].sendall(data)

    def close(self) -> None:
        self.listener.close()


@contextlib.contextmanager
def never_called(wait: float = 0.3) -> Iterator[tuple[int, list[object]]]:
    """A loopback port (and the list of connections it got) where nothing may ever connect: the
    test points a would-be leak at it, then asserts the list is empty after the block."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(wait)
    accepted: list[object] = []

    def watch() -> None:
        with contextlib.suppress(OSError):
            accepted.append(listener.accept())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        watcher.join()
        listener.close()
