"""The dispatcher hands every kind to its verifier, with collateral recognised by content."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from donjon.attestation.claims import TeeType
from donjon.attestation.detect import detect_evidence_kind, recognise_collateral
from donjon.attestation.errors import AttestationError, CollateralError
from donjon.attestation.simsnp import SimulatedAmd
from donjon.attestation.verify import Collateral, EvidenceKind, TrustRoots, verify_evidence


def bundle(*blobs: bytes) -> Collateral:
    out = Collateral()
    for blob in blobs:
        out = out + recognise_collateral(blob)
    return out


def files(vectors: Path, prefix: str) -> Collateral:
    return bundle(*[p.read_bytes() for p in sorted(vectors.glob(prefix + ".coll.*"))])


@pytest.mark.parametrize(
    ("quote", "at", "tee"),
    [
        ("tdx/dcapqvl/tdx_quote", "2025-07-19T10:00:34+00:00", TeeType.TDX),
        ("sgx/dcapqvl/sgx_quote", "2025-07-19T10:01:17+00:00", TeeType.SGX),
    ],
)
def test_real_intel_quotes_through_the_dispatcher(
    vectors: Path, sim_milan: SimulatedAmd, quote: str, at: str, tee: TeeType
) -> None:
    # VERIFY_TIMES: tdx-dcapqvl PASS UpToDate; sgx-dcapqvl PASS ConfigurationAndSWHardeningNeeded.
    evidence = (vectors / quote).read_bytes()
    kind = detect_evidence_kind(evidence)
    collateral = files(vectors, quote)
    when = datetime.fromisoformat(at)
    claims = verify_evidence(kind, evidence, collateral=collateral, roots=TrustRoots(), at=when).claims
    assert claims.tee is tee and claims.simulated is False
    # Trusting a simulated root as well must not demote Intel's pinned root.
    both = verify_evidence(
        kind, evidence, collateral=collateral, roots=sim_milan.trust_roots(), at=when
    ).claims
    assert both.simulated is False and both.tcb_status is claims.tcb_status


def test_intel_needs_tcb_info(vectors: Path) -> None:
    evidence = (vectors / "tdx/dcapqvl/tdx_quote").read_bytes()
    with pytest.raises(CollateralError) as e:
        verify_evidence("tdx-quote", evidence, roots=TrustRoots(), at=datetime(2025, 7, 19, tzinfo=UTC))
    assert e.value.check == "tdx-quote.tcb_info.missing"


def test_simulated_tdx_through_the_dispatcher() -> None:
    simtdx = pytest.importorskip("donjon.attestation.simtdx")
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    sim = simtdx.SimulatedTdx(issued_at=issued)
    quote = sim.quote(b"\x05" * 64)
    c = sim.collateral()
    collateral = bundle(c.tcb_info, c.tcb_info_issuer_chain, c.qe_identity, c.pck_crl, c.root_crl)
    at = issued + timedelta(hours=1)
    with pytest.raises(AttestationError):
        verify_evidence("tdx-quote", quote, collateral=collateral, roots=TrustRoots(), at=at)
    claims = verify_evidence(
        "tdx-quote", quote, collateral=collateral, roots=TrustRoots(extra_trusted=(sim.root,)), at=at
    ).claims
    assert claims.simulated is True and claims.report_data == b"\x05" * 64


def test_cca_through_the_dispatcher(vectors: Path) -> None:
    cca = pytest.importorskip("donjon.attestation.cca")
    token = (vectors / "cca/ccatoken/cca_token.cbor").read_bytes()
    key = cca.load_platform_key((vectors / "cca/ccatoken/cca_platform.pub").read_bytes())
    assert detect_evidence_kind(token) is EvidenceKind.CCA_TOKEN
    claims = verify_evidence(
        "cca-token",
        token,
        roots=TrustRoots(),
        at=datetime(2026, 1, 1, tzinfo=UTC),
        options={"platform_keys": [key]},
    ).claims
    assert claims.tee is TeeType.CCA


@pytest.mark.parametrize("reverse", [False, True])
def test_intel_pck_crl_is_chosen_by_the_quotes_pck_issuer(vectors: Path, reverse: bool) -> None:
    # enarx/steward's xeon quote comes with BOTH PCK CRLs (Platform and Processor CA);
    # only the one from the CA that issued the quote's PCK certificate may be applied,
    # whatever order the collateral arrives in.
    steward = vectors / "sgx" / "steward"
    names = ["xeon.pck_platform.crl.der", "xeon.pck_processor.crl.der"]
    if reverse:
        names.reverse()
    collateral = bundle(
        *[(steward / n).read_bytes() for n in names],
        (steward / "xeon.rootca.crl.der").read_bytes(),
        (steward / "xeon.tcbinfo.json").read_bytes(),
        (steward / "xeon.tcbinfo_issuer_chain.pem").read_bytes(),
    )
    evidence = (steward / "xeon.quote.dat").read_bytes()
    advisories = [f"INTEL-SA-00{n}" for n in (289, 381, 389, 477, 586, 614, 615, 617, 657)]
    claims = verify_evidence(
        EvidenceKind.SGX_QUOTE,
        evidence,
        collateral=collateral,
        roots=TrustRoots(),
        at=datetime(2023, 2, 1, tzinfo=UTC),
        options={"allow_missing_qe_identity": True, "allowed_advisories": advisories},
    ).claims
    assert claims.tee is TeeType.SGX
