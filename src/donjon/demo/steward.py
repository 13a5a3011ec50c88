"""A throwaway local Steward that trusts the SIMULATED vendors: for ``donjon demo``, the end-to-end
tests and the attested-start benchmark. Never for production.

It is the real Steward (``donjon.steward``: the same CA, nonces, verifier, policy, log and HTTP
app as ``donjon steward serve``), configured in a private directory:

- a new CA (EC P-256) and an HTTPS certificate for 127.0.0.1 / localhost signed by it
  (:mod:`donjon.steward.https`), so a Keep pins one CA for both the connection and the
  certificates it is issued;
- ``[roots] simulated``: the simulated AMD ARK and Intel root of the vendors saved in
  ``sim_vendor_dir`` (the same directory a Keep is given with ``--sim-vendor``), and their
  collateral (ARK CRL and chain; TCB info, QE identity, CRLs), put in place by
  :func:`donjon.steward.simulated.install_simulated_vendors` as ``steward init --simulated`` does;
- a policy that sets ``allow_simulated`` and names the workloads it issues to, each accepting
  simulated evidence only (``platforms = ["simulated"]``; ``unattested`` too when asked), with
  ``localhost`` and ``127.0.0.1`` as the names of those ``/sim`` certificates.

Served by uvicorn in a thread on 127.0.0.1 and a free port; :meth:`LocalSteward.close` stops it
and closes the log. Everything lives under the given directory (the caller removes it).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.steward.ca import create_ca, write_private
from donjon.steward.https import issue_serving_certificate, write_serving_certificate
from donjon.steward.logkey import create_log_key, default_origin
from donjon.steward.simulated import SIM_MEASUREMENT, install_simulated_vendors

__all__ = [
    "DEMO_CLAIMS_OID",
    "DEMO_TRUST_DOMAIN",
    "SIM_MEASUREMENT",
    "LocalSteward",
    "WorkloadRule",
    "demo_policy",
    "https_certificate",
]

#: RFC 5612: IANA's Private Enterprise Number 32473 is reserved for documentation and examples.
DEMO_CLAIMS_OID = "1.3.6.1.4.1.32473.1"
DEMO_TRUST_DOMAIN = "demo.donjon.local"


@dataclass(frozen=True)
class WorkloadRule:
    """One ``[[workload]]`` of the policy: the digest it issues to and the SPIFFE path it names.

    ``dns_names`` and ``ip`` become the rule's ``sim_dns_names``/``sim_ip`` (and, with
    ``allow_unattested``, ``unattested_*``): this Steward only ever issues ``/sim`` or
    ``/unattested`` certificates.
    """

    digest: bytes
    spiffe_path: str
    lifetime: str | None = None
    dns_names: tuple[str, ...] = ("localhost",)
    ip: tuple[str, ...] = ("127.0.0.1",)


def demo_policy(
    workloads: Sequence[WorkloadRule],
    *,
    lifetime: str = "1h",
    allow_unattested: bool = False,
    measurement: bytes = SIM_MEASUREMENT,
) -> str:
    """The policy text: simulated SNP and TDX evidence with ``measurement``, for ``workloads``."""
    lines = [
        "# Written by donjon's local (demo) Steward: it trusts SIMULATED TEEs. Never use in production.",
        "version = 1",
        "allow_simulated = true",
        f"allow_unattested = {'true' if allow_unattested else 'false'}",
        f'lifetime = "{lifetime}"',
        "",
        "[platform.sev-snp]",
        f'allowed_measurements = ["{measurement.hex()}"]',
        "",
        "[platform.tdx]",
        f'allowed_measurements = ["{measurement.hex()}"]',
    ]

    def names(values: Sequence[str]) -> str:
        return "[" + ", ".join(f'"{n}"' for n in values) + "]"

    for rule in workloads:
        lines += [
            "",
            "[[workload]]",
            f'digest = "{rule.digest.hex()}"',
            f'spiffe_path = "{rule.spiffe_path}"',
            'platforms = ["simulated"' + (', "unattested"]' if allow_unattested else "]"),
            f"sim_dns_names = {names(rule.dns_names)}",
            f"sim_ip = {names(rule.ip)}",
        ]
        if allow_unattested:
            lines += [f"unattested_dns_names = {names(rule.dns_names)}", f"unattested_ip = {names(rule.ip)}"]
        if rule.lifetime is not None:
            lines.append(f'lifetime = "{rule.lifetime}"')
    return "\n".join(lines) + "\n"


def _steward_toml(trust_domain: str, claims_oid: str, simulated_roots: Sequence[Path]) -> str:
    roots = ", ".join(json.dumps(str(root)) for root in simulated_roots)
    return f"""\
