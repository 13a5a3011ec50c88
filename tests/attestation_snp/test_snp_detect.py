"""Evidence kinds and collateral recognised by content; the dispatcher's own rules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from donjon.attestation.claims import VerifiedEvidence
from donjon.attestation.detect import decode_evidence, detect_evidence_kind, recognise_collateral
from donjon.attestation.errors import CollateralError, MalformedEvidence
from donjon.attestation.simsnp import SimulatedAmd
from donjon.attestation.snp import SnpOptions
from donjon.attestation.verify import (
    MAX_EVIDENCE_BYTES,
    Collateral,
    EvidenceKind,
    TrustRoots,
    verify_evidence,
)

AT = datetime(2026, 11, 29, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("snp/trustee/test-report.bin", EvidenceKind.SNP_REPORT),
        ("snp/gosevguest/attestation.bin", EvidenceKind.SNP_REPORT),
        ("tdx/dcapqvl/tdx_quote", EvidenceKind.TDX_QUOTE),
        ("tdx/gotdxguest/quote_v5_sample.dat", EvidenceKind.TDX_QUOTE),
        ("sgx/dcapqvl/sgx_quote", EvidenceKind.SGX_QUOTE),
        ("sgx/steward/xeon.quote.dat", EvidenceKind.SGX_QUOTE),
        ("cca/ccatoken/cca_token.cbor", EvidenceKind.CCA_TOKEN),
    ],
)
def test_evidence_kind(vectors: Path, name: str, kind: EvidenceKind) -> None:
    assert detect_evidence_kind((vectors / name).read_bytes()) is kind


def test_hex_evidence_is_decoded(vectors: Path) -> None:
    text = (vectors / "snp/virtee_sev/report_milan.hex").read_bytes()
    assert detect_evidence_kind(decode_evidence(text)) is EvidenceKind.SNP_REPORT
    assert decode_evidence(b"\x00\x01") == b"\x00\x01"
    assert decode_evidence(b" 0a0b\n0c ") == b"\x0a\x0b\x0c"


def test_garbage_is_not_evidence() -> None:
    with pytest.raises(MalformedEvidence) as e:
        detect_evidence_kind(b"hello")
    assert e.value.check == "evidence.kind"


def test_collateral_by_content(vectors: Path) -> None:
    pem = recognise_collateral((vectors / "roots/amd/trustee_milan_ask_ark_asvk.pem").read_bytes())
    assert len(pem.certificates) == 3 and not pem.crls
    der = recognise_collateral((vectors / "snp/trustee/test-vcek.der").read_bytes())
    assert len(der.certificates) == 1
    pkipath = recognise_collateral((vectors / "roots/amd/steward_milan.pkipath").read_bytes())
    assert [c.subject.rfc4514_string().split(",")[0] for c in pkipath.certificates] == [
        "CN=ARK-Milan",
        "CN=SEV-Milan",
    ]
    crl = recognise_collateral((vectors / "sgx/dcapqvl/sgx_quote.coll.pck_crl.der").read_bytes())
    assert len(crl.crls) == 1 and not crl.certificates
    tcb = recognise_collateral((vectors / "sgx/dcapqvl/sgx_quote.coll.tcbinfo.json").read_bytes())
    assert len(tcb.tcb_info) == 1
    qe = recognise_collateral((vectors / "sgx/dcapqvl/sgx_quote.coll.qe_identity.json").read_bytes())
    assert len(qe.qe_identity) == 1
    both = pem + der + crl + tcb + qe
    assert (len(both.certificates), len(both.crls), len(both.tcb_info), len(both.qe_identity)) == (4, 1, 1, 1)


def test_simulated_crl_pem_is_recognised(sim_milan: SimulatedAmd) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = x509.load_der_x509_crl(sim_milan.crl([5])).public_bytes(Encoding.PEM)
    assert len(recognise_collateral(pem + sim_milan.ark_pem()).crls) == 1


def test_certificate_with_an_invalid_version_is_a_collateral_error(vectors: Path) -> None:
    der = bytearray((vectors / "snp/trustee/test-vcek.der").read_bytes())
    at = der.find(bytes.fromhex("a003020102"))  # [0] EXPLICIT version INTEGER 2 (v3)
    der[at + 4] = 5
    with pytest.raises(CollateralError):
        recognise_collateral(bytes(der))


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":' + b"[" * 100_000,
        b"",
        b"{}",
        b"[1]",
        b"{not json",
        b"\x30\x03\x02\x01\x00",
        b"-----BEGIN FOO-----\nx\n-----END FOO-----",
    ],
)
def test_unrecognised_collateral(data: bytes) -> None:
    with pytest.raises(CollateralError):
        recognise_collateral(data)


def test_dispatcher_rules(sim_milan: SimulatedAmd) -> None:
    ev = sim_milan.evidence(bytes(64))
    roots = sim_milan.trust_roots()
    verified = verify_evidence(EvidenceKind.SNP_REPORT, ev.report, certs=ev.certs, roots=roots, at=AT)
    assert isinstance(verified, VerifiedEvidence)
    with pytest.raises(TypeError):
        VerifiedEvidence(verified.claims, b"", AT)  # only verifiers make verified evidence
    with pytest.raises(AttributeError):
        verified._claims = verified.claims  # type: ignore[misc]
    with pytest.raises(MalformedEvidence) as e:
        verify_evidence("sev-report", ev.report, roots=roots, at=AT)
    assert e.value.check == "evidence.kind"
    with pytest.raises(ValueError, match="timezone"):
        verify_evidence("snp-report", ev.report, certs=ev.certs, roots=roots, at=datetime(2026, 1, 1))
    with pytest.raises(MalformedEvidence) as e:
        verify_evidence("snp-report", bytes(MAX_EVIDENCE_BYTES + 1), roots=roots, at=AT)
    assert e.value.check == "evidence.size"
    with pytest.raises(TypeError):
        verify_evidence(
            "snp-report", ev.report, certs=ev.certs, roots=roots, at=AT, options={"allow_debug": True}
        )
    # Certificates may come parsed, as DER or as PEM; collateral certificates work the same.
    from cryptography import x509

    parsed = [x509.load_der_x509_certificate(c) for c in ev.certs]
    verify_evidence("snp-report", ev.report, certs=parsed, roots=roots, at=AT, options=SnpOptions())
    verify_evidence(
        "snp-report", ev.report, roots=roots, at=AT, collateral=Collateral(certificates=tuple(parsed))
    )
    assert TrustRoots.from_bytes(sim_milan.ark_pem()).certificates[0] == sim_milan.ark


def test_simulator_round_trip(sim_milan: SimulatedAmd) -> None:
    again = SimulatedAmd.load(sim_milan.dump())
    ev = again.evidence(bytes(64))
    # A reloaded vendor issues new VCEKs under the same, still trusted, chain.
    verify_evidence("snp-report", ev.report, certs=ev.certs, roots=sim_milan.trust_roots(), at=AT)
    with pytest.raises(ValueError):
        SimulatedAmd.load(b'{"format": "other"}')


def test_evidence_certificates_are_bounded(sim_milan: SimulatedAmd) -> None:
    from donjon.attestation.verify import MAX_EVIDENCE_CERTS

    ev = sim_milan.evidence(bytes(64))
    with pytest.raises(MalformedEvidence) as e:
        verify_evidence(
            "snp-report",
            ev.report,
            certs=list(ev.certs) * MAX_EVIDENCE_CERTS,
            roots=sim_milan.trust_roots(),
            at=AT,
        )
    assert e.value.check == "evidence.certs"


def test_json_quoting_pem_is_judged_as_json(vectors: Path) -> None:
    # dcap-qvl's QuoteCollateralV3 JSON carries issuer chains as escaped PEM strings: it must be
    # refused as unrecognised JSON (pointing at bundles), not as a broken PEM certificate.
    data = (vectors / "tdx/dcapqvl/tdx_quote_collateral.json").read_bytes()
    assert b"-----BEGIN " in data
    with pytest.raises(CollateralError) as info:
        recognise_collateral(data, source="coll.json")
    assert info.value.check == "collateral.unrecognised"
    assert "import_bundle" in str(info.value)
