"""Cost of verifying one Intel TDX quote vs the bare signature checks it contains.

Rows, measured side by side in one process on one core:

* ``verify_tdx_quote`` (warm): the full verifier on one real quote with its real collateral
  (../shared/vectors tdx-dcapqvl; the simulated vendor when the vectors are absent). Time-independent
  signature results (certificate chains, CRL and TCB document signatures) are memoised on their
  exact bytes after the first call; every call still parses the quote, decodes the PCK extensions,
  checks the QE report and quote signatures, the attestation key binding, every validity window,
  every CRL lookup, the QE identity and TCB level matching, and builds the claims.
* bare signatures: what any verifier must do per quote with ``cryptography`` directly: the quote
  signature (attestation key) and the QE report signature (PCK key), keys already loaded. The
  verifier does no other signature work per call once warm.
* ``verify_tdx_quote`` (cold): every memo cleared before each call (the cost for a never-seen
  platform and collateral: PCK chain, CRLs, TCB Info and QE Identity chains and signatures).

Reported: microseconds per verification (best of ``--repeat`` runs), verifications/s on one core,
and the ratio warm / bare (goal <= 1.5).

Reproduce:  /work/venv/bin/python benchmarks/bench_attestation_tdx.py [--n N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from donjon.attestation import dcap_verify
from donjon.attestation.dcap import parse_quote
from donjon.attestation.dcap_verify import IntelCollateral, verify_tdx_quote
from donjon.attestation.simtdx import SimulatedTdx


def _shared() -> Path | None:
    env = os.environ.get("DONJON_SHARED")
    path = Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared"
    vectors = path / "vectors" / "tdx" / "dcapqvl"
    return vectors if vectors.is_dir() else None


def _real() -> tuple[str, bytes, IntelCollateral, datetime, list[x509.Certificate] | None] | None:
    base = _shared()
    if base is None:
        return None

    def rd(name: str) -> bytes:
        return (base / name).read_bytes()

    collateral = IntelCollateral(
        tcb_info=rd("tdx_quote.coll.tcbinfo.json"),
        tcb_info_issuer_chain=rd("tdx_quote.coll.tcb_info_issuer_chain.pem"),
        qe_identity=rd("tdx_quote.coll.qe_identity.json"),
        qe_identity_issuer_chain=rd("tdx_quote.coll.qe_identity_issuer_chain.pem"),
        pck_crl=rd("tdx_quote.coll.pck_crl.der"),
        root_crl=rd("tdx_quote.coll.root_ca_crl.der"),
    )
    at = datetime(2025, 7, 19, 10, 0, 34, tzinfo=UTC)
    return "real tdx-dcapqvl quote (Intel root)", rd("tdx_quote"), collateral, at, None


def _simulated() -> tuple[str, bytes, IntelCollateral, datetime, list[x509.Certificate] | None]:
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    sim = SimulatedTdx(issued_at=issued)
    at = issued + timedelta(days=1)
    return "simulated TDX quote", sim.quote(bytes(64)), sim.collateral(), at, [sim.root]


def _clear_memos() -> None:
    for name in ("_load_chain", "_signed_by", "_pck_extensions", "_ec_key_from_cert", "_ec_key_from_point",
                 "_crl", "_signed_document", "_pck", "_prepare"):  # fmt: skip
        getattr(dcap_verify, name).cache_clear()


def _once(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def _side_by_side(cases: list[tuple[Callable[[], object], int]], repeat: int) -> list[float]:
    """Best time per call of each case, the cases interleaved in every round so load spikes hit all."""
    best = [float("inf")] * len(cases)
    for _ in range(repeat):
        for i, (fn, n) in enumerate(cases):
            best[i] = min(best[i], _once(fn, n))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="verifications per timed run")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs; the best is reported")
    args = parser.parse_args()

    label, quote, collateral, at, roots = _real() or _simulated()

    def ours() -> object:
        return verify_tdx_quote(quote, collateral=collateral, roots=roots, at=at)

    # The bare checks, with the same inputs, keys loaded once.
    q = parse_quote(quote)
    sig = q.signature
    att_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + sig.attestation_key)
    pck_key = x509.load_pem_x509_certificates(sig.pck_cert_chain.rstrip(b"\x00"))[0].public_key()
    assert isinstance(pck_key, ec.EllipticCurvePublicKey)
    algorithm = ec.ECDSA(hashes.SHA256())

    def der(raw: bytes) -> bytes:
        return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))

    def bare() -> None:
        att_key.verify(der(sig.signature), q.signed_data, algorithm)
        pck_key.verify(der(sig.qe_report_signature), sig.qe_report.raw, algorithm)

    def cold() -> object:
        _clear_memos()
        return ours()

    ours()  # warm the memos
    t_ours, t_bare, t_cold = _side_by_side(
        [(ours, args.n), (bare, args.n), (cold, max(args.n // 20, 5))], args.repeat
    )
    ours()

    print(f"# {label}; n={args.n}, best of {args.repeat}; one core")
    print(f"{'case':<42} {'us/verify':>10} {'verify/s':>10} {'x bare':>8}")
    for name, t in [
        ("verify_tdx_quote (warm memos)", t_ours),
        ("bare: quote sig + QE report sig", t_bare),
        ("verify_tdx_quote (cold: all memos cleared)", t_cold),
    ]:
        print(f"{name:<42} {t * 1e6:>10.1f} {1 / t:>10.0f} {t / t_bare:>8.2f}")
    print(f"ratio warm/bare = {t_ours / t_bare:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
