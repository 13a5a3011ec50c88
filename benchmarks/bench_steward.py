"""Steward issuance: throughput and latency over HTTP beside the in-process ceiling.

Reproduce:

    /work/venv/bin/python benchmarks/bench_steward.py [--requests 400] [--postgres DSN]

What is measured, in one run on this machine:

- **ceiling**: the same work in-process, single thread, no HTTP and no log — parse
  and signature-check the CSR, check the nonce, verify the simulated SNP report
  with the real verifier, check the binding and the policy, sign the certificate;
- **HTTP**: ``donjon steward serve`` in a subprocess (SQLite log, and PostgreSQL
  when ``--postgres`` or ``$DONJON_TEST_POSTGRES_DSN`` is given) and 1, 16 and
  64 concurrent keep-alive connections (a minimal asyncio HTTP/1.1 client in this
  process, so its own CPU does not crowd the server) posting CSRs prepared
  beforehand (the Keep's crypto is not timed).

The table gives requests/s, its ratio to the ceiling, and latency p50/p99. Give
it a PostgreSQL server with ``fsync`` on (``scripts/pg-start`` turns it off for
tests): the run prints the server's setting beside the numbers.
Goal at 16 clients: at least 50 % of the ceiling and p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon import binding, csr, oids
from donjon.attestation.simsnp import default_vendor
from donjon.cli import main as cli_main
from donjon.steward.config import load_config
from donjon.steward.log import NoLog
from donjon.steward.service import build_steward

MEASUREMENT = hashlib.sha384(b"bench keep image").digest()
WORKLOAD = hashlib.sha256(b"bench workload").digest()


def setup(directory: Path, vendor: Any, dsn: str | None) -> Path:
    with open(os.devnull, "w") as devnull:
        sys_stdout, sys.stdout = sys.stdout, devnull
        try:
            # Plain HTTP, as before HTTPS became the default: the numbers stay comparable.
            init = [
                "steward",
                "init",
                "--dir",
                str(directory),
                "--trust-domain",
                "bench.test",
                "--insecure-http",
            ]
            assert cli_main(init) == 0
        finally:
            sys.stdout = sys_stdout
    (directory / "sim-ark.pem").write_bytes(vendor.ark_pem())
    coll = directory / "collateral" / "snp-report"
    coll.mkdir(parents=True, exist_ok=True)
    (coll / "ark.crl").write_bytes(vendor.crl())
    text = (directory / "steward.toml").read_text().replace("simulated = []", 'simulated = ["sim-ark.pem"]')
    if dsn:
        text = text.replace('backend = "sqlite"', 'backend = "postgres"')
        text = text.replace('# dsn = "postgresql://steward@db.example.org/steward"', f'dsn = "{dsn}"')
    (directory / "steward.toml").write_text(text)
    (directory / "policy.toml").write_text(
        f"""allow_simulated = true
