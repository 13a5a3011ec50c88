"""Harness for the Keep's and the relying party's tests: a REAL Steward over HTTPS on loopback.

The Steward is H5's (``donjon.steward``: ``steward init``, ``build_steward``, ``create_app``)
served by uvicorn in a thread on 127.0.0.1 and a free port, with a TLS certificate signed
by the Steward's own CA (what the Keep pins). Its policy trusts the simulated AMD (and the
simulated Intel, for sim-tdx) whose root is in the Steward's ``[roots] simulated``.
Nothing is mocked: evidence comes from the sim backends and is verified by the library.

tests/peer/conftest.py loads this file too (importlib mode: tests cannot import it).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation.simsnp import SimulatedAmd, default_vendor
from donjon.backends.sim import SimBackend
from donjon.cli import main as cli_main
from donjon.config import WorkloadConfig, workload_digest
from donjon.demo.steward import https_certificate
from donjon.steward.app import create_app
from donjon.steward.config import load_config
from donjon.steward.issuance import Steward
from donjon.steward.service import build_steward

MEASUREMENT = hashlib.sha384(b"donjon keep test image").digest()
MODULE = b"\x00asm\x01\x00\x00\x00" + b"donjon keep test module"
CONFIG = WorkloadConfig()
DIGEST = workload_digest(MODULE, CONFIG)
TRUST_DOMAIN = "example.org"
CLAIMS_OID = "1.3.6.1.4.1.99999.1"
SPIFFE_PATH = "/test/web"
SIM_SPIFFE_ID = f"spiffe://{TRUST_DOMAIN}/sim{SPIFFE_PATH}"


def policy_text(
    *,
    digest: bytes = DIGEST,
    lifetime: str = "2h",
    allow_unattested: bool = False,
    tdx_mrtd: bytes | None = None,
) -> str:
    tdx = ""
    platforms = ["sev-snp", "tdx", "simulated"] + (["unattested"] if allow_unattested else [])
    if tdx_mrtd is not None:
        tdx = f"""
[platform.tdx]
allowed_measurements = ["{tdx_mrtd.hex()}"]
"""
    return f"""
version = 1
allow_simulated = true
allow_unattested = {str(allow_unattested).lower()}
lifetime = "{lifetime}"

