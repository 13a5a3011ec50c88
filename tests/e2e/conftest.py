"""End to end on loopback: a real Steward (``donjon.demo.steward.LocalSteward``, in this process),
a Keep started through the real ``donjon run`` command line (a child process), and a client.

The Steward trusts only the simulated vendors saved in one directory per test session; the Keep is
given the same directory with ``--sim-vendor``. Every wait is bounded; every port is 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from donjon.backends.sim import load_or_create_sim_vendor
from donjon.config import parse_config, workload_digest
from donjon.demo.steward import LocalSteward, WorkloadRule, demo_policy

from ..processes import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TIMEOUT = 20.0


def config_text(
    *,
    steward_url: str | None,
    steward_ca: Path | None,
    port: int,
    name: str,
    backends: tuple[str, ...] | None = ("sim-snp", "sim-tdx"),
    env: dict[str, str] | None = None,
) -> str:
    lines = []
    if steward_url is not None:
        lines.append(f'steward = "{steward_url}"')
    if steward_ca is not None:
        lines.append(f'steward_ca = "{steward_ca}"')
    if backends is not None:
        lines.append("backends = [" + ", ".join(f'"{b}"' for b in backends) + "]")
    if env:
        lines.append("[env]")
        lines += [f'{k} = "{v}"' for k, v in env.items()]
    for kind in ("stdin", "stdout", "stderr"):
        lines += ["[[files]]", f'kind = "{kind}"']
    lines += [
        "[[files]]",
        'kind = "listen"',
        f'name = "{name}"',
        'addr = "127.0.0.1"',
        f"port = {port}",
        'prot = "tls"',
    ]
    return "\n".join(lines) + "\n"


class Keep:
    """``python -m donjon run ARGS`` with its output lines collected; stopped at teardown."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "donjon", "run", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout, False), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read(self, stream: Any, into: list[str], forward: bool) -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            into.append(line)
            if forward:
                self.lines.put(line)
        if forward:
            self.lines.put(None)

    def wait_for(self, marker: str, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {marker!r} from the Keep in {timeout} s; stderr: {self.stderr}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"the Keep exited ({self.proc.wait(5)}) before {marker!r}: {self.stderr}"
                )
            if marker in line:
                return line

    def wait(self, timeout: float = TIMEOUT) -> int:
        code = self.proc.wait(timeout)
        for t in self._threads:
            t.join(2)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for t in self._threads:
            t.join(2)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    @property
    def err(self) -> str:
        return "\n".join(self.stderr)


@pytest.fixture(scope="session")
def sim_vendor_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sim-vendor")
    load_or_create_sim_vendor("sim-snp", directory)
    load_or_create_sim_vendor("sim-tdx", directory)
    return directory


@pytest.fixture
def e2e(tmp_path: Path, sim_vendor_dir: Path) -> Iterator[SimpleNamespace]:
    """Factories: ``steward(policy)``, ``keep(args)``, ``workload(example, ...)``; all cleaned up."""
    stewards: list[LocalSteward] = []
    keeps: list[Keep] = []

    def steward(policy: str | None = None) -> LocalSteward:
        s = LocalSteward(
            tmp_path / f"steward{len(stewards)}",
            sim_vendor_dir=sim_vendor_dir,
            policy=policy or demo_policy([]),
        )
        stewards.append(s)
        return s.start()

    def keep(args: list[str], env: dict[str, str] | None = None, *, no_cache: bool = True) -> Keep:
        cache = ["--no-cache"] if no_cache else []
        k = Keep(["--sim-vendor", str(sim_vendor_dir), *cache, *args], env=env)
        keeps.append(k)
        return k

    def workload(
        example: str,
        *,
        steward_url: str | None,
        steward_ca: Path | None,
        name: str,
        backends: tuple[str, ...] | None = ("sim-snp", "sim-tdx"),
        env: dict[str, str] | None = None,
        module: bytes | None = None,
    ) -> SimpleNamespace:
        port = free_port()
        config = tmp_path / f"{example}-{port}.toml"
        config.write_text(
            config_text(
                steward_url=steward_url,
                steward_ca=steward_ca,
                port=port,
                name=name,
                backends=backends,
                env=env,
            )
        )
        wasm = EXAMPLES / example / f"{example}.wasm"
        data = wasm.read_bytes()
        if module is not None:
            wasm = tmp_path / f"{example}-{port}.wasm"
            wasm.write_bytes(module)
        digest = workload_digest(data, parse_config(config.read_bytes()).config)
        return SimpleNamespace(config=config, wasm=wasm, port=port, digest=digest)

    try:
        yield SimpleNamespace(
            steward=steward, keep=keep, workload=workload, policy=demo_policy, rule=WorkloadRule
        )
    finally:
        for k in keeps:
            k.stop()
        for s in stewards:
            s.close()