# Written by donjon's local (demo) Steward: it trusts SIMULATED TEEs. Never use in production.
[steward]
trust_domain = "{trust_domain}"
listen = "127.0.0.1"
port = 0
ca_cert = "ca.pem"
ca_key = "ca-key.pem"
challenge_secret = "challenge.secret"
log_key = "log-key.pem"
policy = "policy.toml"
claims_oid = "{claims_oid}"
tls_cert = "tls.pem"
tls_key = "tls-key.pem"
workers = 2

[log]
backend = "sqlite"
path = "log.db"

[roots]
simulated = [{roots}]

[collateral]
dir = "collateral"
"""


def https_certificate(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, directory: Path
) -> tuple[Path, Path]:
    """The Steward's HTTPS certificate for localhost / 127.0.0.1, signed by its own CA, valid a day
    (:mod:`donjon.steward.https`, as ``donjon steward init`` makes it).

    Written to ``directory`` as ``tls.pem`` and ``tls-key.pem`` (mode 0600), replacing any there;
    returns their paths.
    """
    key, cert = issue_serving_certificate(
        ca_key,
        ca,
        hosts=["localhost"],
        ips=[ipaddress.ip_address("127.0.0.1")],
        now=datetime.now(UTC),
        days=1,
    )
    cert_path, key_path = directory / "tls.pem", directory / "tls-key.pem"
    write_serving_certificate(cert_path, key_path, key, cert, replace=True)
    return cert_path, key_path


class LocalSteward:
    """The real Steward, trusting only the simulated vendors, on https://127.0.0.1:<free port>.

    ``LocalSteward(directory, sim_vendor_dir=d, policy=demo_policy([...]))`` writes its files;
    ``start()`` serves (``url``, ``ca_pem``, ``ca_fingerprint``); ``close()`` stops. A context
    manager. ``set_policy(text)`` replaces the policy (reloaded at once, as on SIGHUP).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        sim_vendor_dir: str | os.PathLike[str],
        policy: str,
        trust_domain: str = DEMO_TRUST_DOMAIN,
        claims_oid: str = DEMO_CLAIMS_OID,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.trust_domain = trust_domain
        self.claims_oid = claims_oid
        ca_key, ca = create_ca(f"Donjon local Steward CA ({trust_domain}) - DEMO", now=datetime.now(UTC))
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        write_private(
            self.directory / "ca-key.pem",
            ca_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        self.ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        self.ca_path = self.directory / "ca.pem"
        self.ca_path.write_bytes(self.ca_pem)
        self.ca = ca
        write_private(self.directory / "challenge.secret", secrets.token_bytes(32))
        if not (self.directory / "log-key.pem").exists():
            # Kept across runs in one directory: its log's checkpoints are signed with it.
            create_log_key(self.directory / "log-key.pem", default_origin(trust_domain))
        https_certificate(ca_key, ca, self.directory)
        sim = install_simulated_vendors(self.directory / "collateral", Path(sim_vendor_dir).resolve())
        self.policy_path = self.directory / "policy.toml"
        self.policy_path.write_text(policy)
        self.config_path = self.directory / "steward.toml"
        self.config_path.write_text(_steward_toml(trust_domain, claims_oid, sim.roots))
        self.url = ""
        self.port = 0
        self._steward: Any = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def ca_fingerprint(self) -> str:
        """SHA-256 of the CA certificate (DER), as colon-separated hex."""
        return self.ca.fingerprint(hashes.SHA256()).hex(":").upper()

    def start(self, *, timeout: float = 10.0) -> LocalSteward:
        import uvicorn

        from donjon.steward.app import create_app
        from donjon.steward.config import load_config
        from donjon.steward.service import build_steward

        if self._thread is not None:
            raise RuntimeError("the local Steward is already started")
        config = load_config(self.config_path)
        self._steward = build_steward(config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        app = create_app(
            self._steward,
            max_request_bytes=config.max_request_bytes,
            request_timeout=config.request_timeout,
            workers=config.workers,
        )
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="error",
                access_log=False,
                lifespan="off",
                ssl_certfile=str(config.tls_cert),
                ssl_keyfile=str(config.tls_key),
                timeout_keep_alive=5,
            )
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="donjon-local-steward", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.close()
                raise RuntimeError("the local Steward did not start")
            time.sleep(0.005)
        return self

    def set_policy(self, text: str) -> None:
        self.policy_path.write_text(text)
        if self._steward is not None:
            self._steward.policy.reload()

    def log_entries(self) -> list[dict[str, Any]]:
        """The records of the Steward's decision log, oldest first (``decision``, ``spiffe_id``...)."""
        if self._steward is None:
            return []
        return [dict(entry.record) for entry in self._steward.log.entries()]

    def stop_serving(self) -> None:
        """Stop answering (the port closes); the files stay."""
        if self._thread is not None and self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(10)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Stop serving and close the log (idempotent)."""
        self.stop_serving()
        if self._steward is not None:
            self._steward.log.close()
            self._steward = None

    def __enter__(self) -> LocalSteward:
        return self.start() if self._thread is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
