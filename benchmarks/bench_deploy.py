"""Deploy: from ``donjon run oci://...`` to the first TLS connection, beside the same local file.

Reproduce:

    .venv/bin/python benchmarks/bench_deploy.py [--runs 7] [--size-mb 5]

What is measured, in one run on this machine, interleaved (file, cold, cached, file, ...):

- the workload is ``examples/http`` (``prot = "tls"``) with its module padded to ``--size-mb``
  by a custom section (WebAssembly core spec 5.5.3: skipped by the compiler, hashed like any byte);
- ``file``: ``donjon run --backend nil --no-cache --config Donjon.toml http.wasm``;
- ``oci cold``: ``donjon run --backend nil --no-cache --trust-signer signer.pub
  oci://127.0.0.1:PORT/bench/http:v1`` with an empty package cache: resolve the tag, fetch the
  manifest, the signature manifest and payload, the module and config layers over HTTPS with
  basic auth, verify everything, unpack;
- ``oci cached``: the same with the package cache filled by a previous run (blobs, manifests and
  the signature that verified then; only the tag is resolved at the registry);
- the registry is Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1 with TLS and
  htpasswd basic auth, as in the tests;
- the client tries a TLS 1.3 handshake every 2 ms from the moment the child is spawned.

By default the Keeps run on ``nil``, keeping the Steward out of it. ``--attested`` runs all three
on ``sim-snp`` attested by a local Steward (``donjon.demo.steward.LocalSteward``, in this
process): the realistic case, where the Keep imports its HTTP client for the Steward anyway.
Goal (issue 12): under 150 ms extra for a 5 MB module cold, under 30 ms cached.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WASM = ROOT / "examples" / "http" / "http.wasm"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _padded(module: bytes, size: int) -> bytes:
    """``module`` with a custom section making it ``size`` bytes or a little more."""
    name = b"bench-padding"
    pad = max(size - len(module), 0)
    body = bytes([len(name)]) + name + b"\x00" * pad
    n, leb = len(body), bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        leb.append(byte | (0x80 if n else 0))
        if not n:
            break
    return module + b"\x00" + bytes(leb) + body


def _pki(directory: Path) -> tuple[Path, Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench registry CA")])

    def cert(subject, public, extensions):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(ca_key, hashes.SHA256())

    ca = cert(name, ca_key.public_key(), [(x509.BasicConstraints(ca=True, path_length=0), True)])
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    leaf = cert(x509.Name([]), key.public_key(), [(san, True)])
    paths = (directory / "ca.pem", directory / "registry.pem", directory / "registry.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def _start_registry(directory: Path) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    ca, cert, key = _pki(directory)
    users = subprocess.run(["htpasswd", "-Bbn", "bench", "bench-pw"], check=True, capture_output=True).stdout
    (directory / "htpasswd").write_bytes(users)
    host = f"127.0.0.1:{_free_port()}"
    (directory / "config.yml").write_text(
        "version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {directory / 'data'}}}}}\n"
        f"http: {{addr: '{host}', tls: {{certificate: {cert}, key: {key}}}}}\n"
        f"auth: {{htpasswd: {{realm: bench, path: {directory / 'htpasswd'}}}}}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(directory / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    context = ssl.create_default_context(cafile=str(ca))
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", int(host.split(":")[1])), timeout=1) as raw:
                context.wrap_socket(raw, server_hostname="127.0.0.1").close()
            break
        except OSError:
            time.sleep(0.05)
    auth = directory / "auth.json"
    auth.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(b"bench:bench-pw").decode()}}}))
    return proc, host, {"DONJON_REGISTRY_CA": str(ca), "REGISTRY_AUTH_FILE": str(auth)}


def _first_handshake(port: int, deadline: float) -> float:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # timing only; the e2e tests verify
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw):
                return time.monotonic()
        except OSError:
            time.sleep(0.002)
    raise RuntimeError("the Keep never accepted a TLS connection")


#: Compiled bytecode for the children, as an installed Donjon has (this environment may set
#: PYTHONDONTWRITEBYTECODE, which would charge every start for compiling the sources).
_BYTECODE: dict[str, str] = {}


#: ``donjon run`` options choosing the backend (and the Steward): nil unless --attested.
_BACKEND: list[str] = ["--backend", "nil"]


def _one(argv: list[str], port: int, env: dict[str, str]) -> float:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "donjon", "run", *_BACKEND, "--no-cache", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **env, **_BYTECODE},
    )
    try:
        first = _first_handshake(port, started + 60)
    except RuntimeError:
        proc.kill()
        raise RuntimeError((proc.communicate()[1] or b"").decode()) from None
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=10)
    return (first - started) * 1000


def _steward(base: Path, module: bytes, config: Path):  # -> LocalSteward
    """A local Steward trusting a simulated SEV-SNP vendor, admitting the workload by digest."""
    from donjon.backends.sim import load_or_create_sim_vendor
    from donjon.config import parse_config, workload_digest
    from donjon.demo.steward import LocalSteward, WorkloadRule, demo_policy

    vendor = base / "vendor"
    load_or_create_sim_vendor("sim-snp", vendor)
    steward = LocalSteward(base / "steward", sim_vendor_dir=vendor, policy=demo_policy([])).start()
    digest = workload_digest(module, parse_config(config.read_bytes()).config)
    steward.set_policy(demo_policy([WorkloadRule(digest, "/bench/http")]))
    _BACKEND[:] = ["--backend", "sim-snp", "--sim-vendor", str(vendor), "--steward", steward.url,
                   "--steward-ca", str(steward.ca_path)]  # fmt: skip
    return steward


def _donjon(*argv: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "donjon", *argv], capture_output=True, text=True, env={**os.environ, **env}
    )
    if done.returncode != 0:
        raise RuntimeError(f"donjon {' '.join(argv)}: {done.stderr}")
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size-mb", type=float, default=5.0)
    parser.add_argument("--attested", action="store_true", help="sim-snp with a local Steward, not nil")
    args = parser.parse_args(argv)
    if shutil.which("docker-registry") is None or shutil.which("htpasswd") is None:
        print(
            "needs docker-registry and htpasswd (apt-get install docker-registry apache2-utils)",
            file=sys.stderr,
        )
        return 3
    with tempfile.TemporaryDirectory(prefix="donjon-bench-deploy-") as tmp:
        base = Path(tmp)
        (base / "registry").mkdir()
        registry, host, env = _start_registry(base / "registry")
        _BYTECODE["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        try:
            port = _free_port()
            module = _padded(WASM.read_bytes(), int(args.size_mb * 1024 * 1024))
            (base / "http.wasm").write_bytes(module)
            (base / "Donjon.toml").write_text(
                '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'
                f'[[files]]\nkind = "listen"\nname = "web"\naddr = "127.0.0.1"\nport = {port}\nprot = "tls"\n'
            )
            _donjon("package", "build", "--config", str(base / "Donjon.toml"), str(base / "http.wasm"),
                    "-o", str(base / "app.oci"), env=env)  # fmt: skip
            pinned = _donjon("package", "push", str(base / "app.oci"), f"{host}/bench/http:v1", env=env)
            _donjon("package", "keygen", str(base / "signer"), env=env)
            _donjon("package", "sign", pinned, "--key", str(base / "signer.key"), env=env)
            if args.attested:
                steward = _steward(base, module, base / "Donjon.toml")
            local = ["--config", str(base / "Donjon.toml"), str(base / "http.wasm")]
            package = ["--trust-signer", str(base / "signer.pub"), f"oci://{host}/bench/http:v1"]
            warm = base / "warm-cache"
            _one(["--package-cache", str(warm), *package], port, env)  # fills the warm cache
            results: dict[str, list[float]] = {"file": [], "oci cold": [], "oci cached": []}
            for i in range(args.runs):
                results["file"].append(_one(local, port, env))
                cold = ["--package-cache", str(base / f"cold-{i}"), *package]
                results["oci cold"].append(_one(cold, port, env))
                results["oci cached"].append(_one(["--package-cache", str(warm), *package], port, env))
        finally:
            registry.terminate()
            registry.wait(10)
            if args.attested:
                steward.close()

    med = {name: statistics.median(values) for name, values in results.items()}
    how = "sim-snp, attested by a local Steward" if args.attested else "nil"
    print(f"module {len(module) / 1e6:.1f} MB, {how}, {args.runs} runs each, interleaved; medians")
    print("| start | to first TLS connection (ms) | extra vs file (ms) | goal |")
    print("|---|---:|---:|---|")
    print(f"| file | {med['file']:.0f} | - | - |")
    print(f"| oci cold | {med['oci cold']:.0f} | {med['oci cold'] - med['file']:+.0f} | < 150 |")
    print(f"| oci cached | {med['oci cached']:.0f} | {med['oci cached'] - med['file']:+.0f} | < 30 |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
