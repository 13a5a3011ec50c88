"""Certificate issuance with the CA key in a PKCS#11 token (SoftHSM2) beside a key in a file.

Reproduce (needs Debian's softhsm2):

    .venv/bin/python benchmarks/bench_hsm.py [--issues 2000] [--threads 2]

A temporary SoftHSM2 token is initialised with ``softhsm2-util``; the same X.509-SVID (SPIFFE
URI, DNS name, a DICE-less claims-free profile) is issued by ``CertificateAuthority.issue`` with
a P-256 key (a) in memory, as loaded from ``ca-key.pem``, and (b) in the token (CKM_ECDSA,
plus the throwaway-key signature the TBS bytes are built with and the verification of the
reassembled certificate). Reported per issuance: wall time (latency, one thread), this
process's CPU time (SoftHSM2 runs in-process, so its CPU is counted), and issuances/s with
``--threads`` threads (the Steward's workers; the token serialises calls under one lock);
then the ratios token/file. The raw CKM_ECDSA sign is timed alone for scale.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def _setup_token(work: Path) -> str:
    util = shutil.which("softhsm2-util")
    if util is None:
        sys.exit("bench_hsm: softhsm2-util is not installed (apt-get install softhsm2)")
    (work / "tokens").mkdir()
    conf = work / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {work / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [util, "--init-token", "--free", "--label", "bench", "--pin", "1234", "--so-pin", "5678"],
        check=True,
        capture_output=True,
    )
    return "pkcs11:token=bench;object=ca?pin-value=1234"


def _measure(ca: Any, spki: bytes, n: int, threads: int) -> tuple[float, float, float]:
    now = datetime.now(UTC)

    def issue() -> None:
        ca.issue(spki, spiffe_path="/bench/web", dns_names=["web.example.org"], lifetime=3600, now=now)

    for _ in range(20):
        issue()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        issue()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    def worker(count: int) -> None:
        for _ in range(count):
            issue()

    pool = [threading.Thread(target=worker, args=(n // threads,)) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    rate = (n // threads) * threads / (time.perf_counter() - start)
    return wall / n * 1e6, cpu / n * 1e6, rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--issues", type=int, default=2000, help="issuances per side (default 2000)")
    ap.add_argument("--threads", type=int, default=2, help="threads for the throughput run (default 2)")
    args = ap.parse_args()

    from donjon.hsm import parse_uri
    from donjon.hsm.keys import create_ec_key
    from donjon.steward.ca import CertificateAuthority, create_ca, create_ca_certificate

    with tempfile.TemporaryDirectory() as tmp:
        uri = parse_uri(_setup_token(Path(tmp)))
        now = datetime.now(UTC)
        file_key, file_cert = create_ca("Bench file CA", now=now)
        signer = create_ec_key(uri)
        token_cert = create_ca_certificate(signer, "Bench token CA", now=now)
        file_ca = CertificateAuthority(file_key, file_cert, trust_domain="example.org")
        token_ca = CertificateAuthority(signer, token_cert, trust_domain="example.org")
        spki = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        digest = b"\x5a" * 32
        t0 = time.perf_counter()
        for _ in range(args.issues):
            signer.sign_digest(digest)
        raw_sign = (time.perf_counter() - t0) / args.issues * 1e6
        f = _measure(file_ca, spki, args.issues, args.threads)
        t = _measure(token_ca, spki, args.issues, args.threads)
        token_ca.close()

    print(f"issuance, P-256 CA key, {args.issues} per side, {os.cpu_count()} CPUs")
    print(f"{'':<22}{'file key':>12}{'token key':>12}{'token/file':>12}")
    print(f"{'latency (us)':<22}{f[0]:>12.0f}{t[0]:>12.0f}{t[0] / f[0]:>12.2f}")
    print(f"{'CPU per issue (us)':<22}{f[1]:>12.0f}{t[1]:>12.0f}{t[1] / f[1]:>12.2f}")
    print(f"{f'issues/s, {args.threads} threads':<22}{f[2]:>12.0f}{t[2]:>12.0f}{t[2] / f[2]:>12.2f}")
    print(f"CKM_ECDSA sign alone in the token: {raw_sign:.0f} us")


if __name__ == "__main__":
    main()
