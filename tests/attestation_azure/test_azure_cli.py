"""``donjon evidence verify|show`` on the recorded Azure vTPM evidence: output, exit codes, detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from donjon.cli.evidence import main

ROOTS = {
    "Milan": "roots/amd/trustee_milan_ask_ark_asvk.pem",
    "Genoa": "roots/amd/trustee_genoa_ask_ark_asvk.pem",
}
#: (file, --report-data, Trustee's tpm.pcr00, product): MANIFEST.tsv
CASES = [
    ("evidence-v0.json", "6368616c6c656e6765", "e15c44796beabf46", "Milan"),
    ("evidence-v1.json", "6368616c6c656e6765", "e15c44796beabf46", "Milan"),
    (
        "evidence-v2.json",
        "982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9aa398f647caa2338748cd0fd9f5f819ef",
        "84275b2f4312cd4f",
        "Milan",
    ),
    (
        "evidence-genoa.json",
        "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f",
        "afd689d0bb1c5f36",
        "Genoa",
    ),
]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("explicit", [True, False], ids=["--kind", "detected"])
@pytest.mark.parametrize(("name", "report_data", "pcr0", "product"), CASES)
def test_verify_recorded_azure_snp_evidence(
    vectors: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    report_data: str,
    pcr0: str,
    product: str,
    explicit: bool,
) -> None:
    argv = ["verify", str(vectors / "snp/trustee_azure" / name), "--roots", str(vectors / ROOTS[product])]
    argv += ["--report-data", report_data, "--at", "2026-11-29T00:00:00Z", "--format", "json"]
    code, out, err = run(capsys, *argv, *(["--kind", "azure-snp-vtpm"] if explicit else []))
    assert code == 0, out + err
    doc = json.loads(out)
    assert doc["verified"] is True and doc["kind"] == "azure-snp-vtpm" and doc["tee"] == "sev-snp"
    assert doc["report_data"] == report_data and doc["platform"] == product
    assert doc["raw"]["vtpm"]["pcrs"]["0"].startswith(pcr0) and len(doc["raw"]["vtpm"]["pcrs"]) == 24


def test_wrong_report_data_is_refused_with_the_check(
    vectors: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys,
        "verify",
        str(vectors / "snp/trustee_azure/evidence-v1.json"),
        "--kind",
        "azure-snp-vtpm",
        "--roots",
        str(vectors / ROOTS["Milan"]),
        "--report-data",
        "65676e656c6c61686",
        "--at",
        "2026-11-29T00:00:00Z",
    )
    assert code == 2  # odd-length hex: a usage error
    code, out, _ = run(
        capsys,
        "verify",
        str(vectors / "snp/trustee_azure/evidence-v1.json"),
        "--kind",
        "azure-snp-vtpm",
        "--roots",
        str(vectors / ROOTS["Milan"]),
        "--report-data",
        "65676e656c6c616863",
        "--at",
        "2026-11-29T00:00:00Z",
    )
    assert code == 1 and out.startswith("REFUSED: azure.tpm.qualifying_data")


def test_tdx_evidence_is_refused_without_intel_collateral(
    vectors: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys,
        "verify",
        str(vectors / "tdx/trustee_azure/evidence-v0.json"),
        "--report-data",
        "6368616c6c656e6765",
    )
    assert code == 1 and "tdx-quote.tcb_info.missing" in out
    # The SNP kind on TDX evidence: the document's members say it is not SEV-SNP evidence.
    code, out, _ = run(
        capsys, "verify", str(vectors / "tdx/trustee_azure/evidence-v1.json"), "--kind", "azure-snp-vtpm"
    )
    assert code == 1 and "azure.evidence" in out


@pytest.mark.parametrize(
    ("path", "tee", "hw_key"),
    [
        ("snp/trustee_azure/evidence-v2.json", 2, "version"),
        ("tdx/trustee_azure/evidence-v0.json", 4, "quote"),
    ],
)
def test_show_decodes_every_part(
    vectors: Path, capsys: pytest.CaptureFixture[str], path: str, tee: int, hw_key: str
) -> None:
    code, out, _ = run(capsys, "show", str(vectors / path), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["verified"] is False and doc["hcl_report"]["report_type"] == tee
    assert doc["runtime_claims"]["key_ids"] == ["HCLAkPub", "HCLEkPub"]
    assert len(doc["pcrs"]) == 24 and doc["tpm_quote"]["selections"][0]["pcrs"] == list(range(24))
    assert hw_key in doc["hardware"]
