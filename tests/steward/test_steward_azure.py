"""Azure vTPM evidence at the Steward: native CSRs through the same checks and log, the vTPM policy case,
and ``policy test`` on recorded Azure evidence."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon import binding, csr, oids
from donjon.attestation.simazure import DEFAULT_PCRS, SimulatedVtpm
from donjon.cli import main as cli_main
from donjon.steward.errors import Refused

PCR0 = DEFAULT_PCRS[0].hex()
#: tests/steward/conftest.py's workload
WORKLOAD = hashlib.sha256(b"donjon test workload").digest()


def spki(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def vtpm() -> SimulatedVtpm:
    return SimulatedVtpm()


def azure_snp(
    env: Any, vtpm: SimulatedVtpm, qualifying: bytes, *, measurement: bytes = b"\x42" * 48
) -> bytes:
    claims = vtpm.runtime_claims()
    ev = env.vendor.evidence(vtpm.report_data(claims), measurement=measurement)
    return vtpm.evidence(ev.report, claims, qualifying, vcek_der=ev.certs[0])


def vtpm_policy(kit: SimpleNamespace, *, pcr0: str = PCR0, measurement: str = "42" * 48) -> str:
    text: str = kit.policy_text(
        extra=f"""
[platform.sev-snp.vtpm]
allowed_measurements = ["{measurement}"]
pcrs = {{ 0 = ["{pcr0}"], 7 = ["{DEFAULT_PCRS[7].hex()}"] }}
"""
    )
    # TOML: the [platform.sev-snp.vtpm] table must follow [platform.sev-snp]; move it there.
    head, _, tail = text.partition("[[workload]]")
    extra_start = tail.index("[platform.sev-snp.vtpm]")
    return head + tail[extra_start:] + "\n[[workload]]" + tail[:extra_start]


def native_csr(env: Any, vtpm: SimulatedVtpm, nonce: bytes, *, qualifying: bytes | None = None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    bound = binding.vtpm_qualifying_data(binding.keep_binding(spki(key), WORKLOAD, nonce))
    evidence = azure_snp(env, vtpm, bound if qualifying is None else qualifying)
    return csr.build_csr(
        key,
        statements=[(oids.EVIDENCE_AZURE_SNP_VTPM, evidence)],
        workload_digest=WORKLOAD,
        nonce=nonce,
    )


def test_a_native_csr_with_azure_evidence_is_issued_and_logged(
    env: Any, kit: SimpleNamespace, vtpm: SimulatedVtpm
) -> None:
    env.policy.write_text(vtpm_policy(kit))
    steward = env.steward()
    try:
        nonce = steward.challenge()[0]
        outcome = steward.attest(native_csr(env, vtpm, nonce))
        record = outcome.entry.record
        assert record["evidence_kind"] == "azure-snp-vtpm"
        assert record["claims"]["raw"]["vtpm"]["pcrs"]["0"] == PCR0
        assert record["claims"]["tee"] == "sev-snp" and outcome.decision.simulated
        assert record["collateral"] == "steward"  # the snp-report collateral (AMD's CRL) applied
        # The qualifying data must be SHA-256 of this CSR's binding: another value is refused.
        with pytest.raises(Refused) as e:
            steward.attest(native_csr(env, vtpm, steward.challenge()[0], qualifying=b"challenge"))
        assert e.value.check == "binding"
    finally:
        steward.close()


@pytest.mark.parametrize(
    ("policy", "check"),
    [
        ({"pcr0": "00" * 32}, "policy.pcr"),
        ({"measurement": "43" * 48}, "policy.measurement"),
        (None, "policy.vtpm"),
    ],
    ids=["pcr0-not-allowed", "paravisor-measurement-not-allowed", "no-vtpm-table"],
)
def test_the_vtpm_policy_case_refuses_by_name(
    env: Any, kit: SimpleNamespace, vtpm: SimulatedVtpm, policy: dict[str, str] | None, check: str
) -> None:
    env.policy.write_text(kit.policy_text() if policy is None else vtpm_policy(kit, **policy))
    steward = env.steward()
    try:
        with pytest.raises(Refused) as e:
            steward.attest(native_csr(env, vtpm, steward.challenge()[0]))
        assert e.value.check == check
    finally:
        steward.close()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            '[platform.sev-snp.vtpm]\nallowed_measurements = ["*"]\npcrs = { 24 = ["' + "00" * 32 + '"] }',
            "PCR index",
        ),
        ('[platform.sev-snp.vtpm]\nallowed_measurements = ["*"]\npcrs = { 0 = ["00"] }', "SHA-256"),
        ("[platform.sev-snp.vtpm]\npcrs = {}", "allowed_measurements is required"),
        ('[platform.sev-snp.vtpm]\nallowed_measurements = ["*"]\nnonsense = 1', "unknown key"),
    ],
)
def test_bad_vtpm_tables_are_refused(tmp_path: Path, table: str, message: str, capsys: Any) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(f'version = 1\n[platform.sev-snp]\nallowed_measurements = ["*"]\n{table}\n')
    assert cli_main(["policy", "check", "--policy", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_policy_test_on_azure_evidence(
    env: Any, kit: SimpleNamespace, vtpm: SimulatedVtpm, tmp_path: Path, capsys: Any
) -> None:
    env.policy.write_text(vtpm_policy(kit))
    evidence = tmp_path / "azure.json"
    evidence.write_bytes(azure_snp(env, vtpm, b"challenge"))
    args = [
        "policy",
        "test",
        "--policy",
        str(env.policy),
        "--kind",
        "azure-snp-vtpm",
        "--evidence",
        str(evidence),
    ]
    args += ["--simulated-root", str(env.dir / "sim-ark.pem"), "--collateral", str(env.dir / "collateral")]
    args += ["--workload-digest", WORKLOAD.hex(), "--format", "json"]
    assert cli_main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert (
        out["decision"] == "would issue"
        and out["claims"]["raw"]["vtpm"]["pcrs"]["7"] == DEFAULT_PCRS[7].hex()
    )
    # A policy pinning another PCR 0 refuses it, and names the check.
    env.policy.write_text(vtpm_policy(kit, pcr0="11" * 32))
    assert cli_main(args) == 1
    assert json.loads(capsys.readouterr().out)["check"] == "policy.pcr"


@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")  # AMD's VCEKs: serial 0
def test_policy_test_on_the_recorded_azure_evidence(env: Any, vectors: Path, capsys: Any) -> None:
    # The real evidence verifies (tests/attestation_azure), but a Steward verifies SEV-SNP only with
    # AMD's ARK-signed CRL, and none is among the vectors: refused for that, by name, not by the chain.
    recorded = vectors / "snp" / "trustee_azure" / "evidence-v1.json"
    args = [
        "policy",
        "test",
        "--policy",
        str(env.policy),
        "--kind",
        "azure-snp-vtpm",
        "--evidence",
        str(recorded),
    ]
    args += ["--at", "2026-11-29T00:00:00Z", "--format", "json"]
    assert cli_main(args) == 1
    assert json.loads(capsys.readouterr().out)["check"] == "collateral.missing"


@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")  # AMD's VCEKs: serial 0
def test_dice_entries_carry_the_vtpm_pcr_digest(vectors: Path) -> None:
    # The recorded evidence's claims: the vTPM entry's FWID is the TPM quote's own PCR digest.
    from datetime import UTC, datetime

    from donjon.attestation import tpm
    from donjon.attestation.azure import AzureOptions, parse_azure_evidence
    from donjon.attestation.verify import TrustRoots, verify_evidence
    from donjon.dice import VTPM_MODEL, claims_values
    from donjon.steward.dice_claims import dice_entries

    data = (vectors / "snp" / "trustee_azure" / "evidence-v1.json").read_bytes()
    roots = TrustRoots.from_bytes((vectors / "roots/amd/trustee_milan_ask_ark_asvk.pem").read_bytes())
    claims = verify_evidence(
        "azure-snp-vtpm",
        data,
        roots=roots,
        at=datetime(2026, 11, 29, tzinfo=UTC),
        options=AzureOptions(qualifying_data=b"challenge"),
    ).claims
    entries = dice_entries(claims, WORKLOAD, simulated=False)
    (vtpm,) = [e for e in entries if e.model == VTPM_MODEL]
    quote = tpm.parse_quote(parse_azure_evidence(data, "sev-snp").quote)
    assert vtpm.fwids[0].digest == quote.pcr_digest and not vtpm.not_secure
    assert claims_values(entries)["vtpm"] is True
