"""examples/client in a real ``donjon run``: the Keep connects out and verifies the server.

The server is Python's ``ssl`` with a certificate from a test CA; the Keep trusts that CA through
``trust = "file"`` and checks the host name, so a server with another name is refused during the
handshake and the guest sees only a failed connection.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

PAGE = b"<html><body>hello from a verified server</body></html>\n"


class OneShotHTTPS:
    """Answers each connection's request with a fixed page (TLS 1.3 only), in a thread."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.ctx.load_cert_chain(str(cert), str(key))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.errors: list[Exception] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            raw, _ = self.sock.accept()
        except OSError as e:
            self.errors.append(e)
            return
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                self.requests.append(request)
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(PAGE)}\r\nConnection: close\r\n\r\n"
                conn.sendall(head.encode() + PAGE)
        except (OSError, ssl.SSLError) as e:
            self.errors.append(e)

    def close(self) -> None:
        self._thread.join(10)
        self.sock.close()


@pytest.fixture
def https(net: SimpleNamespace, tmp_path: Path) -> Iterator[object]:
    ca = net.CA("Client Test CA")
    servers: list[OneShotHTTPS] = []

    def start(dns: str) -> tuple[OneShotHTTPS, Path]:
        creds = ca.issue(spiffe_id="spiffe://example.org/web", dns=(dns,))
        server = OneShotHTTPS(*net.write_credentials(creds, tmp_path, f"server-{dns}"))
        servers.append(server)
        return server, ca.pem(tmp_path)

    yield start
    for server in servers:
        server.close()


def client_config(net: SimpleNamespace, port: int, ca_pem: Path) -> str:
    text: str = net.config_text(
        net.connect_entry("localhost", "localhost", port, "tls", trust="file", trust_file=str(ca_pem)),
        env={"CLIENT_FD_NAME": "localhost"},
    )
    return text


def test_client_fetches_a_page_from_a_verified_server(keep, net: SimpleNamespace, https) -> None:  # type: ignore[no-untyped-def]
    server, ca_pem = https("localhost")
    k = keep(net.EXAMPLES / "client/client.wasm", client_config(net, server.port, ca_pem), listening=0)
    code, out = k.finish()
    assert code == 0, k.stderr
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and PAGE in out
    assert server.requests and server.requests[0].startswith(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
    (line,) = k.wait_for("tls: connection to localhost")
    assert "TLSv1.3" in line and "UNATTESTED" in line


def test_client_refuses_a_server_with_another_name(keep, net: SimpleNamespace, https) -> None:  # type: ignore[no-untyped-def]
    server, ca_pem = https("other.example")
    k = keep(net.EXAMPLES / "client/client.wasm", client_config(net, server.port, ca_pem), listening=0)
    code, out = k.finish()
    assert code == 2 and out == b"", k.stderr  # the guest saw a failed connection, nothing else
    (line,) = k.wait_for("tls: handshake failed, connection to localhost")
    assert "does not name the host" in line and "other.example" in line
    assert not server.requests


def test_connect_to_nobody_stops_the_run_before_the_guest(keep, net: SimpleNamespace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = net.free_port()  # nobody listens there
    config = net.config_text(net.connect_entry("peer", "127.0.0.1", port, "tcp"))
    k = keep(net.EXAMPLES / "client/client.wasm", config, listening=0)
    code, out = k.finish()
    assert code == 3 and out == b""
    assert 'files[3] ("peer")' in k.stderr and "refused" in k.stderr.lower()
