"""Fixtures for the Steward's tests: a simulated AMD, a Steward directory, a real server, a Keep client.

Nothing here mocks the verifier: evidence is signed by the simulated AMD of
:mod:`donjon.attestation.simsnp` and checked by the real SNP verifier.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon import binding, csr, oids
from donjon.attestation.simsnp import SimulatedAmd, default_vendor
from donjon.cli import main as cli_main
from donjon.steward.app import create_app
from donjon.steward.config import load_config
from donjon.steward.issuance import Steward
from donjon.steward.service import build_steward

from ..conftest import need_shared, postgres_dsn

ROOT = Path(__file__).resolve().parents[2]


MEASUREMENT = hashlib.sha384(b"donjon test keep image").digest()
WORKLOAD = hashlib.sha256(b"donjon test workload").digest()


def spki(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def policy_text(*, allow_simulated: bool = True, extra: str = "", measurement: bytes = MEASUREMENT) -> str:
    return f"""
version = 1
allow_simulated = {str(allow_simulated).lower()}
allow_legacy_enarx = true
lifetime = "2h"

[platform.sev-snp]
allowed_measurements = ["{measurement.hex()}"]
min_tcb = {{ bootloader = 1, snp = 8 }}

[[workload]]
digest = "{WORKLOAD.hex()}"
spiffe_path = "/test/web"
platforms = ["sev-snp", "tdx", "simulated"]
dns_names = ["web.example.org"]
sim_dns_names = ["web.sim.example.org"]

