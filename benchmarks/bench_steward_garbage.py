"""What a flood of garbage CSRs costs a running Steward: log bytes and CPU per request.

Reproduce:

    .venv/bin/python benchmarks/bench_steward_garbage.py [--seconds 10] [--clients 2]

``donjon steward serve`` runs in a subprocess (SQLite log, fsync on every commit as
configured). ``--clients`` keep-alive connections post garbage to ``POST /attest``
as fast as they can for ``--seconds``: random bytes, truncated and bit-flipped
copies of a real CSR, and a CSR whose statement type has one 60 KB arc. The table
gives requests per second, what the log database (with its write-ahead log) grew
by, per request and per second, the Steward's CPU time per request (from
/proc/<pid>/stat, so the load of the client does not count) and the statuses seen.
The same script measures an older tree with ``PYTHONPATH=<old checkout>/src``
(the subprocess inherits it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from donjon import csr, oids
from donjon.cli import main as cli_main

WORKLOAD = b"\1" * 32


def setup(directory: Path) -> Path:
    with open(os.devnull, "w") as devnull:
        saved, sys.stdout = sys.stdout, devnull
        try:
            assert cli_main(["steward", "init", "--dir", str(directory), "--trust-domain", "bench.test"]) == 0
        finally:
            sys.stdout = saved
    return directory / "steward.toml"


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def bodies(nonce: bytes, *, long_arc: bool) -> list[bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    valid = csr.build_csr(
        key, statements=[(oids.EVIDENCE_SNP, os.urandom(1184))], workload_digest=WORKLOAD, nonce=nonce
    )
    attrs = csr._Attributes()
    statement = tlv(0x30, tlv(0x06, b"\x2a" + b"\xff" * 60_000 + b"\x7f") + tlv(0x04, b"r"))
    attrs.append(csr._attribute(oids.ID_AA_ATTESTATION, tlv(0x30, tlv(0x30, statement))))
    attrs.append(csr._attribute(oids.CSR_ATTR_NONCE, tlv(0x04, nonce)))
    out = [os.urandom(n) for n in (100, 1000, 4000)]
    out += [valid[: len(valid) // 2], valid[:-3], valid[:60] + bytes([valid[60] ^ 1]) + valid[61:]]
    if long_arc:
        out.append(csr._finish(key, attrs))
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stored(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("log.db*"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the flood lasts")
    parser.add_argument("--clients", type=int, default=2, help="keep-alive connections posting garbage")
    parser.add_argument(
        "--no-long-arc", action="store_true", help="leave out the CSR with a 60 KB OID arc (cheap garbage)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = setup(Path(tmp))
        proc = subprocess.Popen(
            [sys.executable, "-m", "donjon", "steward", "serve", "--config", str(config), "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines = 0
        url: list[str] = []
        ready = threading.Event()

        def read() -> None:
            nonlocal lines
            assert proc.stderr is not None
            for line in proc.stderr:
                lines += 1
                try:
                    event: dict[str, Any] = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "listening":
                    url.append(event["url"])
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        try:
            if not ready.wait(30) or not url:
                raise SystemExit("donjon: the Steward did not start")
            host, port = url[0].split("//")[1].split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            conn.request("GET", "/challenge")
            text = json.loads(conn.getresponse().read())["nonce"]
            import base64

            nonce = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            payloads = bodies(nonce, long_arc=not args.no_long_arc)
            statuses: Counter[int] = Counter()
            lock = threading.Lock()
            stop = time.monotonic() + args.seconds

            def flood() -> None:
                c = http.client.HTTPConnection(host, int(port), timeout=30)
                i = 0
                while time.monotonic() < stop:
                    c.request("POST", "/attest", body=payloads[i % len(payloads)],
                              headers={"Content-Type": "application/pkcs10"})  # fmt: skip
                    r = c.getresponse()
                    r.read()
                    with lock:
                        statuses[r.status] += 1
                    i += 1

            size0, cpu0, lines0, t0 = stored(Path(tmp)), cpu_seconds(proc.pid), lines, time.monotonic()
            workers = [threading.Thread(target=flood) for _ in range(args.clients)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            elapsed = time.monotonic() - t0
            grown, cpu = stored(Path(tmp)) - size0, cpu_seconds(proc.pid) - cpu0
            n = sum(statuses.values())
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"{'requests':>9} {'req/s':>8} {'log B/req':>10} {'log KB/s':>9} {'CPU ms/req':>11} "
          f"{'log lines/req':>14}  statuses")  # fmt: skip
    print(
        f"{n:>9} {n / elapsed:>8.0f} {grown / n:>10.0f} {grown / elapsed / 1024:>9.1f} "
        f"{cpu * 1000 / n:>11.2f} {(lines - lines0) / n:>14.3f}  {dict(sorted(statuses.items()))}"
    )
    print(f"reproduce: python benchmarks/bench_steward_garbage.py --seconds {args.seconds:g} "
          f"--clients {args.clients}{' --no-long-arc' if args.no_long_arc else ''}")  # fmt: skip


if __name__ == "__main__":
    main()