def https_get(port: int, ca: Path, *, server_hostname: str) -> bytes:
    """``GET /`` from https://127.0.0.1:PORT/, the certificate checked against ``ca`` for
    ``server_hostname`` (a DNS name or, as curl checks it, the IP address), over TLS 1.3 (all a
    Keep speaks); the whole answer."""
    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {server_hostname}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while len(data) < 65536:
            try:
                chunk = tls.recv(4096)
            except ssl.SSLZeroReturnError:
                break
            if not chunk:
                break
            data += chunk
    return data


def refuses_connections(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


@pytest.fixture(scope="session")
def helpers() -> SimpleNamespace:
    return SimpleNamespace(refuses_connections=refuses_connections, free_port=free_port)


# -- a real OCI registry (Debian's docker-registry, distribution 2.8) for docs/deploy.md's tests ---

REGISTRY_USER = "donjon"
REGISTRY_PASSWORD = "registry-test-password"


def _registry_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost: (ca.pem, cert, key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "donjon test registry CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "registry.pem", directory / "registry.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


class Registry:
    """``docker-registry serve`` on 127.0.0.1 with TLS (a throwaway CA) and htpasswd basic auth;
    ``auth`` replaces the ``auth:`` value (flow YAML, e.g. a token service's), ``extra`` adds
    top-level config lines (e.g. a storage ``middleware:``)."""

    def __init__(self, directory: Path, *, auth: str | None = None, extra: str = "") -> None:
        import shutil

        binary = shutil.which("docker-registry")
        htpasswd = shutil.which("htpasswd")
        if binary is None or htpasswd is None:
            pytest.fail("docker-registry and htpasswd are needed (scripts/test installs them)")
        directory.mkdir(parents=True, exist_ok=True)
        self.root = directory
        self.ca, cert, key = _registry_pki(directory)
        users = directory / "htpasswd"
        hashed = subprocess.run(
            [htpasswd, "-Bbn", REGISTRY_USER, REGISTRY_PASSWORD], check=True, capture_output=True, text=True
        ).stdout
        users.write_text(hashed)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = directory / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: error, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: {directory / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '{self.host}', tls: {{certificate: {cert}, key: {key}}}}}\n"
            f"auth: {auth or f'{{htpasswd: {{realm: donjon-test, path: {users}}}}}'}\n" + extra
        )
        self.log = open(directory / "registry.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [binary, "serve", str(config)], stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.auth_file = directory / "auth.json"
        import base64

        token = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
        self.auth_file.write_text(json.dumps({"auths": {self.host: {"auth": token}}}))
        self._wait_ready()

    def _wait_ready(self) -> None:
        import ssl

        context = ssl.create_default_context(cafile=str(self.ca))
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"docker-registry exited: {(self.log.name)}")
            try:
                with (
                    socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1"),
                ):
                    return
            except OSError:
                time.sleep(0.05)  # polling a child's readiness: no event to wait on
        pytest.fail("docker-registry did not listen within the timeout")

    @property
    def env(self) -> dict[str, str]:
        """What a ``donjon`` child process needs: the CA, the credentials file, a package cache of
        the test's own (never the user's ``~/.cache``)."""
        return {
            "DONJON_REGISTRY_CA": str(self.ca),
            "REGISTRY_AUTH_FILE": str(self.auth_file),
            "XDG_CACHE_HOME": str(self.root / "xdg-cache"),
        }

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    r = Registry(tmp_path_factory.mktemp("registry"))
    try:
        yield r
    finally:
        r.close()
