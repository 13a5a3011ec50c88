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

import base64
import json
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

import attestation_harness as harness
from donjon.attestation import amd, hcl
from donjon.attestation.azure import AzureOptions
from donjon.attestation.verify import verify_evidence


def main(argv: list[str]) -> int:
    args = harness.parse_args(__doc__ or "", argv)
    vectors = args.vectors
    evidence = (vectors / "snp/trustee_azure/evidence-v1.json").read_bytes()
    roots = harness.milan_roots(vectors)
    options = AzureOptions(qualifying_data=b"challenge")
    doc = json.loads(evidence)
    raw_hcl = base64.urlsafe_b64decode(doc["hcl_report"] + "=" * (-len(doc["hcl_report"]) % 4))
    report = hcl.parse_hcl_report(raw_hcl).hw_report
    vcek = x509.load_der_x509_certificate(
        base64.urlsafe_b64decode(doc["vcek"] + "=" * (-len(doc["vcek"]) % 4))
    )
    ask, ark = harness.milan_chain(roots.certificates)
    vcek_key = vcek.public_key()
    assert isinstance(vcek_key, ec.EllipticCurvePublicKey)
    ak = hcl.parse_runtime_claims(hcl.parse_hcl_report(raw_hcl).runtime_claims).ak_public
    assert isinstance(ak, rsa.RSAPublicKey)
    message = bytes.fromhex(doc["tpm_quote"]["message"])
    signature = bytes.fromhex(doc["tpm_quote"]["signature"])

    def ours() -> object:
        return verify_evidence("azure-snp-vtpm", evidence, roots=roots, at=harness.AT, options=options)

    def ours_cold() -> object:
        amd.clear_caches(parsed=False)
        return ours()

    def signatures() -> None:
        harness.verify_report_signature(report, vcek_key)
        ak.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())

    def signatures_and_chain() -> None:
        harness.verify_chain(ark, ask, vcek)
        signatures()

    rows: list[harness.Row] = [
        ("warm (chain verified once)", ours, signatures, "ECDSA P-384 + RSA-2048"),
        ("chain signatures re-verified every call", ours_cold, signatures_and_chain, "+ 3 RSA-4096 PSS"),
    ]
    harness.print_rows(
        "Azure vTPM (SEV-SNP) evidence verification",
        rows,
        args.seconds,
        "python benchmarks/bench_attestation_azure.py --vectors ../shared/vectors",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
