"""A Steward made by ``donjon steward init`` and served by ``donjon steward serve`` over HTTPS, and
client certificates its CA signs directly (any identity, any validity): for the release endpoint's
checks, through the real TLS server. A certificate for a Keep admitted by its package's signer
carries the entries issuance writes for it (``package_entries``, the same function)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.cli.steward import main as steward_main
from donjon.demo.steward import https_certificate
from donjon.dice import SIMULATED_SUFFIX, TEE_NAMES, WORKLOAD_MODEL, WORKLOAD_VENDOR, Fwid, TcbInfo
from donjon.steward.ca import CertificateAuthority
from donjon.steward.package_admission import package_entries
from donjon.steward.policy import Decision

from ..processes import TIMEOUT, StewardProcess, free_port, run_donjon

TRUST_DOMAIN = "example.org"


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
        package: dict[str, str] | None = None,
    ) -> tuple[Path, Path]:
        """A client certificate (and key) as this Steward would issue for ``path``: PEM files.

        ``package``: the log record's ``{"digest", "signer", "name"}`` of a Keep a
        ``[[workload]]`` signer rule admitted, written as issuance writes it."""
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
        if package is not None:
            admitted = Decision(
                spiffe_path=path,
                dns_names=(),
                lifetime=lifetime,
                simulated=simulated,
                unattested=tee is None,
                fresh=True,
                rule=f"signer {package['signer']} (workload {digest.hex()})",
            )
            entries += package_entries(package, admitted)
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


__all__ = [
    "TIMEOUT",
    "StewardFiles",
    "StewardProcess",
    "foreign_ca",
    "free_port",
    "run_donjon",
    "secret_get",
    "secret_records",
    "x509",
]


def secret_get(
    steward: StewardProcess, files: StewardFiles, name: str, cert: tuple[Path, Path] | None
) -> httpx.Response:
    """GET /secrets/NAME over mutual TLS with ``cert`` (none: without a client certificate)."""
    context = ssl.create_default_context(cafile=str(files.directory / "ca.pem"))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    with httpx.Client(verify=context, trust_env=False) as client:
        return client.get(f"{steward.url}/secrets/{name}")


def secret_records(files: StewardFiles) -> list[dict[str, object]]:
    """The Steward's log records of secret releases and refusals, oldest first."""
    out = run_donjon("steward", "log", "show", "--config", str(files.config), "--format", "json")
    assert out.returncode == 0, out.stderr
    records = [json.loads(line)["record"] for line in out.stdout.decode().splitlines()]
    return [r for r in records if r.get("path") == "secret"]
