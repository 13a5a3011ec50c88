"""SEV-SNP verification cost against the bare signature checks it contains.

Run:  python benchmarks/bench_attestation_snp.py [--vectors ../shared/vectors] [--seconds 1.0]

What is compared, side by side in one process on one core:

- warm: ``verify_evidence`` on a real Milan report (trustee test-report.bin) with the
  VCEK and AMD's ASK/ARK parsed once by the caller, as a Steward holds them. The
  library remembers verified certificate signatures (ARK self-signature,
  ARK->ASK, ASK->VCEK) by their DER, so per call it pays for one ECDSA P-384
  signature plus everything else it checks (parsing, reserved fields, pins,
  validity, TCB, policy, claims). The reference is that one ECDSA P-384
  verification done directly with ``cryptography`` (R and S decoded from the
  report, DER-encoded, verified over bytes 0h-29Fh).
- warm, DER: the same, but the VCEK arrives as DER bytes on every call (as in a CSR).
- chain re-verified: the library's memory of verified certificate signatures is
  cleared before every call (parsed certificates stay cached), so it re-verifies
  the three RSA-4096 PSS chain signatures too. The reference is the ECDSA check
  plus those three ``verify_directly_issued_by`` calls.

The ratio is ours / reference (goal: <= 1.5). Verifications per second are per core.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from donjon.attestation import amd
from donjon.attestation.verify import TrustRoots, verify_evidence

AT = datetime(2026, 11, 29, tzinfo=UTC)


def timed(ours: Callable[[], object], reference: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Seconds per call of ``ours`` and ``reference``: batches interleaved, best batch of each.

    Interleaving and taking the minimum keep other processes on the machine from
    favouring either side.
    """
    ours()
    reference()
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < 0.05:
        ours()
        n += 1
    batch = max(1, int(n * seconds / 40 / 0.05))
    best = [float("inf"), float("inf")]
    for _ in range(20):
        for i, fn in enumerate((ours, reference)):
            t = time.perf_counter()
            for _ in range(batch):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t) / batch)
    return best[0], best[1]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors"
    parser.add_argument("--vectors", type=Path, default=default)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    vectors: Path = args.vectors
    report = (vectors / "snp/trustee/test-report.bin").read_bytes()
    vcek_der = (vectors / "snp/trustee/test-vcek.der").read_bytes()
    roots = TrustRoots.from_bytes((vectors / "roots/amd/trustee_milan_ask_ark_asvk.pem").read_bytes())
    vcek = x509.load_der_x509_certificate(vcek_der)
    ask = next(c for c in roots.certificates if "SEV-Milan" in c.subject.rfc4514_string())
    ark = next(c for c in roots.certificates if "ARK-Milan" in c.subject.rfc4514_string())
    public_key = vcek.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)

    def ours_parsed() -> object:
        return verify_evidence("snp-report", report, certs=[vcek], roots=roots, at=AT)

    def ours_der() -> object:
        return verify_evidence("snp-report", report, certs=[vcek_der], roots=roots, at=AT)

    def ours_cold() -> object:
        amd.clear_caches(parsed=False)
        return verify_evidence("snp-report", report, certs=[vcek], roots=roots, at=AT)

    def ecdsa_only() -> None:
        r = int.from_bytes(report[0x2A0:0x2E8], "little")
        s = int.from_bytes(report[0x2E8:0x330], "little")
        public_key.verify(encode_dss_signature(r, s), report[:0x2A0], ec.ECDSA(hashes.SHA384()))

    def ecdsa_and_chain() -> None:
        ark.verify_directly_issued_by(ark)
        ask.verify_directly_issued_by(ark)
        vcek.verify_directly_issued_by(ask)
        ecdsa_only()

    rows = [
        ("warm (chain verified once, certs parsed)", ours_parsed, ecdsa_only, "1 ECDSA P-384"),
        ("warm, VCEK as DER on every call", ours_der, ecdsa_only, "1 ECDSA P-384"),
        (
            "chain signatures re-verified every call",
            ours_cold,
            ecdsa_and_chain,
            "1 ECDSA P-384 + 3 RSA-4096 PSS",
        ),
    ]
    print(f"SEV-SNP report verification, Python {sys.version.split()[0]}, one core")
    print(f"{'mode':44} {'ours us':>9} {'reference':>31} {'ref us':>8} {'ratio':>6} {'verif/s':>8}")
    for name, ours, reference, what in rows:
        t_ours, t_ref = timed(ours, reference, args.seconds)
        ratio = t_ours / t_ref
        print(f"{name:44} {t_ours * 1e6:9.0f} {what:>31} {t_ref * 1e6:8.0f} {ratio:6.2f} {1 / t_ours:8.0f}")
    print("reproduce: python benchmarks/bench_attestation_snp.py --vectors ../shared/vectors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
