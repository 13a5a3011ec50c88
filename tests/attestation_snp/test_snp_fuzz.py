"""Bounded property tests (a few seconds in CI); each states one rule (STYLE.md 9)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from donjon.attestation.detect import detect_evidence_kind, recognise_collateral
from donjon.attestation.errors import AttestationError, CollateralError, MalformedEvidence
from donjon.attestation.simsnp import SimulatedAmd
from donjon.attestation.snp import REPORT_SIZE, SIGNED_SIZE, parse_report
from donjon.attestation.verify import EvidenceKind, TrustRoots, verify_evidence

AT = datetime(2026, 11, 29, tzinfo=UTC)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

#: Bytes shaped like a report often enough to get past the size and version checks.
report_like = st.one_of(
    st.binary(max_size=2 * REPORT_SIZE),
    st.builds(
        lambda version, body: version.to_bytes(4, "little") + body,
        st.integers(0, 7),
        st.binary(min_size=REPORT_SIZE - 4, max_size=REPORT_SIZE - 4),
    ),
)


@FAST
@given(report_like)
def test_any_bytes_parse_or_raise_malformed(data: bytes) -> None:
    try:
        report = parse_report(data)
    except MalformedEvidence:
        return
    assert len(report.raw) == REPORT_SIZE and 2 <= report.version <= 5


@FAST
@given(report_like)
def test_any_bytes_never_verify_and_fail_with_an_attestation_error(data: bytes) -> None:
    try:
        verify_evidence("snp-report", data, roots=TrustRoots(), at=AT)
    except AttestationError:
        return
    raise AssertionError("random bytes verified")


@FAST
@given(st.integers(0, SIGNED_SIZE * 8 - 1))
def test_a_flipped_bit_in_the_signed_region_of_a_real_report_never_verifies(vectors: Path, bit: int) -> None:
    report = bytearray((vectors / "snp/trustee/test-report.bin").read_bytes())
    cert = (vectors / "snp/trustee/test-vcek.der").read_bytes()
    roots = TrustRoots.from_bytes((vectors / "roots/amd/trustee_milan_ask_ark_asvk.pem").read_bytes())
    verify_evidence("snp-report", bytes(report), certs=[cert], roots=roots, at=AT)
    report[bit // 8] ^= 1 << (bit % 8)
    try:
        verify_evidence("snp-report", bytes(report), certs=[cert], roots=roots, at=AT)
    except AttestationError:
        return
    raise AssertionError(f"bit {bit} flipped and the report still verified")


@FAST
@given(st.integers(0, REPORT_SIZE * 8 - 1))
def test_a_flipped_bit_anywhere_in_a_simulated_report_never_verifies(
    sim_milan: SimulatedAmd, bit: int
) -> None:
    ev = sim_milan.evidence(bytes(64), version=5)
    report = bytearray(ev.report)
    report[bit // 8] ^= 1 << (bit % 8)
    try:
        verify_evidence("snp-report", bytes(report), certs=ev.certs, roots=sim_milan.trust_roots(), at=AT)
    except AttestationError:
        return
    raise AssertionError(f"bit {bit} flipped and the report still verified")


@FAST
@given(st.binary(max_size=4096))
def test_any_bytes_are_some_evidence_kind_or_malformed(data: bytes) -> None:
    try:
        kind = detect_evidence_kind(data)
    except MalformedEvidence:
        return
    assert isinstance(kind, EvidenceKind)


@FAST
@given(
    st.one_of(
        st.binary(max_size=2048), st.binary(max_size=64).map(lambda b: b"-----BEGIN CERTIFICATE-----\n" + b)
    )
)
def test_any_bytes_are_collateral_or_a_collateral_error(data: bytes) -> None:
    try:
        found = recognise_collateral(data)
    except CollateralError:
        return
    assert found.certificates or found.crls or found.tcb_info or found.qe_identity


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 1359), st.integers(1, 255))
# A name attribute turned into a BIT STRING: cryptography raised TypeError on first reading the name.
@example(offset=278, mask=16)
def test_a_corrupted_vcek_never_verifies_and_fails_cleanly(vectors: Path, offset: int, mask: int) -> None:
    report = (vectors / "snp/trustee/test-report.bin").read_bytes()
    cert = bytearray((vectors / "snp/trustee/test-vcek.der").read_bytes())
    roots = TrustRoots.from_bytes((vectors / "roots/amd/trustee_milan_ask_ark_asvk.pem").read_bytes())
    cert[offset % len(cert)] ^= mask
    try:
        verify_evidence("snp-report", report, certs=[bytes(cert)], roots=roots, at=AT)
    except AttestationError:
        return
    raise AssertionError(f"byte {offset} ^ {mask:#x} of the VCEK and the report still verified")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 10_000), st.integers(1, 255))
def test_a_corrupted_crl_fails_cleanly(sim_milan: SimulatedAmd, offset: int, mask: int) -> None:
    # Rule: a corrupted CRL is refused with an AttestationError, or (if it no longer names
    # this ARK) ignored so that the genuine report still verifies; never a foreign exception.
    ev = sim_milan.evidence(bytes(64))
    crl = bytearray(sim_milan.crl([12345]))
    crl[offset % len(crl)] ^= mask
    try:
        collateral = recognise_collateral(bytes(crl))
        verify_evidence(
            "snp-report",
            ev.report,
            certs=ev.certs,
            roots=sim_milan.trust_roots(),
            at=AT,
            collateral=collateral,
        )
    except AttestationError:
        return