[platform.sev-snp]
allowed_measurements = ["{MEASUREMENT.hex()}"]
[[workload]]
digest = "{WORKLOAD.hex()}"
spiffe_path = "/bench"
platforms = ["sev-snp", "simulated"]
"""
    )
    return directory / "steward.toml"


def make_csr(vendor: Any, nonce: bytes) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ev = vendor.evidence(binding.keep_binding(spki, WORKLOAD, nonce), measurement=MEASUREMENT)
    return csr.build_csr(
        key,
        statements=[(oids.EVIDENCE_SNP, ev.report)],
        workload_digest=WORKLOAD,
        nonce=nonce,
        certs=ev.certs,
    )


def ceiling(config: Path, vendor: Any, n: int) -> float:
    steward = build_steward(load_config(config))
    steward.log.close()
    steward.log = NoLog()
    bodies = [make_csr(vendor, steward.challenge()[0]) for _ in range(n)]
    for body in bodies[:10]:  # warm-up: caches, imports
        steward.check_native(body, {}, datetime.now(UTC))
    start = time.perf_counter()
    for body in bodies:
        now = datetime.now(UTC)
        spki, decision, _, _ = steward.check_native(body, {}, now)
        steward.ca.issue(spki, spiffe_path=decision.spiffe_path, dns_names=(), lifetime=3600, now=now)
    return n / (time.perf_counter() - start)


class Server:
    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "donjon", "steward", "serve", "--config", str(config), "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url = ""
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "listening":
                    self.url = event["url"]
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30) or not self.url:
            self.proc.kill()
            raise RuntimeError("steward did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, body: bytes) -> int:
    """One keep-alive HTTP/1.1 POST; returns the status. A minimal client (like wrk), so the
    benchmark's own CPU does not crowd the server on a small machine."""
    writer.write(
        f"POST /attest HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/pkcs10\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def run_level(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    failures = 0
    queue = list(bodies)
    host_port = url.split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)

    async def worker() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while queue:
                body = queue.pop()
                t = time.perf_counter()
                status = await _post(reader, writer, host_port, body)
                latencies.append(time.perf_counter() - t)
                if status != 200:
                    failures += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return len(bodies) / elapsed, latencies, failures


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def nonces(url: str, n: int) -> list[bytes]:
    out = []
    with httpx.Client() as client:
        for _ in range(n):
            text = client.get(f"{url}/challenge").json()["nonce"]
            out.append(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    ap.add_argument("--postgres", default=os.environ.get("DONJON_TEST_POSTGRES_DSN"), help="PostgreSQL DSN")
    args = ap.parse_args()
    vendor = default_vendor("Milan")
    rows: list[tuple[str, int, float, float, float, float, int]] = []
    tops: list[float] = []
    load_before = os.getloadavg()[0]
    pg_durability = ""
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_config = setup(Path(tmp) / "sqlite", vendor, None)
        top = ceiling(sqlite_config, vendor, max(100, args.requests // 2))
        backends = [("sqlite", sqlite_config)]
        if args.postgres:
            import psycopg

            name = f"bench_{os.getpid()}"
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name}")
                conn.execute(f"CREATE DATABASE {name}")
                # A server with fsync off commits without durability: say so beside its numbers.
                settings = [
                    f"{s}={(conn.execute(f'SHOW {s}').fetchone() or ('?',))[0]}"
                    for s in ("fsync", "synchronous_commit")
                ]
                pg_durability = "; postgres: " + ", ".join(settings)
            backends.append(
                ("postgres", setup(Path(tmp) / "pg", vendor, args.postgres.rsplit("/", 1)[0] + "/" + name))
            )
        for label, config in backends:
            server = Server(config)
            try:
                for concurrency in (1, 16, 64):
                    n = args.requests if concurrency > 1 else max(100, args.requests // 4)
                    bodies = [make_csr(vendor, nonce) for nonce in nonces(server.url, n)]
                    asyncio.run(run_level(server.url, bodies[:20], concurrency))  # warm-up (reuses 20 nonces)
                    # The machine may be shared: measure the ceiling right beside each level.
                    top = (top + ceiling(config, vendor, 100)) / 2
                    rate, lat, failures = asyncio.run(run_level(server.url, bodies, concurrency))
                    top = (top + ceiling(config, vendor, 100)) / 2
                    tops.append(top)
                    rows.append((label, concurrency, rate, rate / top, pct(lat, 50), pct(lat, 99), failures))
            finally:
                server.stop()
    print(f"Steward issuance, simulated SNP ({os.cpu_count()} CPUs); ceiling: in-process, no HTTP, no log")
    print(
        f"machine load (1-min average) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
        f"{pg_durability}; each server in its own process, the client in this one"
    )
    print(f"ceiling: {min(tops):.1f}..{max(tops):.1f} issuances/s (measured beside each row; ratios use it)")
    print(f"{'log':<9}{'clients':>8}{'req/s':>10}{'of ceiling':>12}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}")
    for label, concurrency, rate, ratio, p50, p99, failures in rows:
        print(f"{label:<9}{concurrency:>8}{rate:>10.1f}{ratio:>11.0%}{p50:>9.1f}{p99:>9.1f}{failures:>8}")
    print("command: /work/venv/bin/python benchmarks/bench_steward.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
