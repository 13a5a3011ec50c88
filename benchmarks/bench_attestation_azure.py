"""Azure vTPM (SEV-SNP) verification cost against the bare signature checks it contains.

Run:  python benchmarks/bench_attestation_azure.py [--vectors ../shared/vectors] [--seconds 1.0]

Ours: ``verify_evidence("azure-snp-vtpm", ...)`` on Trustee's recorded evidence-v1.json
(a real Azure Milan CVM), as a Steward gets it: the JSON document (HCL report and VCEK
base64, TPM quote and 24 PCRs hex) on every call, AMD's ASK/ARK parsed once. Per call it
decodes the JSON, parses the HCL report, the runtime claims (and the AK from its JWK),
the TPMS_ATTEST, the VCEK; verifies the SNP report as the bare ``snp-report`` kind does
(certificate chain signatures remembered by DER, as in bench_attestation_snp.py), the
binding, the quote's signature, qualifying data and PCR digest; builds the claims.

Reference: the two signatures that evidence contains, verified directly with
``cryptography``: ECDSA P-384 by the VCEK over the SNP report (bytes 0h-29Fh) and
RSASSA-PKCS1-v1.5/SHA-256 by the AK over the TPM quote. "chain re-verified" adds the
three RSA-4096 PSS certificate signatures to both sides.

The ratio is ours / reference (goal: <= 1.5). Verifications per second are per core.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from donjon.attestation import amd, hcl
from donjon.attestation.azure import AzureOptions
from donjon.attestation.verify import TrustRoots, verify_evidence

AT = datetime(2026, 11, 29, tzinfo=UTC)


def timed(ours: Callable[[], object], reference: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Seconds per call of ``ours`` and ``reference``: batches interleaved, best batch of each."""
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
    evidence = (vectors / "snp/trustee_azure/evidence-v1.json").read_bytes()
    roots = TrustRoots.from_bytes((vectors / "roots/amd/trustee_milan_ask_ark_asvk.pem").read_bytes())
    options = AzureOptions(qualifying_data=b"challenge")
    doc = json.loads(evidence)
    raw_hcl = base64.urlsafe_b64decode(doc["hcl_report"] + "=" * (-len(doc["hcl_report"]) % 4))
    report = hcl.parse_hcl_report(raw_hcl).hw_report
    vcek = x509.load_der_x509_certificate(
        base64.urlsafe_b64decode(doc["vcek"] + "=" * (-len(doc["vcek"]) % 4))
    )
    ask = next(c for c in roots.certificates if "SEV-Milan" in c.subject.rfc4514_string())
    ark = next(c for c in roots.certificates if "ARK-Milan" in c.subject.rfc4514_string())
    vcek_key = vcek.public_key()
    assert isinstance(vcek_key, ec.EllipticCurvePublicKey)
    ak = hcl.parse_runtime_claims(hcl.parse_hcl_report(raw_hcl).runtime_claims).ak_public
    assert isinstance(ak, rsa.RSAPublicKey)
    message = bytes.fromhex(doc["tpm_quote"]["message"])
    signature = bytes.fromhex(doc["tpm_quote"]["signature"])

    def ours() -> object:
        return verify_evidence("azure-snp-vtpm", evidence, roots=roots, at=AT, options=options)

    def ours_cold() -> object:
        amd.clear_caches(parsed=False)
        return ours()

    def signatures() -> None:
        r = int.from_bytes(report[0x2A0:0x2E8], "little")
        s = int.from_bytes(report[0x2E8:0x330], "little")
        vcek_key.verify(encode_dss_signature(r, s), report[:0x2A0], ec.ECDSA(hashes.SHA384()))
        ak.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())

    def signatures_and_chain() -> None:
        ark.verify_directly_issued_by(ark)
        ask.verify_directly_issued_by(ark)
        vcek.verify_directly_issued_by(ask)
        signatures()

    rows = [
        ("warm (chain verified once)", ours, signatures, "ECDSA P-384 + RSA-2048"),
        ("chain signatures re-verified every call", ours_cold, signatures_and_chain, "+ 3 RSA-4096 PSS"),
    ]
    print(f"Azure vTPM (SEV-SNP) evidence verification, Python {sys.version.split()[0]}, one core")
    print(f"{'mode':42} {'ours us':>9} {'reference':>24} {'ref us':>8} {'ratio':>6} {'verif/s':>8}")
    for name, mine, reference, what in rows:
        t_ours, t_ref = timed(mine, reference, args.seconds)
        ratio = t_ours / t_ref
        print(f"{name:42} {t_ours * 1e6:9.0f} {what:>24} {t_ref * 1e6:8.0f} {ratio:6.2f} {1 / t_ours:8.0f}")
    print("reproduce: python benchmarks/bench_attestation_azure.py --vectors ../shared/vectors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
