"""Negative cases generated from each real positive (STYLE.md 8) and from the simulator.

Real evidence gives bit flips, truncation, the wrong product line's root and
times outside the certificates; flaws a real report cannot have without AMD's
keys (a debug policy, a revoked ASK, a mis-issued VCEK) come from the
simulated vendor, where the tests hold every key.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from donjon.attestation.amd import Product
from donjon.attestation.errors import AttestationError, CollateralError, MalformedEvidence, VerificationFailed
from donjon.attestation.simsnp import DEFAULT_TCB, SimulatedAmd
from donjon.attestation.snp import SnpOptions, SnpTcb, parse_report
from donjon.attestation.verify import Collateral, TrustRoots, verify_evidence

AT = datetime(2026, 11, 29, tzinfo=UTC)
DATA = bytes(range(64))


def load(vectors: Path, positive: tuple[Any, ...]) -> tuple[bytes, list[bytes], datetime, SnpOptions]:
    _, evidence, cert, at, options = positive
    raw = (vectors / evidence).read_bytes()
    if evidence.endswith(".hex"):
        raw = bytes.fromhex(raw.decode())
    return (
        raw,
        [(vectors / cert).read_bytes()],
        datetime.fromisoformat(at.replace("Z", "+00:00")),
        SnpOptions(**options),
    )


def run(
    report: bytes,
    certs: list[bytes],
    roots: TrustRoots,
    at: datetime,
    options: SnpOptions | None = None,
    collateral: Collateral | None = None,
):
    return verify_evidence(
        "snp-report", report, certs=certs, roots=roots, at=at, options=options, collateral=collateral
    )


def leaf_only(certs: list[bytes]) -> list[bytes]:
    """The endorsement certificate alone (Azure's vcek.pem carries the whole chain)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from donjon.attestation.pki import load_certificates

    return [load_certificates(certs[0])[0].public_bytes(Encoding.DER)]


def flipped(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


# Offsets of ordinary (non-reserved, non-structural) fields across the signed region 0h-29Fh.
SIGNED_FIELD_OFFSETS = {
    "guest_svn": 0x004,
    "policy.abi_minor": 0x008,
    "family_id": 0x010,
    "image_id": 0x02F,
    "vmpl": 0x030,
    "current_tcb": 0x038,
    "platform_info": 0x040,
    "author_key_en": 0x048,
    "report_data": 0x050,
    "report_data_end": 0x08F,
    "measurement": 0x090,
    "measurement_end": 0x0BF,
    "host_data": 0x0C0,
    "id_key_digest": 0x0E0,
    "author_key_digest": 0x110,
    "report_id": 0x140,
    "report_id_ma": 0x160,
    "reported_tcb": 0x180,
    "reported_tcb.ucode": 0x187,
    "chip_id": 0x1A0,
    "chip_id_end": 0x1DF,
    "committed_tcb": 0x1E0,
    "current_build": 0x1E8,
    "committed_major": 0x1EE,
    "launch_tcb": 0x1F0,
}


@pytest.mark.parametrize("offset", SIGNED_FIELD_OFFSETS.values(), ids=SIGNED_FIELD_OFFSETS.keys())
def test_flipped_bit_in_signed_field_fails_signature(
    vectors: Path, amd_roots: TrustRoots, positive, offset
) -> None:
    report, certs, at, options = load(vectors, positive)
    run(report, certs, amd_roots, at, options)  # the original verifies
    with pytest.raises(VerificationFailed) as e:
        run(flipped(report, offset), certs, amd_roots, at, options)
    assert e.value.check == "snp.signature"


def test_flipped_bits_in_reserved_fields_fail_the_reserved_check(
    vectors: Path, amd_roots: TrustRoots, positive
) -> None:
    report, certs, at, options = load(vectors, positive)
    version = parse_report(report).version
    offsets = [0x04C, 0x19F, 0x1EB, 0x1EF, 0x29F, 0x330, 0x49F, 0x188 if version == 2 else 0x18B]
    if version < 5:
        offsets.append(0x1F8)
    for offset in offsets:
        with pytest.raises(MalformedEvidence) as e:
            run(flipped(report, offset, 0x80), certs, amd_roots, at, options)
        assert e.value.check == "snp.reserved", hex(offset)


def test_flipped_signature_fails(vectors: Path, amd_roots: TrustRoots, positive) -> None:
    report, certs, at, options = load(vectors, positive)
    for offset in (0x2A0, 0x2CF, 0x2E8, 0x317):
        with pytest.raises(VerificationFailed) as e:
            run(flipped(report, offset), certs, amd_roots, at, options)
        assert e.value.check == "snp.signature"
    # The zero-extension bytes of R and S must stay zero.
    with pytest.raises(VerificationFailed, match="48 bytes"):
        run(flipped(report, 0x2A0 + 60), certs, amd_roots, at, options)


def test_structural_fields(vectors: Path, amd_roots: TrustRoots, positive) -> None:
    report, certs, at, options = load(vectors, positive)
    with pytest.raises(MalformedEvidence) as e:
        run(flipped(report, 0x034, 0x02), certs, amd_roots, at, options)
    assert e.value.check == "snp.signature_algo"
    with pytest.raises(MalformedEvidence) as e:
        run(flipped(report, 0x048 + 1, 0x01), certs, amd_roots, at, options)  # KEY_INFO bit 8
    assert e.value.check == "snp.reserved"
    with pytest.raises(MalformedEvidence) as e:
        run(flipped(report, 0x00A, 0x02), certs, amd_roots, at, options)  # POLICY bit 17 must be one
    assert e.value.check == "snp.reserved"
    with pytest.raises(AttestationError):  # SIGNING_KEY VCEK <-> VLEK
        run(flipped(report, 0x048, 0x04), certs, amd_roots, at, options)
    with pytest.raises(VerificationFailed) as e:
        run(flipped(report, 0x048, 0x1C ^ (report[0x48] & 0x1C)), certs, amd_roots, at, options)  # none
    assert e.value.check == "snp.unsigned"


@pytest.mark.parametrize("size", [0, 1, 0x2A0, 0x4A0 - 1, 0x4A0 + 1])
def test_truncated_or_extended_report_is_malformed(
    vectors: Path, amd_roots: TrustRoots, positive, size
) -> None:
    report, certs, at, options = load(vectors, positive)
    data = report[:size] if size <= len(report) else report + b"\0"
    with pytest.raises(MalformedEvidence) as e:
        run(data, certs, amd_roots, at, options)
    assert e.value.check == "snp.size"


def test_unsupported_version_is_malformed(vectors: Path, amd_roots: TrustRoots, positive) -> None:
    report, certs, at, options = load(vectors, positive)
    for version in (0, 1, 6, 0xFFFFFFFF):
        data = version.to_bytes(4, "little") + report[4:]
        with pytest.raises(MalformedEvidence) as e:
            run(data, certs, amd_roots, at, options)
        assert e.value.check == "snp.version"


def test_wrong_product_line_root(vectors: Path, amd_roots: TrustRoots, positive) -> None:
    report, certs, at, options = load(vectors, positive)
    product = run(report, certs, amd_roots, at, options).claims.platform
    other = "Genoa" if product == "Milan" else "Milan"
    # Only the other product line's ARK/ASK/ASVK are available: no chain for this VCEK.
    wrong = TrustRoots(
        certificates=tuple(c for c in amd_roots.certificates if other in c.subject.rfc4514_string())
    )
    with pytest.raises(AttestationError) as e:
        run(report, leaf_only(certs), wrong, at, options)
    assert e.value.check in ("snp.chain.intermediate", "snp.chain.root")
    # The caller demands the other product line.
    with pytest.raises(VerificationFailed) as e:
        run(report, certs, amd_roots, at, replace(options, product=other))
    assert e.value.check == "snp.product" and e.value.expected == other and e.value.got == product


def test_no_roots_means_no_trust(vectors: Path, positive) -> None:
    report, certs, at, options = load(vectors, positive)
    with pytest.raises(AttestationError):
        run(report, leaf_only(certs), TrustRoots(), at, options)


def test_wrong_report_data(vectors: Path, amd_roots: TrustRoots, positive) -> None:
    report, certs, at, options = load(vectors, positive)
    run(report, certs, amd_roots, at, replace(options, report_data=report[0x50:0x90]))
    with pytest.raises(VerificationFailed) as e:
        run(report, certs, amd_roots, at, replace(options, report_data=bytes(64)))
    assert e.value.check == "snp.report_data"


def test_min_tcb(vectors: Path, amd_roots: TrustRoots, positive) -> None:
    report, certs, at, options = load(vectors, positive)
    reported = run(report, certs, amd_roots, at, options).claims.raw["reported_tcb"]
    floor = SnpTcb(**reported)
    run(report, certs, amd_roots, at, replace(options, min_tcb=floor))
    with pytest.raises(VerificationFailed) as e:
        run(report, certs, amd_roots, at, replace(options, min_tcb=replace(floor, snp=floor.snp + 1)))
    assert e.value.check == "snp.tcb.minimum"


def test_smt_forbidden(vectors: Path, amd_roots: TrustRoots, positive) -> None:
    report, certs, at, options = load(vectors, positive)
    assert parse_report(report).policy_flags()["smt"]  # every real report here allows SMT
    with pytest.raises(VerificationFailed) as e:
        run(report, certs, amd_roots, at, replace(options, forbid_smt=True))
    assert e.value.check == "snp.policy.smt"


# -- the MANIFEST's documented negative byte changes -----------------------------------------------


def test_manifest_virtee_byte21(vectors: Path, amd_roots: TrustRoots) -> None:
    # MANIFEST: "FAIL if byte 21 ^= 0x80 (milan_report_invalid: signature mismatch)".
    report, certs, at, options = load(
        vectors,
        ("", "snp/virtee_sev/report_milan.hex", "snp/virtee_sev/vcek_milan.der", "2026-11-29T00:00:00Z", {}),
    )
    with pytest.raises(VerificationFailed) as e:
        run(flipped(report, 21, 0x80), certs, amd_roots, at, options)
    assert e.value.check == "snp.signature"


TRUSTEE = [
    ("trustee-milan", "snp/trustee/test-report.bin", "snp/trustee/test-vcek.der", "2026-11-29T00:00:00Z", {}),
    (
        "trustee-vlek",
        "snp/trustee/test-vlek-report.bin",
        "snp/trustee/test-vlek.der",
        "2025-06-01T00:00:00Z",
        {"max_vmpl": 1},
    ),
]


@pytest.mark.parametrize("bundle", TRUSTEE, ids=[t[0] for t in TRUSTEE])
def test_manifest_trustee_byte42_and_384(vectors: Path, amd_roots: TrustRoots, bundle) -> None:
    # MANIFEST: "byte[42]+=1 -> signature fail; byte[384]+=1 (reported_tcb.bootloader) -> TCB mismatch".
    # Byte 384 is inside the signed region, so this verifier refuses it at the signature; the
    # TCB-mismatch rule itself is exercised with a simulated mis-issued VCEK below.
    report, certs, at, options = load(vectors, bundle)
    run(report, certs, amd_roots, at, options)
    for offset in (42, 384):
        data = bytearray(report)
        data[offset] = (data[offset] + 1) & 0xFF
        with pytest.raises(VerificationFailed) as e:
            run(bytes(data), certs, amd_roots, at, options)
        assert e.value.check == "snp.signature"


def test_manifest_tampered_vcek_der(vectors: Path, amd_roots: TrustRoots) -> None:
    # MANIFEST: virtee vcek_milan.der buf[40]^=0xff and trustee test-vcek.der byte[42]+=1 must fail.
    for evidence, cert, change in (
        (
            "snp/virtee_sev/report_milan.hex",
            "snp/virtee_sev/vcek_milan.der",
            lambda b: b.__setitem__(40, b[40] ^ 0xFF),
        ),
        (
            "snp/trustee/test-report.bin",
            "snp/trustee/test-vcek.der",
            lambda b: b.__setitem__(42, (b[42] + 1) & 0xFF),
        ),
    ):
        report, certs, at, options = load(vectors, ("", evidence, cert, "2026-11-29T00:00:00Z", {}))
        der = bytearray(certs[0])
        change(der)
        with pytest.raises(AttestationError):
            run(report, [bytes(der)], amd_roots, at, options)


def test_manifest_synthetic_vceks_do_not_chain(vectors: Path, amd_roots: TrustRoots) -> None:
    # MANIFEST: test-vcek-invalid-{legacy,new}.der: "chain verification must FAIL".
    report = (vectors / "snp/trustee/test-report.bin").read_bytes()
    for name in ("test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"):
        with pytest.raises(AttestationError):
            run(report, [(vectors / "snp/trustee" / name).read_bytes()], amd_roots, AT)


def test_vcek_with_asvk_instead_of_ask_fails(vectors: Path) -> None:
    # MANIFEST (trustee check_milan_chain_signature_failure): using the ASVK instead of the ASK fails.
    roots = TrustRoots.from_bytes((vectors / "roots/amd/gosevguest_ask_ark_milan_vlek.pem").read_bytes())
    report = (vectors / "snp/trustee/test-report.bin").read_bytes()
    with pytest.raises(CollateralError) as e:
        run(report, [(vectors / "snp/trustee/test-vcek.der").read_bytes()], roots, AT)
    assert e.value.check == "snp.chain.intermediate"


def test_vlek_report_without_vlek(vectors: Path, amd_roots: TrustRoots) -> None:
    report = (vectors / "snp/trustee/test-vlek-report.bin").read_bytes()
    at = datetime(2025, 6, 1, tzinfo=UTC)
    with pytest.raises(CollateralError) as e:
        run(
            report,
            [(vectors / "snp/trustee/test-vcek.der").read_bytes()],
            amd_roots,
            at,
            SnpOptions(max_vmpl=1),
        )
    assert e.value.check == "snp.vlek.missing"
    with pytest.raises(VerificationFailed) as v:
        run(report, [(vectors / "snp/trustee/test-vlek.der").read_bytes()], amd_roots, at)
    assert v.value.check == "snp.vmpl"
    with pytest.raises(VerificationFailed) as k:
        run(
            report,
            [(vectors / "snp/trustee/test-vlek.der").read_bytes()],
            amd_roots,
            at,
            SnpOptions(max_vmpl=1, signing_key="vcek"),
        )
    assert k.value.check == "snp.signing_key"


def test_real_vcek_chain_does_not_accept_a_simulated_root(vectors: Path, sim_milan: SimulatedAmd) -> None:
    report = (vectors / "snp/trustee/test-report.bin").read_bytes()
    with pytest.raises(AttestationError):
        run(report, [(vectors / "snp/trustee/test-vcek.der").read_bytes()], sim_milan.trust_roots(), AT)


# -- simulated vendor: flaws only a key holder can produce ---------------------------------------------


def sim_run(
    sim: SimulatedAmd,
    options: SnpOptions | None = None,
    collateral: Collateral | None = None,
    roots: TrustRoots | None = None,
    **report: Any,
):
    ev = sim.evidence(DATA, **report)
    return run(ev.report, list(ev.certs), roots or sim.trust_roots(), AT, options, collateral)


@pytest.mark.parametrize("version", [2, 3, 4, 5])
def test_simulated_reports_verify_unchanged(sim_milan: SimulatedAmd, version: int) -> None:
    claims = sim_run(sim_milan, version=version, launch_mit_vector=3, current_mit_vector=7).claims
    assert claims.simulated is True
    assert claims.platform == "Milan"
    assert claims.report_data == DATA
    assert claims.raw["version"] == version
    if version >= 5:
        assert (claims.raw["launch_mit_vector"], claims.raw["current_mit_vector"]) == (3, 7)
    else:
        assert "launch_mit_vector" not in claims.raw


def test_simulated_root_is_not_trusted_without_opt_in(sim_milan: SimulatedAmd, vectors: Path) -> None:
    ev = sim_milan.evidence(DATA)
    roots = TrustRoots.from_bytes(
        sim_milan.ark_pem(), *[p.read_bytes() for p in (vectors / "roots/amd").glob("*.pem")]
    )
    with pytest.raises(VerificationFailed) as e:
        run(ev.report, list(ev.certs), roots, AT)
    assert e.value.check == "snp.chain.root"


def test_another_simulated_vendor_is_not_trusted(sim_milan: SimulatedAmd, sim_turin: SimulatedAmd) -> None:
    ev = sim_milan.evidence(DATA)
    with pytest.raises(AttestationError):
        run(ev.report, list(ev.certs), sim_turin.trust_roots(), AT)


def test_debug_policy(sim_milan: SimulatedAmd) -> None:
    with pytest.raises(VerificationFailed) as e:
        sim_run(sim_milan, debug=True)
    assert e.value.check == "snp.policy.debug"
    assert sim_run(sim_milan, SnpOptions(allow_debug=True), debug=True).claims.debug is True


def test_migration_agent_and_abi(sim_milan: SimulatedAmd) -> None:
    with pytest.raises(VerificationFailed) as e:
        sim_run(sim_milan, policy=0x30000 | (1 << 18))
    assert e.value.check == "snp.policy.migrate_ma"
    sim_run(sim_milan, SnpOptions(allow_migration_agent=True), policy=0x30000 | (1 << 18))
    with pytest.raises(VerificationFailed) as e:
        sim_run(sim_milan, SnpOptions(min_abi=(1, 51)), policy=0x30000 | (1 << 8) | 50)
    assert e.value.check == "snp.policy.abi"
    sim_run(sim_milan, SnpOptions(min_abi=(1, 51)), policy=0x30000 | (1 << 8) | 51)
    with pytest.raises(MalformedEvidence) as m:
        sim_run(sim_milan, policy=0x30000 | (1 << 40))
    assert m.value.check == "snp.reserved"


def test_firmware_minimum(sim_milan: SimulatedAmd) -> None:
    with pytest.raises(VerificationFailed) as e:
        sim_run(sim_milan, SnpOptions(min_firmware=(1, 56)), firmware=(1, 55, 3))
    assert e.value.check == "snp.firmware"
    sim_run(sim_milan, SnpOptions(min_firmware=(1, 55)), firmware=(1, 55, 3))


def test_vmpl(sim_milan: SimulatedAmd) -> None:
    with pytest.raises(VerificationFailed) as e:
        sim_run(sim_milan, vmpl=2)
    assert e.value.check == "snp.vmpl"
    assert sim_run(sim_milan, SnpOptions(max_vmpl=2), vmpl=2).claims.raw["vmpl"] == 2


def test_revoked_ask(sim_milan: SimulatedAmd) -> None:
    ask_serial = sim_milan.ask.serial_number
    revoked = Collateral(crls=(x509.load_der_x509_crl(sim_milan.crl([ask_serial])),))
    with pytest.raises(VerificationFailed) as e:
        sim_run(sim_milan, collateral=revoked)
    assert e.value.check == "snp.chain.revoked"
    clean = Collateral(crls=(x509.load_der_x509_crl(sim_milan.crl([ask_serial + 100])),))
    assert (
        sim_run(sim_milan, SnpOptions(require_crl=True), collateral=clean).claims.raw["crl_checked"] is True
    )
    # Without a CRL (and without require_crl) the report verifies, and the claims say what was skipped.
    assert sim_run(sim_milan).claims.raw["crl_checked"] is False


def test_revoked_asvk_for_vlek(sim_milan: SimulatedAmd) -> None:
    revoked = Collateral(crls=(x509.load_der_x509_crl(sim_milan.crl([sim_milan.asvk.serial_number])),))
    sim_run(sim_milan, signing_key="vlek")
    with pytest.raises(VerificationFailed) as e:
        sim_run(sim_milan, collateral=revoked, signing_key="vlek")
    assert e.value.check == "snp.chain.revoked"


def test_crl_must_be_signed_by_the_ark_and_current(sim_milan: SimulatedAmd, sim_turin: SimulatedAmd) -> None:
    # A CRL naming the ARK as issuer but signed by another key is an error, not ignored.
    impostor = SimulatedAmd(
        Product.MILAN,
        ark_key=sim_turin._ark_key,
        ask_key=sim_turin._ask_key,
        asvk_key=sim_turin._asvk_key,
        ark=sim_milan.ark,
        ask=sim_milan.ask,
        asvk=sim_milan.asvk,
    )
    forged = Collateral(crls=(x509.load_der_x509_crl(impostor.crl([])),))
    with pytest.raises(CollateralError) as e:
        sim_run(sim_milan, collateral=forged)
    assert e.value.check == "snp.crl.signature"
    stale = Collateral(
        crls=(
            x509.load_der_x509_crl(
                sim_milan.crl(
                    [],
                    last_update=datetime(2024, 1, 1, tzinfo=UTC),
                    next_update=datetime(2024, 2, 1, tzinfo=UTC),
                )
            ),
        )
    )
    with pytest.raises(CollateralError) as e:
        sim_run(sim_milan, collateral=stale)
    assert e.value.check == "snp.crl.expired"
    with pytest.raises(CollateralError) as e:
        sim_run(sim_milan, SnpOptions(require_crl=True))
    assert e.value.check == "snp.crl.missing"


def _misissued(sim: SimulatedAmd, **claims: Any) -> tuple[bytes, list[bytes]]:
    # A report signed by the genuine VCEK, plus a second certificate for the SAME key that
    # claims something else (what a compromised or buggy KDS could issue).
    ev = sim.evidence(DATA)
    _, genuine = sim.endorsement_key()
    lying = sim.certify(genuine.public_key(), **claims)
    from cryptography.hazmat.primitives.serialization import Encoding

    return ev.report, [lying.public_bytes(Encoding.DER), *ev.certs[1:]]


def test_reported_tcb_must_match_the_vcek(sim_milan: SimulatedAmd) -> None:
    report, certs = _misissued(sim_milan, tcb=replace(DEFAULT_TCB, bootloader=DEFAULT_TCB.bootloader + 1))
    with pytest.raises(VerificationFailed) as e:
        run(report, certs, sim_milan.trust_roots(), AT)
    assert e.value.check == "snp.tcb.mismatch"


def test_chip_id_must_match_the_vcek(sim_milan: SimulatedAmd) -> None:
    report, certs = _misissued(sim_milan, chip_id=b"\x42" * 64)
    with pytest.raises(VerificationFailed) as e:
        run(report, certs, sim_milan.trust_roots(), AT)
    assert e.value.check == "snp.chip_id"


def test_vcek_product_must_match_root(sim_milan: SimulatedAmd) -> None:
    report, certs = _misissued(sim_milan, product_name="Genoa")
    with pytest.raises(VerificationFailed) as e:
        run(report, certs, sim_milan.trust_roots(), AT)
    assert e.value.check == "snp.product"


def test_cpuid_must_match_the_chain(sim_milan: SimulatedAmd) -> None:
    with pytest.raises(VerificationFailed) as e:
        sim_run(sim_milan, cpuid=(0x19, 0x11, 0x01))  # a Genoa CPUID under Milan's chain
    assert e.value.check == "snp.product"
    with pytest.raises(VerificationFailed) as e:
        sim_run(sim_milan, cpuid=(0x17, 0x31, 0x00))  # Rome: no SEV-SNP product
    assert e.value.check == "snp.product.cpuid"
    sim_run(sim_milan, version=2, cpuid=None)  # v2 has no CPUID: the chain decides
    assert sim_run(sim_milan, version=3, cpuid=(0, 0, 0)).claims.platform == "Milan"  # not filled in


def test_masked_chip_id_is_reported_as_masked(sim_milan: SimulatedAmd) -> None:
    claims = sim_run(sim_milan, mask_chip_id=True).claims
    assert claims.raw["chip_id"] == "masked"


def test_current_and_launch_tcb_not_below_certified(sim_milan: SimulatedAmd) -> None:
    lower = replace(DEFAULT_TCB, microcode=DEFAULT_TCB.microcode - 1)
    with pytest.raises(VerificationFailed) as e:
        sim_run(sim_milan, current_tcb=lower)
    assert e.value.check == "snp.tcb.current_below_certified"
    with pytest.raises(VerificationFailed) as e:
        sim_run(sim_milan, launch_tcb=lower)
    assert e.value.check == "snp.tcb.launch_below_certified"
    higher = replace(DEFAULT_TCB, microcode=DEFAULT_TCB.microcode + 1)
    assert sim_run(sim_milan, current_tcb=higher).claims.raw["current_tcb"]["microcode"] == higher.microcode


def test_reserved_fields_follow_the_version(sim_milan: SimulatedAmd) -> None:
    # 1F8h is LAUNCH_MIT_VECTOR in version 5 and reserved before; 188h is CPUID_FAM_ID from version 3.
    v5 = sim_milan.report(DATA, version=5, launch_mit_vector=1)
    assert parse_report(v5).launch_mit_vector == 1
    ev = sim_milan.evidence(DATA, version=5, launch_mit_vector=1)
    run(ev.report, list(ev.certs), sim_milan.trust_roots(), AT)
    v2 = bytearray(sim_milan.evidence(DATA, version=2).report)
    v2[0x188] = 0x19
    with pytest.raises(MalformedEvidence) as e:
        run(bytes(v2), list(ev.certs), sim_milan.trust_roots(), AT)
    assert e.value.check == "snp.reserved" and e.value.field == "reserved@0x188"


def test_turin_layout(sim_turin: SimulatedAmd) -> None:
    tcb = SnpTcb(fmc=2, bootloader=3, tee=4, snp=5, microcode=6)
    claims = sim_run(sim_turin, tcb=tcb, version=5).claims
    assert claims.platform == "Turin"
    assert claims.raw["reported_tcb"] == {"bootloader": 3, "tee": 4, "snp": 5, "microcode": 6, "fmc": 2}
    assert claims.raw["reported_tcb_raw"] == "0600000005040302"
    with pytest.raises(VerificationFailed) as e:
        sim_run(sim_turin, SnpOptions(min_tcb=replace(tcb, fmc=3)), tcb=tcb, version=5)
    assert e.value.check == "snp.tcb.minimum"


def test_unsigned_report(sim_milan: SimulatedAmd) -> None:
    with pytest.raises(VerificationFailed) as e:
        sim_run(sim_milan, key_info=7 << 2)
    assert e.value.check == "snp.unsigned"
