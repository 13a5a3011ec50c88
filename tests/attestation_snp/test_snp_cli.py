"""``donjon evidence`` through its ``main(argv)``: output, exit codes, content recognition."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from donjon.attestation.simsnp import SimulatedAmd
from donjon.cli.evidence import main

MILAN_ROOTS = "roots/amd/trustee_milan_ask_ark_asvk.pem"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_real_report_json(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "verify",
        str(vectors / "snp/trustee/test-report.bin"),
        "--collateral",
        str(vectors / "snp/trustee/test-vcek.der"),
        "--roots",
        str(vectors / MILAN_ROOTS),
        "--at",
        "2026-11-29T00:00:00Z",
        "--format",
        "json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["verified"] is True and doc["tee"] == "sev-snp" and doc["platform"] == "Milan"
    # MANIFEST: measurement of trustee test-report.bin
    assert doc["measurement"].startswith("a1f3930413247bb38cfc171579ea3c12")
    assert doc["simulated"] is False and doc["verified_at"] == "2026-11-29T00:00:00+00:00"


def test_verify_hex_file_and_chain_as_collateral(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "verify",
        str(vectors / "snp/virtee_sev/report_milan.hex"),
        "--collateral",
        str(vectors / "snp/virtee_sev/vcek_milan.der"),
        "--collateral",
        str(vectors / "snp/virtee_sev/cert_chain_milan.pem"),
        "--at",
        "2026-11-29T00:00:00Z",
    )
    assert code == 0
    assert "platform: Milan" in out and "verified: true" in out


def test_refusal_names_the_check(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "verify",
        str(vectors / "snp/trustee/test-vlek-report.bin"),
        "--collateral",
        str(vectors / "snp/trustee/test-vlek.der"),
        "--collateral",
        str(vectors / MILAN_ROOTS),
        "--max-vmpl",
        "1",
    ]
    code, out, _ = run(capsys, *args, "--at", "2025-06-01T00:00:00Z")
    assert code == 0
    code, out, _ = run(capsys, *args, "--format", "json")  # now: the VLEK has expired
    assert code == 1
    assert json.loads(out)["check"] == "snp.chain.expired"
    code, out, _ = run(capsys, *args[:2], *args[2:6], "--at", "2025-06-01T00:00:00Z")  # VMPL 1 > 0
    assert code == 1 and "snp.vmpl" in out


def test_report_data_and_min_tcb_options(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = [
        "verify",
        str(vectors / "snp/trustee/test-report.bin"),
        "--collateral",
        str(vectors / "snp/trustee/test-vcek.der"),
        "--roots",
        str(vectors / MILAN_ROOTS),
        "--at",
        "2026-11-29T00:00:00Z",
    ]
    assert run(capsys, *base, "--report-data", "00" * 64)[0] == 1
    assert run(capsys, *base, "--min-tcb", "3,0,8,115")[0] == 0
    code, out, _ = run(capsys, *base, "--min-tcb", "3,0,9,115")
    assert code == 1 and "snp.tcb.minimum" in out
    assert run(capsys, *base, "--product", "Genoa")[0] == 1


def test_simulated_evidence_needs_explicit_trust(
    sim_milan: SimulatedAmd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ev = sim_milan.evidence(b"\x07" * 64)
    report = tmp_path / "report.bin"
    report.write_bytes(ev.report)
    vcek = tmp_path / "vcek.der"
    vcek.write_bytes(ev.certs[0])
    chain = tmp_path / "chain.pem"
    chain.write_bytes(sim_milan.cert_chain_pem())
    ark = tmp_path / "ark.pem"
    ark.write_bytes(sim_milan.ark_pem())
    args = ["verify", str(report), "--collateral", str(vcek), "--collateral", str(chain)]
    code, out, _ = run(capsys, *args)
    assert code == 1 and "snp.chain.root" in out
    code, out, err = run(capsys, *args, "--trust-simulated", str(ark), "--format", "json")
    assert code == 0 and json.loads(out)["simulated"] is True
    code, out, err = run(capsys, *args, "--trust-simulated", str(ark))
    assert code == 0 and "simulated" in err


def test_show_decodes_without_verifying(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", str(vectors / "snp/trustee/test-vlek-report.bin"), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["verified"] is False and doc["version"] == 3 and doc["signing_key"] == "vlek"
    assert doc["product_from_cpuid"] == "Milan" and doc["chip_id_masked"] is True
    # MANIFEST: reported_tcb=0xd918000000000004 (bl=4 snp=0x18 ucode=0xd9)
    assert doc["reported_tcb_decoded"] == {"bootloader": 4, "tee": 0, "snp": 0x18, "microcode": 0xD9}
    code, out, _ = run(capsys, "show", str(vectors / "snp/gosevguest/attestation.bin"))
    assert code == 0 and "version: 2" in out


def test_show_other_kinds(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", str(vectors / "sgx/dcapqvl/sgx_quote"), "--format", "json")
    assert code == 0 and json.loads(out)["kind"] == "sgx-quote"


def test_exit_codes(vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "verify", str(tmp_path / "missing.bin"))[0] == 3
    assert run(capsys, "show", str(tmp_path / "missing.bin"))[0] == 3
    assert run(capsys, "verify")[0] == 2
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys, "verify", str(vectors / "snp/trustee/test-report.bin"), "--at", "yesterday")[0] == 2
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x01\x02not collateral")
    code, _, err = run(
        capsys, "verify", str(vectors / "snp/trustee/test-report.bin"), "--collateral", str(junk)
    )
    assert code == 2 and "collateral.unrecognised" in err
    code, out, _ = run(capsys, "verify", str(junk))
    assert code == 1 and "evidence.kind" in out
    code, out, _ = run(capsys, "show", str(junk))
    assert code == 1
    assert run(capsys, "--help")[0] == 0
    # A VMPL bound outside 0..3 is a usage error, not a refusal of the evidence.
    code, out, err = run(capsys, "verify", str(vectors / "snp/trustee/test-report.bin"), "--max-vmpl", "-1")
    assert code == 2 and out == "" and "--max-vmpl must be 0..3" in err


def test_verify_intel_and_cca_through_the_cli(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    collateral = [
        a for p in sorted(vectors.glob("sgx/dcapqvl/sgx_quote.coll.*")) for a in ("--collateral", str(p))
    ]
    code, out, _ = run(
        capsys,
        "verify",
        str(vectors / "sgx/dcapqvl/sgx_quote"),
        *collateral,
        "--at",
        "2025-07-19T10:01:17Z",
        "--format",
        "json",
    )
    # VERIFY_TIMES sgx-dcapqvl: PASS ConfigurationAndSWHardeningNeeded [INTEL-SA-00289, INTEL-SA-00615]
    assert code == 0
    doc = json.loads(out)
    assert doc["tee"] == "sgx" and doc["tcb_status"] == "ConfigurationAndSWHardeningNeeded"
    assert doc["advisory_ids"] == ["INTEL-SA-00289", "INTEL-SA-00615"]
    token = str(vectors / "cca/ccatoken/cca_token.cbor")
    assert run(capsys, "verify", token)[0] == 2  # no pinned platform key
    code, out, _ = run(
        capsys,
        "verify",
        token,
        "--cca-platform-key",
        str(vectors / "cca/ccatoken/cca_platform.pub"),
        "--format",
        "json",
    )
    assert code == 0 and json.loads(out)["tee"] == "cca"
