"""examples/http in a real ``donjon run``, fetched with the system's curl over TLS 1.3 and plain HTTP."""

from __future__ import annotations

import shutil
import subprocess
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="no curl binary")


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "5", *args], capture_output=True, text=True, timeout=10
    )


def test_curl_gets_the_page_over_tls_13_and_tls_12_is_refused(keep, net: SimpleNamespace) -> None:  # type: ignore[no-untyped-def]
    port = net.free_port()
    k = keep(
        net.EXAMPLES / "http/http.wasm",
        net.config_text(net.listen_entry("web", port, "tls"), env={"HTTP_EXIT_AFTER": "4"}),
    )
    url = f"https://localhost:{port}/"
    # -k: the Keep is unattested, its certificate self-signed (docs/tls.md).
    page = curl("-k", "-v", url)
    assert page.returncode == 0, page.stderr
    assert "Hello from a Donjon Keep" in page.stdout
    assert "SSL connection using TLSv1.3" in page.stderr
    # Debian's OpenSSL 3.0 (curl's) has no ML-KEM: the Keep falls back to classical X25519.
    (line,) = k.wait_for("tls: connection from")
    assert "TLSv1.3, group x25519," in line, line

    missing = curl("-k", "-o", "/dev/null", "-w", "%{http_code}", url + "nope")
    assert missing.stdout == "404"

    # Without -k curl cannot verify a self-signed certificate: it refuses.
    unverified = curl(url)
    assert unverified.returncode != 0 and "certificate" in unverified.stderr.lower()

    old = curl("-k", "--tlsv1.2", "--tls-max", "1.2", url)
    assert old.returncode != 0 and "Hello" not in old.stdout

    code, _ = k.finish()
    assert code == 0, k.stderr
    failed = k.wait_for("tls: handshake failed", 2)
    assert any("unsupported protocol" in line for line in failed), failed
    assert all("UNATTESTED" in line for line in k.lines if line.startswith("donjon: tls:"))


def test_curl_gets_the_page_over_plain_http(keep, net: SimpleNamespace) -> None:  # type: ignore[no-untyped-def]
    port = net.free_port()
    k = keep(
        net.EXAMPLES / "http/http.wasm",
        net.config_text(net.listen_entry("web", port, "tcp"), env={"HTTP_EXIT_AFTER": "1"}),
    )
    page = curl("-i", f"http://127.0.0.1:{port}/")
    assert page.returncode == 0, page.stderr
    assert page.stdout.startswith("HTTP/1.1 200") and "Hello from a Donjon Keep" in page.stdout
    code, _ = k.finish()
    assert code == 0, k.stderr
    assert not any("tls:" in line for line in k.lines)  # plain TCP: no TLS, no TLS log lines
