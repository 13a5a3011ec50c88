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

import sys

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

import attestation_harness as harness
from donjon.attestation import amd
from donjon.attestation.verify import verify_evidence


def main(argv: list[str]) -> int:
    args = harness.parse_args(__doc__ or "", argv)
    vectors = args.vectors
    report = (vectors / "snp/trustee/test-report.bin").read_bytes()
    vcek_der = (vectors / "snp/trustee/test-vcek.der").read_bytes()
    roots = harness.milan_roots(vectors)
    vcek = x509.load_der_x509_certificate(vcek_der)
    ask, ark = harness.milan_chain(roots.certificates)
    public_key = vcek.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)

    def ours_parsed() -> object:
        return verify_evidence("snp-report", report, certs=[vcek], roots=roots, at=harness.AT)

    def ours_der() -> object:
        return verify_evidence("snp-report", report, certs=[vcek_der], roots=roots, at=harness.AT)

    def ours_cold() -> object:
        amd.clear_caches(parsed=False)
        return verify_evidence("snp-report", report, certs=[vcek], roots=roots, at=harness.AT)

    def ecdsa_only() -> None:
        harness.verify_report_signature(report, public_key)

    def ecdsa_and_chain() -> None:
        harness.verify_chain(ark, ask, vcek)
        ecdsa_only()

    rows: list[harness.Row] = [
        ("warm (chain verified once, certs parsed)", ours_parsed, ecdsa_only, "1 ECDSA P-384"),
        ("warm, VCEK as DER on every call", ours_der, ecdsa_only, "1 ECDSA P-384"),
        (
            "chain signatures re-verified every call",
            ours_cold,
            ecdsa_and_chain,
            "1 ECDSA P-384 + 3 RSA-4096 PSS",
        ),
    ]
    harness.print_rows(
        "SEV-SNP report verification",
        rows,
        args.seconds,
        "python benchmarks/bench_attestation_snp.py --vectors ../shared/vectors",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
