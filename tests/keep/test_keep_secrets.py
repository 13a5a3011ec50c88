"""The Keep's secret client against a hostile or refusing server: bounded, named, never a traceback.

A small HTTPS server on 127.0.0.1 (its certificate from a CA the client pins) answers each
``GET /secrets/NAME`` as the test says; the client is :func:`donjon.keep.secrets.fetch_secrets`.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.demo.steward import https_certificate
from donjon.keep.errors import StewardProtocolError
from donjon.keep.secrets import (
    MAX_SECRET_BYTES,
    SecretRefused,
    SecretRequest,
    SecretSet,
    SecretUnavailable,
    fetch_secrets,
)
from donjon.keep.steward_client import StewardEndpoint
from donjon.steward.ca import create_ca
from donjon.tls.identity import self_signed

ANSWERS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "good": (200, {"Donjon-Secret-Version": "3", "Donjon-Secret-Created": "2026-01-02T03:04:05+00:00"}, b"v"),
    "refused": (
        403,
        {"Content-Type": "application/json"},
        json.dumps({"check": "secret.digest", "reason": "no"}).encode(),
    ),
    "huge": (
        200,
        {"Donjon-Secret-Version": "1", "Donjon-Secret-Created": "2026-01-01T00:00:00+00:00"},
        bytes(MAX_SECRET_BYTES + 1),
    ),
    "noversion": (200, {}, b"v"),
    "broken": (500, {}, b"oops"),
}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, headers, body = ANSWERS[self.path.rsplit("/", 1)[-1]]
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, StewardEndpoint]]:
    key, ca = create_ca("test CA", now=datetime.now(UTC))
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    cert, cert_key = https_certificate(key, ca, tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(cert_key))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield url, StewardEndpoint(url=url, ca=(ca,), timeout=10)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_released_secret_carries_its_version_and_time(server: tuple[str, StewardEndpoint]) -> None:
    released, refused = fetch_secrets(server[1], self_signed(), ["good"])
    assert refused == {} and released["good"].version == 3 and released["good"].value == b"v"
    holder = SecretSet(released)
    assert holder.summary() == "good v3" and "v'" not in repr(released["good"])
    assert holder.memory_entries()["good"].mtime_ns == int(released["good"].created.timestamp() * 1e9)


def test_a_refusal_names_the_stewards_check_and_optional_ones_come_back_as_data(
    server: tuple[str, StewardEndpoint],
) -> None:
    with pytest.raises(SecretRefused) as e:
        fetch_secrets(server[1], self_signed(), ["good", "refused"])
    assert e.value.check == "secret.digest" and e.value.status == 403
    released, refused = fetch_secrets(
        server[1], self_signed(), ["good", SecretRequest("refused", optional=True)]
    )
    assert set(released) == {"good"} and refused["refused"].check == "secret.digest"


@pytest.mark.parametrize(
    ("name", "error"),
    [("huge", StewardProtocolError), ("noversion", SecretUnavailable), ("broken", SecretUnavailable)],
)
def test_hostile_answers_are_bounded_and_named(
    server: tuple[str, StewardEndpoint], name: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        fetch_secrets(server[1], self_signed(), [SecretRequest(name, optional=True)])


def test_a_server_the_pinned_ca_did_not_certify_gets_nothing_asked(
    server: tuple[str, StewardEndpoint],
) -> None:
    _, other = create_ca("another CA", now=datetime.now(UTC))
    endpoint = StewardEndpoint(url=server[0], ca=(other,), timeout=10)
    with pytest.raises(SecretUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        fetch_secrets(endpoint, self_signed(), ["good"])
