"""What the SEV-SNP verification benchmarks share (bench_attestation_snp.py, bench_attestation_azure.py).

- :func:`parse_args`: their command line (``--vectors``, ``--seconds``);
- :data:`AT`, the verification time, and :func:`milan_roots`: the vectors' Milan roots
  (trustee's ASK/ARK/ASVK), what both verify against; :func:`milan_chain`: the ASK and ARK among them;
- :func:`verify_report_signature`: the reference every row is compared with, the one ECDSA P-384
  signature of an SEV-SNP report checked directly with ``cryptography`` (AMD SEV-SNP ABI,
  "ATTESTATION_REPORT": the signature over bytes 0h-29Fh, R at 2A0h and S at 2E8h, 72 bytes each,
  little-endian);
- :func:`verify_chain`: the three RSA-4096 PSS certificate signatures ARK -> ARK, ARK -> ASK, ASK -> VCEK;
- :func:`timed` and :func:`print_rows`: ours and the reference measured side by side, as a table.

Imported as a sibling module: the benchmarks run as scripts (``python benchmarks/bench_….py``),
with their own folder first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from donjon.attestation.verify import TrustRoots

__all__ = [
    "AT",
    "Row",
    "milan_chain",
    "milan_roots",
    "parse_args",
    "print_rows",
    "timed",
    "verify_chain",
    "verify_report_signature",
]

#: The verification time: inside the validity of the vectors' VCEKs and AMD's chain.
AT = datetime(2026, 11, 29, tzinfo=UTC)

#: (mode, ours, reference, what the reference does)
Row = tuple[str, Callable[[], object], Callable[[], object], str]


def parse_args(doc: str, argv: list[str]) -> argparse.Namespace:
    """``--vectors`` (default ``../shared/vectors`` beside the repository) and ``--seconds``."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    default = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors"
    parser.add_argument("--vectors", type=Path, default=default, help="the attestation vectors")
    parser.add_argument("--seconds", type=float, default=1.0, help="time spent per row, roughly")
    return parser.parse_args(argv)


def milan_roots(vectors: Path) -> TrustRoots:
    """AMD's Milan roots as the vectors record them (``roots/amd/trustee_milan_ask_ark_asvk.pem``)."""
    return TrustRoots.from_bytes((vectors / "roots/amd/trustee_milan_ask_ark_asvk.pem").read_bytes())


def milan_chain(certificates: Sequence[x509.Certificate]) -> tuple[x509.Certificate, x509.Certificate]:
    """AMD's Milan ASK and ARK among ``certificates`` (a TrustRoots' certificates)."""
    ask = next(c for c in certificates if "SEV-Milan" in c.subject.rfc4514_string())
    ark = next(c for c in certificates if "ARK-Milan" in c.subject.rfc4514_string())
    return ask, ark


def verify_report_signature(report: bytes, vcek_key: ec.EllipticCurvePublicKey) -> None:
    """The report's ECDSA P-384 signature by the VCEK, checked directly."""
    r = int.from_bytes(report[0x2A0:0x2E8], "little")
    s = int.from_bytes(report[0x2E8:0x330], "little")
    vcek_key.verify(encode_dss_signature(r, s), report[:0x2A0], ec.ECDSA(hashes.SHA384()))


def verify_chain(ark: x509.Certificate, ask: x509.Certificate, vcek: x509.Certificate) -> None:
    """The VCEK's certificate chain up to the ARK, every signature checked directly."""
    ark.verify_directly_issued_by(ark)
    ask.verify_directly_issued_by(ark)
    vcek.verify_directly_issued_by(ask)


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


def print_rows(title: str, rows: Sequence[Row], seconds: float, reproduce: str) -> None:
    """Time every row side by side and print the table: microseconds, ratio ours / reference
    (goal <= 1.5), verifications per second on one core."""
    mode = max(len(row[0]) for row in rows)
    what = max(len(row[3]) for row in rows)
    print(f"{title}, Python {sys.version.split()[0]}, one core")
    print(f"{'mode':{mode}} {'ours us':>9} {'reference':>{what}} {'ref us':>8} {'ratio':>6} {'verif/s':>8}")
    for name, ours, reference, does in rows:
        t_ours, t_ref = timed(ours, reference, seconds)
        us, ref_us, ratio, rate = t_ours * 1e6, t_ref * 1e6, t_ours / t_ref, 1 / t_ours
        print(f"{name:{mode}} {us:9.0f} {does:>{what}} {ref_us:8.0f} {ratio:6.2f} {rate:8.0f}")
    print(f"reproduce: {reproduce}")