[[legacy]]
platform = "sev-snp"
measurement = "{MEASUREMENT.hex()}"
spiffe_path = "/enarx/legacy"
simulated = true
{extra}
"""


@dataclass
class Env:
    dir: Path
    vendor: SimulatedAmd
    config: Path
    policy: Path
    extra_config: dict[str, str] = field(default_factory=dict)

    def steward(self, **overrides: Any) -> Steward:
        return build_steward(load_config(self.config), **overrides)


@pytest.fixture(scope="session")
def vendor() -> SimulatedAmd:
    return default_vendor("Milan")


def make_env(base: Path, vendor: SimulatedAmd, *, log_backend: str = "sqlite", dsn: str | None = None) -> Env:
    # Plain HTTP: these tests drive the HTTP app itself (ServerThread, ServerProcess over http://).
    assert (
        cli_main(["steward", "init", "--dir", str(base), "--trust-domain", "example.org", "--insecure-http"])
        == 0
    )
    (base / "sim-ark.pem").write_bytes(vendor.ark_pem())
    (base / "collateral" / "snp-report").mkdir(parents=True, exist_ok=True)
    (base / "collateral" / "snp-report" / "ark.crl").write_bytes(vendor.crl())
    # The Steward's own copy of KDS's cert_chain (ASK, ARK): Enarx Keeps send only their VCEK.
    (base / "collateral" / "snp-report" / "cert_chain.pem").write_bytes(vendor.cert_chain_pem())
    text = (base / "steward.toml").read_text()
    text = text.replace("simulated = []", 'simulated = ["sim-ark.pem"]')
    text = text.replace('# claims_oid = "1.3.6.1.4.1.<your PEN>.1"', 'claims_oid = "1.3.6.1.4.1.99999.1"')
    if log_backend == "postgres":
        text = text.replace('backend = "sqlite"', 'backend = "postgres"')
        text = text.replace('# dsn = "postgresql://steward@db.example.org/steward"', f'dsn = "{dsn}"')
    (base / "steward.toml").write_text(text)
    (base / "policy.toml").write_text(policy_text())
    return Env(dir=base, vendor=vendor, config=base / "steward.toml", policy=base / "policy.toml")


@pytest.fixture
def env(tmp_path: Path, vendor: SimulatedAmd) -> Env:
    return make_env(tmp_path / "steward", vendor)


class ServerThread:
    """uvicorn serving one Steward on 127.0.0.1:<free port>, in a thread of this process."""

    def __init__(self, steward: Steward, **app_kwargs: Any) -> None:
        self.steward = steward
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(steward, **app_kwargs), log_level="error", access_log=False, lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
        self.steward.close()


@pytest.fixture
def server(env: Env) -> Iterator[ServerThread]:
    with ServerThread(env.steward()) as srv:
        yield srv


@dataclass
class Keep:
    """A simulated Keep: its own key, a workload, and a way to ask for a certificate."""

    vendor: SimulatedAmd
    key: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    workload: bytes = WORKLOAD
    measurement: bytes = MEASUREMENT

    def csr(
        self,
        nonce: bytes,
        *,
        report_key: Any = None,
        report_nonce: bytes | None = None,
        report_workload: bytes | None = None,
        **report: Any,
    ) -> bytes:
        bound = binding.keep_binding(
            spki(report_key or self.key),
            report_workload or self.workload,
            report_nonce or nonce,
        )
        ev = self.vendor.evidence(bound, measurement=report.pop("measurement", self.measurement), **report)
        return csr.build_csr(
            self.key,
            statements=[(oids.EVIDENCE_SNP, ev.report)],
            workload_digest=self.workload,
            nonce=nonce,
            certs=ev.certs,
        )

    @staticmethod
    def nonce(client: httpx.Client, url: str) -> bytes:
        import base64

        answer = client.get(f"{url}/challenge").json()
        text = answer["nonce"]
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    def attest(self, client: httpx.Client, url: str, **kwargs: Any) -> httpx.Response:
        body = self.csr(self.nonce(client, url), **kwargs)
        return client.post(f"{url}/attest", content=body, headers={"Content-Type": "application/pkcs10"})


class ServerProcess:
    """``donjon steward serve`` in a subprocess; the port is read from its 'listening' log line."""

    def __init__(self, config: Path, *, port: int = 0) -> None:
        self.config = config
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "donjon",
                "steward",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self.url = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(30):
            self.proc.kill()
            raise RuntimeError(f"steward did not start: {self.lines}")
        if not self.url:
            raise RuntimeError(f"steward failed: {self.lines}")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"raw": line.rstrip()}
            self.lines.append(entry)
            if entry.get("event") == "listening":
                self.url = entry["url"]
                self._ready.set()
        self._ready.set()

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.lines if e.get("event") == name]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def trust_sim_tdx(env: Env, tdx: Any, *, with_collateral: bool = True) -> None:
    """Trust ``tdx``'s root as simulated, and (unless told not to) give the Steward its collateral."""
    (env.dir / "sim-tdx-root.pem").write_bytes(tdx.root.public_bytes(serialization.Encoding.PEM))
    text = env.config.read_text()
    old = 'simulated = ["sim-ark.pem"]'
    assert old in text
    env.config.write_text(text.replace(old, 'simulated = ["sim-ark.pem", "sim-tdx-root.pem"]'))
    coll = env.dir / "collateral" / "tdx-quote"
    coll.mkdir(parents=True, exist_ok=True)
    if with_collateral:
        c = tdx.collateral()
        (coll / "tcb_info.json").write_bytes(c.tcb_info)
        (coll / "qe_identity.json").write_bytes(c.qe_identity)
        (coll / "tcb_signing_chain.pem").write_bytes(c.tcb_info_issuer_chain)
        (coll / "pck.crl").write_bytes(c.pck_crl)
        (coll / "root.crl").write_bytes(c.root_crl)


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """The helpers above, for test modules (importlib mode: tests cannot import conftest)."""
    return SimpleNamespace(
        Keep=Keep,
        ServerThread=ServerThread,
        ServerProcess=ServerProcess,
        make_env=make_env,
        policy_text=policy_text,
        postgres_dsn=postgres_dsn,
        need_shared=need_shared,
        spki=spki,
        trust_sim_tdx=trust_sim_tdx,
        MEASUREMENT=MEASUREMENT,
        WORKLOAD=WORKLOAD,
    )