[platform.sev-snp]
allowed_measurements = ["{MEASUREMENT.hex()}"]
{tdx}
[[workload]]
digest = "{digest.hex()}"
spiffe_path = "{SPIFFE_PATH}"
platforms = {json.dumps(platforms)}
dns_names = ["web.example.org"]
sim_dns_names = ["web.sim.example.org"]
lifetime = "{lifetime}"
"""


@dataclass
class StewardEnv:
    dir: Path
    vendor: SimulatedAmd
    config: Path
    policy: Path
    ca_pem: bytes
    tls_cert: Path
    tls_key: Path

    @property
    def ca(self) -> tuple[x509.Certificate, ...]:
        return tuple(x509.load_pem_x509_certificates(self.ca_pem))

    def steward(self, **overrides: Any) -> Steward:
        return build_steward(load_config(self.config), **overrides)

    def set_policy(self, text: str) -> None:
        self.policy.write_text(text)

    def add_snp_vcek_to_collateral(self) -> None:
        """The Steward's own copy of the chip's VCEK (so it can complete a report sent alone)."""
        _, vcek = self.vendor.endorsement_key()
        (self.dir / "collateral" / "snp-report" / "vcek.pem").write_bytes(
            vcek.public_bytes(serialization.Encoding.PEM)
        )

    def add_tdx(self, vendor: Any) -> None:
        """Trust a simulated Intel and hold its collateral (TCB info, QE identity, CRLs)."""
        pem = serialization.Encoding.PEM
        (self.dir / "sim-tdx-root.pem").write_bytes(vendor.root.public_bytes(pem))
        text = self.config.read_text()
        text = text.replace('simulated = ["sim-ark.pem"]', 'simulated = ["sim-ark.pem", "sim-tdx-root.pem"]')
        self.config.write_text(text)
        coll = vendor.collateral()
        d = self.dir / "collateral" / "tdx-quote"
        d.mkdir(parents=True, exist_ok=True)
        (d / "tcb_info.json").write_bytes(coll.tcb_info)
        (d / "qe_identity.json").write_bytes(coll.qe_identity)
        (d / "tcb_chain.pem").write_bytes(coll.tcb_info_issuer_chain)
        (d / "pck.crl").write_bytes(coll.pck_crl)
        (d / "root.crl").write_bytes(coll.root_crl)


def make_env(
    base: Path, vendor: SimulatedAmd, *, policy: str | None = None, claims_oid: str | None = CLAIMS_OID
) -> StewardEnv:
    """A Steward made by ``steward init``, trusting the simulated AMD; ``claims_oid=None`` keeps
    init's default (no JSON claims extension: only the DICE one)."""
    assert cli_main(["steward", "init", "--dir", str(base), "--trust-domain", TRUST_DOMAIN]) == 0
    (base / "sim-ark.pem").write_bytes(vendor.ark_pem())
    snp = base / "collateral" / "snp-report"
    snp.mkdir(parents=True, exist_ok=True)
    (snp / "ark.crl").write_bytes(vendor.crl())
    (snp / "cert_chain.pem").write_bytes(vendor.cert_chain_pem())
    text = (base / "steward.toml").read_text()
    text = text.replace("simulated = []", 'simulated = ["sim-ark.pem"]')
    if claims_oid is not None:
        text = text.replace('# claims_oid = "1.3.6.1.4.1.<your PEN>.1"', f'claims_oid = "{claims_oid}"')
    (base / "steward.toml").write_text(text)
    (base / "policy.toml").write_text(policy or policy_text())
    ca_pem = (base / "ca.pem").read_bytes()
    ca_key = serialization.load_pem_private_key((base / "ca-key.pem").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    cert, key = https_certificate(ca_key, x509.load_pem_x509_certificate(ca_pem), base)
    return StewardEnv(
        dir=base,
        vendor=vendor,
        config=base / "steward.toml",
        policy=base / "policy.toml",
        ca_pem=ca_pem,
        tls_cert=cert,
        tls_key=key,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class StewardServer:
    """uvicorn serving one real Steward over HTTPS on 127.0.0.1:<free port>, in a thread."""

    def __init__(self, env: StewardEnv, *, app_wrapper: Any = None, port: int | None = None) -> None:
        self.env = env
        self.steward = env.steward()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port or 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        app = create_app(self.steward)
        if app_wrapper is not None:
            app = app_wrapper(app)
        config = uvicorn.Config(
            app,
            log_level="error",
            access_log=False,
            lifespan="off",
            ssl_certfile=str(env.tls_cert),
            ssl_keyfile=str(env.tls_key),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> StewardServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the Steward did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.should_exit = True
            self.thread.join(10)
        self.sock.close()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.steward.log.close()

    def reload_policy(self, text: str) -> None:
        self.env.set_policy(text)
        self.steward.policy.reload()


@pytest.fixture(scope="session")
def sim_vendor() -> SimulatedAmd:
    return default_vendor("Milan")


@pytest.fixture
def steward_env(tmp_path: Path, sim_vendor: SimulatedAmd) -> StewardEnv:
    return make_env(tmp_path / "steward", sim_vendor)


@pytest.fixture
def steward(steward_env: StewardEnv) -> Iterator[StewardServer]:
    with StewardServer(steward_env) as server:
        yield server


@pytest.fixture
def sim_snp(sim_vendor: SimulatedAmd) -> SimBackend:
    return SimBackend("sim-snp", vendor=sim_vendor, report_options={"measurement": MEASUREMENT})


class H:
    """The harness's names, for test modules (they cannot import conftest)."""

    MEASUREMENT = MEASUREMENT
    MODULE = MODULE
    CONFIG = CONFIG
    DIGEST = DIGEST
    TRUST_DOMAIN = TRUST_DOMAIN
    CLAIMS_OID = CLAIMS_OID
    SPIFFE_PATH = SPIFFE_PATH
    SIM_SPIFFE_ID = SIM_SPIFFE_ID
    policy_text = staticmethod(policy_text)
    make_env = staticmethod(make_env)
    free_port = staticmethod(free_port)
    StewardServer = StewardServer


@pytest.fixture(scope="session")
def h() -> type[H]:
    return H


class TlsEchoServer:
    """A small TLS server on H6's :class:`~donjon.tls.ServerContext`: echoes what it reads.

    ``refused`` counts connections the context would not wrap (an expired identity).
    """

    def __init__(self, context: Any) -> None:
        from donjon.tls.errors import TLSConfigError

        self._config_error = TLSConfigError
        self.context = context
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.refused = 0
        self.served = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                conn, _, _ = self.context.wrap(client)
            except self._config_error:
                self.refused += 1
                client.close()
                continue
            self.served += 1
            threading.Thread(target=self._echo, args=(conn, client), daemon=True).start()

    @staticmethod
    def _echo(conn: Any, client: socket.socket) -> None:
        from OpenSSL import SSL

        try:
            conn.do_handshake()
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                conn.sendall(data)
        except (SSL.Error, OSError):
            pass
        finally:
            client.close()

    def __enter__(self) -> TlsEchoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


def tls_client(port: int) -> Any:
    """A TLS 1.3 client connection to 127.0.0.1:``port`` that stays open (blocking socket)."""
    from OpenSSL import SSL

    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(None)
    conn = SSL.Connection(ctx, sock)
    conn.set_connect_state()
    conn.do_handshake()
    return conn


H.TlsEchoServer = TlsEchoServer  # type: ignore[attr-defined]
H.tls_client = staticmethod(tls_client)  # type: ignore[attr-defined]
