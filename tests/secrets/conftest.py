"""A Steward made by ``donjon steward init`` and served by ``donjon steward serve`` over HTTPS, and
client certificates its CA signs directly (any identity, any validity): for the release endpoint's
checks, through the real TLS server."""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.cli.steward import main as steward_main
from donjon.demo.steward import https_certificate
from donjon.dice import SIMULATED_SUFFIX, TEE_NAMES, WORKLOAD_MODEL, WORKLOAD_VENDOR, Fwid, TcbInfo
from donjon.steward.ca import CertificateAuthority

TIMEOUT = 20.0
TRUST_DOMAIN = "example.org"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_donjon(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "donjon", *args], input=stdin, capture_output=True, timeout=60, check=False
    )


class StewardProcess:
    """``donjon steward serve --config C --port P`` in a child process, until :meth:`stop`."""

    def __init__(self, config: Path, *, wait: bool = True) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "donjon", "steward", "serve", "--config", str(config)]
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = f"https://127.0.0.1:{self.port}"
        if wait:
            self.wait_for('"listening"')

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr.append(raw.rstrip("\n"))
            self.lines.put(raw.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, marker: str) -> str:
        deadline = time.monotonic() + TIMEOUT
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"the Steward exited before {marker!r}: {self.stderr}")
            if marker in line:
                return line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)


@dataclass
class StewardFiles:
    directory: Path
    config: Path
    policy: Path
    ca: CertificateAuthority

    def client(
        self,
        path: str,
        *,
        digest: bytes = bytes(32),
        tee: str | None = "sev-snp",
        simulated: bool = False,
        lifetime: int = 3600,
        now: datetime | None = None,
        ca: CertificateAuthority | None = None,
    ) -> tuple[Path, Path]:
        """A client certificate (and key) as this Steward would issue for ``path``: PEM files."""
        key = ec.generate_private_key(ec.SECP256R1())
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        marked = simulated or tee is None
        entries = []
        if tee is not None:
            vendor, model = TEE_NAMES[tee]
            entries.append(
                TcbInfo(
                    vendor=vendor,
                    model=model + (SIMULATED_SUFFIX if simulated else ""),
                    layer=0,
                    fwids=(Fwid.of(bytes(48)),),
                    not_secure=marked,
                )
            )
        entries.append(
            TcbInfo(
                vendor=WORKLOAD_VENDOR,
                model=WORKLOAD_MODEL,
                layer=1,
                fwids=(Fwid("sha256", digest),),
                not_secure=marked,
            )
        )
        issued = (ca or self.ca).issue(
            spki,
            spiffe_path=path,
            dns_names=(),
            lifetime=lifetime,
            now=now or datetime.now(UTC) - timedelta(seconds=5),
            dice=tuple(entries),
        )
        name = f"client-{issued.serial[:12]}"
        cert_path, key_path = self.directory / f"{name}.pem", self.directory / f"{name}-key.pem"
        cert_path.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_path, key_path


@pytest.fixture
def steward_files(tmp_path: Path) -> StewardFiles:
    """``donjon steward init`` in ``tmp_path/steward``, with HTTPS turned on (a certificate by its CA)."""
    directory = tmp_path / "steward"
    assert steward_main(["init", "--dir", str(directory), "--trust-domain", TRUST_DOMAIN]) == 0
    ca = CertificateAuthority.load(
        str(directory / "ca.pem"), str(directory / "ca-key.pem"), trust_domain=TRUST_DOMAIN
    )
    https_certificate(ca.key, ca.cert, directory)
    config = directory / "steward.toml"
    text = config.read_text().replace('# tls_cert = "tls.pem"', 'tls_cert = "tls.pem"')
    config.write_text(text.replace('# tls_key = "tls-key.pem"', 'tls_key = "tls-key.pem"'))
    return StewardFiles(directory, config, directory / "policy.toml", ca)


@pytest.fixture
def serve() -> Iterator[list[StewardProcess]]:
    started: list[StewardProcess] = []
    yield started
    for s in started:
        s.stop()


def foreign_ca() -> CertificateAuthority:
    from donjon.steward.ca import create_ca

    key, cert = create_ca("another CA", now=datetime.now(UTC) - timedelta(minutes=1))
    return CertificateAuthority(key, cert, trust_domain=TRUST_DOMAIN)


__all__ = ["TIMEOUT", "StewardFiles", "StewardProcess", "foreign_ca", "free_port", "run_donjon", "x509"]
