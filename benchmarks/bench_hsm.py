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
then the ratios token/file. Then the whole in-process issuance (bench_steward.py's "ceiling":
CSR, nonce, the real SNP verifier, binding, policy, signing; no HTTP, no log) with the CA key in
a file and in the token, alternated, to show the token's share of a real issuance. The raw
CKM_ECDSA sign is timed alone for scale, and a checkpoint
signature by the log key (Ed25519) in the token beside one in memory.
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
from cryptography.hazmat.primitives.asymmetric import ec, ed25519


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


def _whole_issuance(work: Path, uri: Any, n: int) -> dict[str, list[float]]:
    """Full in-process issuances/s, file CA vs token CA, three alternated rounds each."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_steward
    from donjon.attestation.simsnp import default_vendor
    from donjon.hsm.keys import create_ec_key
    from donjon.steward.ca import create_ca_certificate

    vendor = default_vendor("Milan")
    file_config = bench_steward.setup(work / "file", vendor, None)
    token_config = bench_steward.setup(work / "token", vendor, None)
    token_uri = uri.with_object("steward-ca")
    signer = create_ec_key(token_uri)
    cert = create_ca_certificate(signer, "Bench token CA", now=datetime.now(UTC))
    signer.close()
    (work / "token" / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    text = token_config.read_text().replace('ca_key = "ca-key.pem"', f'ca_key = "{token_uri}"')
    token_config.write_text(text)
    out: dict[str, list[float]] = {"file": [], "token": []}
    for _ in range(3):
        for name, config in (("file", file_config), ("token", token_config)):
            out[name].append(bench_steward.ceiling(config, vendor, n))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--issues", type=int, default=2000, help="issuances per side (default 2000)")
    ap.add_argument("--whole", type=int, default=300, help="full issuances per side and round (default 300)")
    ap.add_argument("--threads", type=int, default=2, help="threads for the throughput run (default 2)")
    args = ap.parse_args()

    from donjon.hsm import parse_uri
    from donjon.hsm.keys import create_ec_key, create_ed25519_key
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
        # A checkpoint signature (the log key), token vs in memory: ~100-byte notes.
        token_log = create_ed25519_key(uri.with_object("log"))
        file_log = ed25519.Ed25519PrivateKey.generate()
        note = b"example.org/donjon-steward-log\n12345\n" + b"A" * 43 + b"=\n"
        log_times = []
        for key in (file_log, token_log):
            t0 = time.perf_counter()
            for _ in range(args.issues):
                key.sign(note)
            log_times.append((time.perf_counter() - t0) / args.issues * 1e6)
        token_log.close()
        f = _measure(file_ca, spki, args.issues, args.threads)
        t = _measure(token_ca, spki, args.issues, args.threads)
        token_ca.close()
        whole = _whole_issuance(Path(tmp), uri, args.whole)

    print(f"issuance, P-256 CA key, {args.issues} per side, {os.cpu_count()} CPUs")
    print(f"{'':<22}{'file key':>12}{'token key':>12}{'token/file':>12}")
    print(f"{'latency (us)':<22}{f[0]:>12.0f}{t[0]:>12.0f}{t[0] / f[0]:>12.2f}")
    print(f"{'CPU per issue (us)':<22}{f[1]:>12.0f}{t[1]:>12.0f}{t[1] / f[1]:>12.2f}")
    print(f"{f'issues/s, {args.threads} threads':<22}{f[2]:>12.0f}{t[2]:>12.0f}{t[2] / f[2]:>12.2f}")
    f_rate, t_rate = max(whole["file"]), max(whole["token"])
    rounds = {k: ", ".join(f"{r:.0f}" for r in v) for k, v in whole.items()}
    print(
        f"whole issuance in-process (checks + signature), best of 3: file {f_rate:.0f}/s, "
        f"token {t_rate:.0f}/s, token/file {t_rate / f_rate:.2f} (rounds: file "
        f"{rounds['file']}; token {rounds['token']})"
    )
    print(f"CKM_ECDSA sign alone in the token: {raw_sign:.0f} us")
    print(
        f"checkpoint signature (Ed25519): file {log_times[0]:.0f} us, "
        f"token (CKM_EDDSA) {log_times[1]:.0f} us, {log_times[1] / log_times[0]:.2f}x"
    )


if __name__ == "__main__":
    main()
