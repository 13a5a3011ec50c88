"""Client authentication on ``listen``, and one Keep connecting to another over mutual TLS.

Both Keeps run in this process (``run_workload`` in threads) with identities issued by a test CA
standing in for the Steward, passed through ``run_workload(identity=..., steward_ca=...)`` — the
same seam an attested Keep uses — so the socket code is exactly what ``donjon run`` runs.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from donjon.config.parse import parse_config
from donjon.runtime import NilBackend, SocketUnavailable, Workload, run_workload
from donjon.tls import Identity

SPIFFE_A = "spiffe://example.org/keep/a"
SPIFFE_B = "spiffe://example.org/keep/b"
SPIFFE_C = "spiffe://example.org/keep/c"


class InProcessKeep:
    """``run_workload`` in a thread; the guest's stdout and stderr go to files."""

    def __init__(self, directory: Path, wasm: Path, config: str, identity: Identity, ca_cert: Any) -> None:
        directory.mkdir()
        (directory / "Donjon.toml").write_text(config)
        parsed = parse_config(config.encode(), origin=str(directory / "Donjon.toml"))
        self.workload = Workload(module=wasm.read_bytes(), config=parsed.config, base_dir=directory)
        self.stdout_path = directory / "stdout"
        self.stderr_path = directory / "stderr"
        self._null = os.open(os.devnull, os.O_RDONLY)
        self._out = os.open(self.stdout_path, os.O_WRONLY | os.O_CREAT, 0o600)
        self._err = os.open(self.stderr_path, os.O_WRONLY | os.O_CREAT, 0o600)
        self.started = threading.Event()
        self.result: list[object] = []
        self._thread = threading.Thread(
            target=self._run, args=(identity, ca_cert), daemon=True, name="donjon-test-keep"
        )
        self._thread.start()

    def _run(self, identity: Identity, ca_cert: Any) -> None:
        try:
            self.result.append(
                run_workload(
                    self.workload,
                    NilBackend(),
                    stdio_fds=(self._null, self._out, self._err),
                    before_start=self.started.set,
                    identity=identity,
                    steward_ca=[ca_cert],
                )
            )
        except BaseException as e:
            self.result.append(e)
        finally:
            self.started.set()

    def finish(self, timeout: float = 10.0) -> tuple[object, str, str]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the Keep did not exit"
        for fd in (self._null, self._out, self._err):
            os.close(fd)
        return (
            self.result[0],
            self.stdout_path.read_text(errors="replace"),
            self.stderr_path.read_text(errors="replace"),
        )


def https_get(port: int, ctx: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk


def client_context(ca_pem: Path, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_pem))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


@pytest.fixture
def pki(net: SimpleNamespace, tmp_path: Path) -> SimpleNamespace:
    ca = net.CA("Test Steward CA")
    other = net.CA("Other CA")
    return SimpleNamespace(
        ca=ca,
        ca_pem=ca.pem(tmp_path),
        a=ca.issue(spiffe_id=SPIFFE_A),
        b=ca.issue(spiffe_id=SPIFFE_B),
        b_files=net.write_credentials(ca.issue(spiffe_id=SPIFFE_B), tmp_path, "b"),
        c_files=net.write_credentials(ca.issue(spiffe_id=SPIFFE_C), tmp_path, "c"),
        stranger_files=net.write_credentials(other.issue(spiffe_id=SPIFFE_B), tmp_path, "stranger"),
    )


def test_client_auth_on_listen_and_keep_to_keep_mutual_tls(
    net: SimpleNamespace, pki: SimpleNamespace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="donjon.tls")
    port = net.free_port()
    server_config = net.config_text(
        net.listen_entry("web", port, "tls", client_auth="steward", client_identity=SPIFFE_B),
        env={"HTTP_EXIT_AFTER": "5"},
    )
    server = InProcessKeep(
        tmp_path / "a", net.EXAMPLES / "http/http.wasm", server_config, Identity(pki.a), pki.ca.cert
    )
    assert server.started.wait(10) and not server.result, server.result

    # The right workload's certificate: served.
    page = https_get(port, client_context(pki.ca_pem, pki.b_files))
    assert page.startswith(b"HTTP/1.1 200") and b"Hello from a Donjon Keep" in page

    # No certificate, another workload's, or one from another CA: refused in the handshake
    # (TLS 1.3: the client learns it on its first read).
    for cert in (None, pki.c_files, pki.stranger_files):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            https_get(port, client_context(pki.ca_pem, cert))

    # Keep B connects to Keep A: B verifies A (Steward CA, host name), A verifies B (SPIFFE ID).
    client_config = net.config_text(
        net.connect_entry("peer", "localhost", port, "tls", trust="steward"),
        env={"CLIENT_FD_NAME": "peer"},
    )
    client = InProcessKeep(
        tmp_path / "b", net.EXAMPLES / "client/client.wasm", client_config, Identity(pki.b), pki.ca.cert
    )
    code, out, err = client.finish()
    assert code == 0, err
    assert out.startswith("HTTP/1.1 200") and "Hello from a Donjon Keep" in out

    code, _, err = server.finish()
    assert code == 0, err
    assert "served 5 connections" in err
    lines = [r.getMessage() for r in caplog.records if r.name == "donjon.tls"]
    accepted = [line for line in lines if line.startswith("tls: connection from")]
    refused = [line for line in lines if line.startswith("tls: handshake failed, connection from")]
    outgoing = [line for line in lines if line.startswith("tls: connection to")]
    assert len(accepted) == 2 and all(f"peer {SPIFFE_B}" in line for line in accepted), accepted
    assert len(refused) == 3, refused
    assert any("did not return a certificate" in line or "certificate required" in line for line in refused)
    assert any(SPIFFE_C in line for line in refused)
    assert (
        len(outgoing) == 1
        and "TLSv1.3" in outgoing[0]
        and "attested (issued by Test Steward CA)" in outgoing[0]
    )
    assert not any("UNATTESTED" in line for line in lines)


def test_client_auth_needs_a_steward(net: SimpleNamespace, tmp_path: Path) -> None:
    """Without a Steward (an unattested Keep) nobody can be authenticated: the run stops, fail closed."""
    port = net.free_port()
    config = net.config_text(net.listen_entry("web", port, "tls", client_auth="steward"))
    parsed = parse_config(config.encode(), origin="Donjon.toml")
    workload = Workload(
        module=(net.EXAMPLES / "http/http.wasm").read_bytes(), config=parsed.config, base_dir=tmp_path
    )
    started = threading.Event()
    with pytest.raises(SocketUnavailable, match="Steward"):
        run_workload(workload, NilBackend(), before_start=started.set)
    assert not started.is_set()
    with socket.socket() as probe:  # nothing was left listening
        probe.bind(("127.0.0.1", port))
