"""Azure vTPM evidence recorded on real Azure CVMs (Trustee's test data): positives as Trustee's tests
expect them, and tampered copies refused with the named check."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from donjon.attestation import azure, hcl, tpm
from donjon.attestation.azure import AzureOptions, parse_azure_evidence
from donjon.attestation.claims import TeeType
from donjon.attestation.dcap import parse_quote as parse_td_quote
from donjon.attestation.detect import recognise_collateral
from donjon.attestation.errors import AttestationError, CollateralError, MalformedEvidence, VerificationFailed
from donjon.attestation.verify import Collateral, EvidenceKind, TrustRoots, verify_evidence

#: A time inside every recorded VCEK's validity (VERIFY_TIMES.tsv: snp-azure-*).
AT = datetime(2026, 11, 29, tzinfo=UTC)
CHALLENGE = b"challenge"
V2_REPORT_DATA = bytes.fromhex(
    "982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9aa398f647caa2338748cd0fd9f5f819ef"
)
GENOA_REPORT_DATA = bytes.fromhex(
    "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f"
)
#: (file, expected qualifying data, Trustee's expected tpm.pcr00, product line): MANIFEST.tsv.
SNP_EVIDENCE = [
    (
        "evidence-v0.json",
        CHALLENGE,
        "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced",
        "Milan",
    ),
    (
        "evidence-v1.json",
        CHALLENGE,
        "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced",
        "Milan",
    ),
    (
        "evidence-v2.json",
        V2_REPORT_DATA,
        "84275b2f4312cd4fc6cbe6b152ad3c3683e513d9f1e23c34fca160c8cca7a6a7",
        "Milan",
    ),
    (
        "evidence-genoa.json",
        GENOA_REPORT_DATA,
        "afd689d0bb1c5f36f023fbaf574135f555a28a10c1f6b938d2a25e70c7783338",
        "Genoa",
    ),
]
TDX_PCR0 = "782b20b10f55cc46e2142cc2145d548698073e5beb82752c8d7f9279f0d8a273"

Edit = Callable[[bytes, Callable[[dict[str, Any]], None]], bytes]


def snp(data: bytes, roots: TrustRoots, qualifying: bytes | None = CHALLENGE, at: datetime = AT) -> Any:
    return verify_evidence(
        EvidenceKind.AZURE_SNP_VTPM,
        data,
        roots=roots,
        at=at,
        options=AzureOptions(qualifying_data=qualifying),
    )


def refused(
    check: str, data: bytes, roots: TrustRoots, qualifying: bytes | None = CHALLENGE
) -> AttestationError:
    with pytest.raises(AttestationError) as e:
        snp(data, roots, qualifying)
    assert e.value.check == check, e.value
    return e.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def v1_from_parts(hcl_report: bytes, tpm_quote: dict[str, Any], hw_name: str, hw: bytes) -> bytes:
    return json.dumps(
        {"version": 1, "tpm_quote": tpm_quote, "hcl_report": b64(hcl_report), hw_name: b64(hw)}
    ).encode()


# --- positives ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "qualifying", "pcr0", "product"), SNP_EVIDENCE)
def test_recorded_snp_evidence_verifies_as_trustee_expects(
    snp_dir: Path, amd_roots: TrustRoots, name: str, qualifying: bytes, pcr0: str, product: str
) -> None:
    verified = snp((snp_dir / name).read_bytes(), amd_roots, qualifying)
    claims = verified.claims
    # Trustee: claims report_data = the TPM nonce, tpm.pcr00 = ...
    assert claims.report_data == qualifying
    assert claims.raw["vtpm"]["pcrs"]["0"].hex() == pcr0
    assert len(claims.raw["vtpm"]["pcrs"]) == 24
    assert claims.tee is TeeType.SNP and claims.platform == product and not claims.simulated
    assert claims.raw["vmpl"] == 0  # the paravisor's report
    # The hardware report binds the runtime claims.
    parsed = parse_azure_evidence((snp_dir / name).read_bytes(), "sev-snp")
    report = hcl.parse_hcl_report(parsed.hcl_report)
    assert claims.raw["vtpm"]["hardware_report_data"] == report.claims_digest() + bytes(32)
    assert claims.as_dict()["raw"]["vtpm"]["pcrs"]["0"] == pcr0  # JSON-friendly


def test_hcl_report_and_tpm_quote_files_verify_together(snp_dir: Path, amd_roots: TrustRoots) -> None:
    # Trustee's unit tests use hcl-report.bin, vcek.pem and tpm-quote-v1.json separately.
    vcek = recognise_collateral((snp_dir / "vcek.pem").read_bytes()).certificates[0]
    from cryptography.hazmat.primitives.serialization import Encoding

    data = v1_from_parts(
        (snp_dir / "hcl-report.bin").read_bytes(),
        json.loads((snp_dir / "tpm-quote-v1.json").read_bytes()),
        "vcek",
        vcek.public_bytes(Encoding.DER),
    )
    claims = snp(data, amd_roots).claims
    assert claims.report_data == CHALLENGE
    assert claims.measurement.hex().startswith("9ac48fcac8a2d88a")  # MANIFEST: the SNP report's


def test_the_hcl_report_parses_as_recorded(snp_dir: Path, tdx_dir: Path) -> None:
    s = hcl.parse_hcl_report((snp_dir / "hcl-report.bin").read_bytes())
    assert (s.tee, s.report_size, len(s.hw_report), len(s.runtime_claims)) == ("sev-snp", 2346, 1184, 1110)
    assert s.claims_digest().hex().startswith("b3fbad6514c83cae")  # MANIFEST: the SNP report's REPORT_DATA
    t = hcl.parse_hcl_report((tdx_dir / "hcl-report.bin").read_bytes())
    assert (t.tee, t.report_size, len(t.hw_report)) == ("tdx", 2437, 1024)
    runtime = hcl.parse_runtime_claims(t.runtime_claims)
    assert runtime.key_ids == ("HCLAkPub", "HCLEkPub") and runtime.ak_public.key_size == 2048
    assert runtime.vm_configuration["secure-boot"] is True and runtime.user_data == bytes(64)


def test_recorded_tdx_evidence_needs_intel_collateral_for_its_fmspc(tdx_dir: Path) -> None:
    # No TCB Info for FMSPC 00806f050000 is among the vectors (Trustee's own test is #[ignore]d for
    # needing live collateral): the chain stops at the hardware step, with the named reason.
    for name in ("evidence-v0.json", "evidence-v1.json"):
        with pytest.raises(CollateralError) as e:
            verify_evidence(
                EvidenceKind.AZURE_TDX_VTPM, (tdx_dir / name).read_bytes(), roots=TrustRoots(), at=AT
            )
        assert e.value.check == "tdx-quote.tcb_info.missing"


@pytest.mark.parametrize("name", ["evidence-v0.json", "evidence-v1.json"])
def test_recorded_tdx_binding_and_quote_check_as_trustee_expects(tdx_dir: Path, name: str) -> None:
    # Trustee's test_verify_hcl_var_data and test_verify_signature/nonce/pcrs, on the real TDX evidence.
    parsed = parse_azure_evidence((tdx_dir / name).read_bytes(), "tdx")
    assert parsed.td_quote is not None
    report = hcl.parse_hcl_report(parsed.hcl_report)
    azure.check_runtime_claims_binding(report, parse_td_quote(parsed.td_quote).body.report_data)
    runtime = hcl.parse_runtime_claims(report.runtime_claims)
    quote = tpm.parse_quote(parsed.quote)
    azure.check_tpm_quote(parsed, runtime, quote, CHALLENGE)
    assert parsed.pcrs[0].hex() == TDX_PCR0
    with pytest.raises(VerificationFailed) as e:
        azure.check_tpm_quote(parsed, runtime, quote, CHALLENGE[::-1])
    assert e.value.check == "azure.tpm.qualifying_data"
    # byte[0x880] += 1 -> 'TDX Quote report data mismatch'
    raw = bytearray(parsed.hcl_report)
    raw[0x880] = (raw[0x880] + 1) % 256
    with pytest.raises(VerificationFailed) as e:
        azure.check_runtime_claims_binding(
            hcl.parse_hcl_report(bytes(raw)), parse_td_quote(parsed.td_quote).body.report_data
        )
    assert e.value.check == "azure.report_data"


def test_tdx_chain_end_to_end_with_a_simulated_intel(tdx_dir: Path) -> None:
    # The real HCL report and vTPM quote; a TD quote from a simulated Intel binding the same REPORTDATA
    # (the only part of the chain the vectors cannot provide collateral for).
    simtdx = pytest.importorskip("donjon.attestation.simtdx")
    parsed = parse_azure_evidence((tdx_dir / "evidence-v1.json").read_bytes(), "tdx")
    report = hcl.parse_hcl_report(parsed.hcl_report)
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    sim = simtdx.SimulatedTdx(issued_at=issued)
    td_quote = sim.quote(report.claims_digest() + bytes(32))
    c = sim.collateral()
    collateral = Collateral()
    for blob in (c.tcb_info, c.tcb_info_issuer_chain, c.qe_identity, c.pck_crl, c.root_crl):
        collateral = collateral + recognise_collateral(blob)
    tpm_quote = json.loads((tdx_dir / "evidence-v1.json").read_bytes())["tpm_quote"]
    data = v1_from_parts(parsed.hcl_report, tpm_quote, "td_quote", td_quote)
    at = issued + timedelta(hours=1)
    roots = TrustRoots(extra_trusted=(sim.root,))
    verified = verify_evidence(
        EvidenceKind.AZURE_TDX_VTPM,
        data,
        collateral=collateral,
        roots=roots,
        at=at,
        options=AzureOptions(qualifying_data=CHALLENGE),
    )
    claims = verified.claims
    assert claims.tee is TeeType.TDX and claims.simulated and claims.report_data == CHALLENGE
    assert claims.raw["vtpm"]["pcrs"]["0"].hex() == TDX_PCR0
    # A TD quote binding anything else is refused at the binding step.
    other = v1_from_parts(parsed.hcl_report, tpm_quote, "td_quote", sim.quote(bytes(64)))
    with pytest.raises(VerificationFailed) as e:
        verify_evidence(EvidenceKind.AZURE_TDX_VTPM, other, collateral=collateral, roots=roots, at=at)
    assert e.value.check == "azure.td_report"


# --- negatives: Trustee's, and one per link of the chain ----------------------------------------------


def _hcl_edit(data: bytes, offset: int, change: Callable[[int], int]) -> bytes:
    doc = json.loads(data)
    raw = bytearray(base64.urlsafe_b64decode(doc["hcl_report"] + "=" * (-len(doc["hcl_report"]) % 4)))
    raw[offset] = change(raw[offset])
    doc["hcl_report"] = b64(bytes(raw))
    return json.dumps(doc).encode()


def test_tampered_hcl_report_is_refused(snp_dir: Path, amd_roots: TrustRoots) -> None:
    v1 = (snp_dir / "evidence-v1.json").read_bytes()
    # Trustee: byte[0x1a6]=0 (the SNP report's REPORTED_TCB) -> the VCEK no longer signs it.
    refused("snp.signature", _hcl_edit(v1, 0x1A6, lambda b: 0), amd_roots)
    # Trustee: byte[0x6e0]+=1 (inside the runtime claims) -> the hardware report no longer binds them.
    refused("azure.report_data", _hcl_edit(v1, 0x6E0, lambda b: (b + 1) % 256), amd_roots)
    # Trustee: byte[0x540]=0 (inside the AK's modulus) -> the claims are no longer JSON.
    refused("hcl.claims", _hcl_edit(v1, 0x540, lambda b: 0), amd_roots)
    # A flipped bit in the hardware report's MEASUREMENT (0x20 + 0x90).
    refused("snp.signature", _hcl_edit(v1, 0x20 + 0x90, lambda b: b ^ 1), amd_roots)
    # A flipped bit in the runtime claims' VM configuration.
    refused("azure.report_data", _hcl_edit(v1, 0x4D4 + 900, lambda b: b ^ 1), amd_roots)


def test_tampered_tpm_quote_is_refused(snp_dir: Path, amd_roots: TrustRoots, edit_json: Edit) -> None:
    v1 = (snp_dir / "evidence-v1.json").read_bytes()

    def flip(member: str, index: int = 0) -> Callable[[dict[str, Any]], None]:
        def change(doc: dict[str, Any]) -> None:
            raw = bytearray.fromhex(doc["tpm_quote"][member])
            raw[index] ^= 1
            doc["tpm_quote"][member] = raw.hex()

        return change

    def flip_pcr(doc: dict[str, Any]) -> None:
        raw = bytearray.fromhex(doc["tpm_quote"]["pcrs"][0])
        raw[0] ^= 1
        doc["tpm_quote"]["pcrs"][0] = raw.hex()

    # Trustee: signature[0]^=1; pcrs[0][0]^=1; the nonce reversed.
    refused("azure.tpm.signature", edit_json(v1, flip("signature")), amd_roots)
    refused("azure.tpm.pcr_digest", edit_json(v1, flip_pcr), amd_roots)
    refused("azure.tpm.qualifying_data", v1, amd_roots, CHALLENGE[::-1])
    # A flipped bit in the quote's clock (signed, not structural).
    refused("azure.tpm.signature", edit_json(v1, flip("message", 0x30)), amd_roots)
    # A PCR value left out.
    refused("azure.tpm.pcrs", edit_json(v1, lambda d: d["tpm_quote"]["pcrs"].pop()), amd_roots)


def test_v2_binds_user_data(snp_dir: Path) -> None:
    # Trustee's test_verify_user_data: the runtime claims' user-data must start with the binding.
    parsed = parse_azure_evidence((snp_dir / "evidence-v2.json").read_bytes(), "sev-snp")
    report = hcl.parse_hcl_report(parsed.hcl_report)
    quote = tpm.parse_quote(parsed.quote)
    runtime = hcl.parse_runtime_claims(report.runtime_claims)
    azure.check_tpm_quote(parsed, runtime, quote, V2_REPORT_DATA)
    other = report.runtime_claims.replace(b'"user-data":"982F', b'"user-data":"123A')
    with pytest.raises(VerificationFailed) as e:
        azure.check_tpm_quote(parsed, hcl.parse_runtime_claims(other), quote, V2_REPORT_DATA)
    assert e.value.check == "azure.user_data"


def test_wrong_kind_wrong_time_and_malformed_documents(
    snp_dir: Path, tdx_dir: Path, amd_roots: TrustRoots, edit_json: Edit
) -> None:
    v1 = (snp_dir / "evidence-v1.json").read_bytes()
    # The VCEK's validity: Milan VCEKs of these vectors start in 2025.
    with pytest.raises(VerificationFailed) as ev:
        snp(v1, amd_roots, at=datetime(2020, 1, 1, tzinfo=UTC))
    assert ev.value.check == "snp.chain.not_yet_valid"
    # A TDX document is not SEV-SNP evidence.
    with pytest.raises(MalformedEvidence) as em:
        snp((tdx_dir / "evidence-v1.json").read_bytes(), amd_roots)
    assert em.value.check == "azure.evidence"
    for bad in (
        b"not json",
        b"[]",
        edit_json(v1, lambda d: d.update(version=3)),
        edit_json(v1, lambda d: d.update(extra=1)),
        edit_json(v1, lambda d: d["tpm_quote"].update(message="zz")),
        b'{"version": 1, "version": 1}',
    ):
        with pytest.raises(MalformedEvidence) as em:
            snp(bad, amd_roots)
        assert em.value.check == "azure.evidence"
