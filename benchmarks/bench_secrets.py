"""Secret releases over mutual TLS, beside the bare mutual-TLS handshake rate, 16 clients.

Reproduce:

    .venv/bin/python benchmarks/bench_secrets.py [--clients 16] [--seconds 5]

What is measured, in one run on this machine, against one ``donjon steward serve`` process
(SQLite log, HTTPS asking for client certificates) with a client certificate its CA issued:

- **handshake**: connect, full TLS 1.3 handshake presenting the client certificate, close — no
  HTTP. The ceiling for anything that opens a new connection per request;
- **release, new connection**: the same, then ``GET /secrets/db-password`` (``Connection:
  close``): what a Keep does at start and at each renewal. Each release runs the checks (CA
  signature, validity, SPIFFE ID, DICE claims, the ``[[secret]]`` rule), decrypts the value
  (unwrap the data key, AES-GCM) and commits a log entry before answering;
- **release, keep-alive**: the GET repeated on one connection per client (the per-request cost
  without the handshake).

Clients are threads of this process (OpenSSL releases the GIL in handshakes and I/O); the server
is its own process. Output: a table of operations/s, latency p50/p99, and the ratio of each row to
the handshake row measured just before it, and the server's CPU time per operation (robust to
the load of a shared machine).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.cli.steward import main as steward_main
from donjon.demo.steward import https_certificate
from donjon.dice import TEE_NAMES, WORKLOAD_MODEL, WORKLOAD_VENDOR, Fwid, TcbInfo
from donjon.steward.ca import CertificateAuthority

DIGEST = bytes.fromhex("ab" * 32)
VALUE = os.urandom(64)


def setup(directory: Path) -> tuple[Path, Path, Path, Path]:
    """A Steward directory with HTTPS, one secret and its rule; a client certificate and key."""
    with open(os.devnull, "w") as devnull:
        saved, sys.stdout = sys.stdout, devnull
        try:
            assert steward_main(["init", "--dir", str(directory), "--trust-domain", "bench.test"]) == 0
        finally:
            sys.stdout = saved
    ca = CertificateAuthority.load(
        str(directory / "ca.pem"), str(directory / "ca-key.pem"), trust_domain="bench.test"
    )
    https_certificate(ca.key, ca.cert, directory)
    config = directory / "steward.toml"
    text = config.read_text().replace('# tls_cert = "tls.pem"', 'tls_cert = "tls.pem"')
    config.write_text(text.replace('# tls_key = "tls-key.pem"', 'tls_key = "tls-key.pem"'))
    (directory / "policy.toml").write_text(
        'version = 1\n[[secret]]\nname = "db-password"\nspiffe_paths = ["/bench"]\n'
        f'digests = ["{DIGEST.hex()}"]\n'
    )
    value = directory / "value"
    value.write_bytes(VALUE)
    with open(os.devnull, "w") as devnull:
        saved, sys.stdout = sys.stdout, devnull
        try:
            code = steward_main(
                ["secret", "put", "db-password", "--file", str(value), "--config", str(config)]
            )
        finally:
            sys.stdout = saved
    assert code == 0
    value.unlink()
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    vendor, model = TEE_NAMES["sev-snp"]
    issued = ca.issue(
        spki,
        spiffe_path="/bench",
        dns_names=(),
        lifetime=3600,
        now=datetime.now(UTC) - timedelta(seconds=5),
        dice=(
            TcbInfo(vendor=vendor, model=model, layer=0, fwids=(Fwid.of(bytes(48)),)),
            TcbInfo(vendor=WORKLOAD_VENDOR, model=WORKLOAD_MODEL, layer=1, fwids=(Fwid("sha256", DIGEST),)),
        ),
    )
    cert, key_path = directory / "client.pem", directory / "client-key.pem"
    cert.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return config, directory / "ca.pem", cert, key_path


def serve(config: Path) -> tuple[subprocess.Popen[str], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "donjon", "steward", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if '"listening"' in line:
            break
    else:
        raise SystemExit("the Steward did not start")
    # Drain its log (one JSON line per request) so it never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stderr or ()], daemon=True).start()
    return proc, port


REQUEST = b"GET /secrets/db-password HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def _response(tls: ssl.SSLSocket, keep_alive: bool) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before the response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.split(b"\r\n")[0].decode())
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += tls.recv(65536)
    if body != VALUE:
        raise RuntimeError("wrong value")


def run(
    kind: str, port: int, context: ssl.SSLContext, clients: int, seconds: float
) -> tuple[float, list[float], int]:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    stop = time.monotonic() + seconds
    start_gate = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        start_gate.wait()
        tls: ssl.SSLSocket | None = None
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                if kind == "keep-alive":
                    if tls is None:
                        tls = context.wrap_socket(
                            socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1"
                        )
                    tls.sendall(REQUEST + b"\r\n")
                    _response(tls, True)
                else:
                    with context.wrap_socket(
                        socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1"
                    ) as conn:
                        if kind == "release":
                            conn.sendall(REQUEST + b"Connection: close\r\n\r\n")
                            _response(conn, False)
            except (OSError, RuntimeError):
                failures[i] += 1
                tls = None
                continue
            latencies[i].append(time.perf_counter() - t0)
        if tls is not None:
            tls.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    began = time.monotonic()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    flat = sorted(x for row in latencies for x in row)
    return len(flat) / elapsed, flat, sum(failures)


def server_cpu(pid: int) -> float:
    """User + system CPU seconds of the server process so far (proc(5): fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per row (default 4)")
    parser.add_argument("--pairs", type=int, default=3, help="handshake/release pairs (default 3)")
    args = parser.parse_args()
    rows: list[tuple[str, float, list[float], int, float]] = []
    with tempfile.TemporaryDirectory(prefix="donjon-bench-secrets-") as tmp:
        config, ca, cert, key = setup(Path(tmp) / "steward")
        proc, port = serve(config)
        try:
            context = ssl.create_default_context(cafile=str(ca))
            context.minimum_version = ssl.TLSVersion.TLSv1_3
            context.load_cert_chain(str(cert), str(key))
            run("release", port, context, 2, 1.0)  # warm up
            load_before = os.getloadavg()[0]
            kinds = [*(["handshake", "release"] * args.pairs), "keep-alive"]
            for kind in kinds:
                cpu = server_cpu(proc.pid)
                rate, lat, failed = run(kind, port, context, args.clients, args.seconds)
                per_op = (server_cpu(proc.pid) - cpu) / max(1, len(lat)) * 1000
                rows.append((kind, rate, lat, failed, per_op))
            load_after = os.getloadavg()[0]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    print(
        f"Secret releases over mutual TLS ({os.cpu_count()} CPUs), {args.clients} clients, "
        f"{args.seconds:g} s per row"
    )
    print(
        f"machine load (1-min average) {load_before:.1f} before, {load_after:.1f} after; "
        "server: donjon steward serve (SQLite log)"
    )
    print(
        f"{'row':<26}{'ops/s':>9}{'vs handshake':>14}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'server CPU ms/op':>18}{'failed':>8}"
    )
    names = {
        "handshake": "mTLS handshake only",
        "release": "release, new connection",
        "keep-alive": "release, keep-alive",
    }
    ratios = []
    previous: float | None = None
    for kind, rate, lat, failed, per_op in rows:
        p50 = lat[len(lat) // 2] * 1000 if lat else float("nan")
        p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan")
        ratio = ""
        if kind == "handshake":
            previous = rate
        elif kind == "release" and previous:
            ratios.append(rate / previous)
            ratio = f"{rate / previous:.2f}"
        print(f"{names[kind]:<26}{rate:>9.1f}{ratio:>14}{p50:>9.1f}{p99:>9.1f}{per_op:>18.2f}{failed:>8}")
    cpu_hs = statistics.median(r[4] for r in rows if r[0] == "handshake")
    cpu_rel = statistics.median(r[4] for r in rows if r[0] == "release")
    print(
        f"release / handshake (rate, each release row over the handshake row just before it): "
        f"median {statistics.median(ratios):.2f}; server CPU per op, medians: handshake {cpu_hs:.2f} ms, "
        f"release {cpu_rel:.2f} ms ({cpu_hs / cpu_rel:.2f} of it)"
    )
    print(
        f"reproduce: python benchmarks/bench_secrets.py --clients {args.clients} --seconds {args.seconds:g} "
        f"--pairs {args.pairs}"
    )


if __name__ == "__main__":
    main()
