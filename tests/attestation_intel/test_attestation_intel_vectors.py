"""Real Intel TDX/SGX evidence (../shared/vectors): expected results at the suggested times,
the documented byte-flip negatives, and negatives generated from every real positive."""

from __future__ import annotations

import dataclasses
import struct
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from donjon.attestation import CollateralError, MalformedEvidence, TcbStatus, TeeType, VerificationFailed
from donjon.attestation.dcap import parse_quote
from donjon.attestation.dcap_verify import (
    IntelCollateral,
    verify_dcap_quote,
    verify_sgx_quote,
    verify_tdx_quote,
)
from donjon.attestation.errors import AttestationError

# name -> (tee, status, advisories (ordered as Intel lists them), FMSPC, measurement prefix)
POSITIVE = {
    "tdx-dcapqvl": (TeeType.TDX, TcbStatus.UP_TO_DATE, (), "b0c06f000000", "91eb2b44d141d4ec"),
    "tdx-dcapqvl-near": (TeeType.TDX, TcbStatus.UP_TO_DATE, (), "20a06f000000", None),
    "sgx-dcapqvl": (
        TeeType.SGX,
        TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
        ("INTEL-SA-00289", "INTEL-SA-00615"),
        "00a067110000",
        "33d8736db756ed49",
    ),
    "tdx-gotdx-v5": (TeeType.TDX, TcbStatus.UP_TO_DATE, (), "90c06f000000", "7348651a34b2d2d3"),
    "tdx-trustee-q6": (TeeType.TDX, TcbStatus.OUT_OF_DATE, (), "00a06d080000", "21e8dead92d6c69d"),
    "sgx-steward-xeon": (
        TeeType.SGX,
        TcbStatus.OUT_OF_DATE,
        ("INTEL-SA-00586", "INTEL-SA-00614", "INTEL-SA-00615", "INTEL-SA-00657"),
        "00606a000000",
        "4046ea255f045513",
    ),
    "sgx-steward-i5": (
        TeeType.SGX,
        TcbStatus.OUT_OF_DATE,
        ("INTEL-SA-00381", "INTEL-SA-00389", "INTEL-SA-00477", "INTEL-SA-00289",
         "INTEL-SA-00614", "INTEL-SA-00617", "INTEL-SA-00615", "INTEL-SA-00657"),
        "00706e470000",
        "4046ea255f045513",
    ),
}  # fmt: skip

#: enarx/steward's testdata/steward.toml allowed advisories (MANIFEST, sgx/steward CSR rows).
STEWARD_ALLOWED = [f"INTEL-SA-00{n}" for n in (289, 381, 389, 477, 586, 614, 615, 617, 657)]


def _verify(bundle, **extra):  # type: ignore[no-untyped-def]
    kwargs = {"collateral": bundle.collateral, "at": bundle.at, **bundle.options, **extra}
    return verify_dcap_quote(bundle.quote, **kwargs)


@pytest.mark.parametrize("name", sorted(POSITIVE))
def test_real_quote_verifies_with_expected_status(intel_bundles, name: str) -> None:
    tee, status, advisories, fmspc, measurement = POSITIVE[name]
    claims = _verify(intel_bundles[name]).claims
    assert claims.tee == tee
    assert claims.tcb_status == status
    assert claims.advisory_ids == advisories
    assert claims.platform == fmspc
    assert claims.simulated is False
    assert claims.debug is False
    if measurement is not None:
        assert claims.measurement.hex().startswith(measurement)
    if tee == TeeType.TDX:
        assert claims.measurement == claims.measurements["mrtd"] and claims.signer is None
    else:
        assert claims.signer == claims.measurements["mrsigner"]


def test_sgx_dcapqvl_claims_detail(intel_bundles) -> None:
    claims = _verify(intel_bundles["sgx-dcapqvl"]).claims
    assert claims.report_data.startswith(b"Hello, world!") and claims.report_data[13:] == bytes(51)
    assert claims.signer is not None and claims.signer.hex().startswith("815f42f11cf64430")
    assert claims.raw["pce_svn"] == 13 and claims.raw["qe_svn"] == 10


def test_tdx_v5_claims_carry_td15_fields(intel_bundles) -> None:
    claims = _verify(intel_bundles["tdx-gotdx-v5"]).claims
    assert claims.raw["quote_version"] == 5 and claims.raw["body_type"] == 3
    assert claims.raw["tee_tcb_svn2"].hex().startswith("0d0104")
    assert "mrservicetd" in claims.measurements
    assert claims.report_data.hex().startswith("945eaacf5abc1f71")


def test_steward_advisories_allowed_by_its_policy_pass_and_others_fail(intel_bundles) -> None:
    bundle = intel_bundles["sgx-steward-xeon"]
    assert _verify(bundle, allowed_advisories=STEWARD_ALLOWED).claims.tcb_status == TcbStatus.OUT_OF_DATE
    with pytest.raises(VerificationFailed) as e:
        _verify(bundle, allowed_advisories=["bogus-1234"])
    assert e.value.check == "dcap.tcb.advisories"
    with pytest.raises(VerificationFailed) as e:
        _verify(bundle, allowed_statuses=[TcbStatus.UP_TO_DATE])
    assert e.value.check == "dcap.tcb.status"


@pytest.mark.parametrize("name", ["tdx-dcapqvl-outdated", "tdx-gotdx-spr-e4"])
def test_no_matching_tcb_level_is_refused(intel_bundles, name: str) -> None:
    with pytest.raises(VerificationFailed) as e:
        _verify(intel_bundles[name])
    assert e.value.check == "dcap.tcb.no_matching_level"


def test_missing_qe_identity_is_refused_by_default(intel_bundles) -> None:
    bundle = intel_bundles["sgx-steward-xeon"]
    with pytest.raises(CollateralError) as e:
        verify_dcap_quote(bundle.quote, collateral=bundle.collateral, at=bundle.at)
    assert e.value.check == "dcap.qe_identity.missing"


def test_missing_crls_are_refused_by_default(intel_bundles) -> None:
    bundle = intel_bundles["tdx-trustee-q6"]
    with pytest.raises(CollateralError) as e:
        verify_dcap_quote(bundle.quote, collateral=bundle.collateral, at=bundle.at)
    assert e.value.check == "dcap.crl.missing"


def test_wrong_tee_entry_point_is_refused(intel_bundles) -> None:
    sgx, tdx = intel_bundles["sgx-dcapqvl"], intel_bundles["tdx-dcapqvl"]
    with pytest.raises(VerificationFailed):
        verify_tdx_quote(sgx.quote, collateral=sgx.collateral, at=sgx.at)
    with pytest.raises(VerificationFailed):
        verify_sgx_quote(tdx.quote, collateral=tdx.collateral, at=tdx.at)
    assert verify_tdx_quote(tdx.quote, collateral=tdx.collateral, at=tdx.at).claims.tee == TeeType.TDX


def test_collateral_for_another_platform_is_refused(intel_bundles) -> None:
    near, other = intel_bundles["tdx-dcapqvl-near"], intel_bundles["tdx-dcapqvl"]
    collateral = dataclasses.replace(near.collateral, tcb_info=other.collateral.tcb_info)
    with pytest.raises(CollateralError):
        verify_dcap_quote(near.quote, collateral=collateral, at=near.at)


def test_sgx_tcb_info_for_a_tdx_quote_is_refused(intel_bundles) -> None:
    tdx, sgx = intel_bundles["tdx-dcapqvl"], intel_bundles["sgx-dcapqvl"]
    collateral = dataclasses.replace(tdx.collateral, tcb_info=sgx.collateral.tcb_info)
    with pytest.raises(CollateralError):
        verify_dcap_quote(tdx.quote, collateral=collateral, at=tdx.at)


@pytest.mark.parametrize("name", sorted(POSITIVE))
def test_collateral_past_next_update_is_refused(intel_bundles, name: str) -> None:
    bundle = intel_bundles[name]
    with pytest.raises(CollateralError) as e:
        _verify(bundle, at=bundle.at + timedelta(days=40))
    assert e.value.check.endswith(".expired")


def test_dcapqvl_window_end_is_exact(intel_bundles) -> None:
    bundle = intel_bundles["tdx-dcapqvl"]  # window ends 2025-07-19T10:00:35Z (QE identity nextUpdate)
    _verify(bundle, at=bundle.at + timedelta(seconds=1))
    with pytest.raises(CollateralError):
        _verify(bundle, at=bundle.at + timedelta(seconds=2))


def test_pretty_printed_tcb_info_still_verifies(intel_bundles) -> None:
    import json

    bundle = intel_bundles["tdx-dcapqvl"]
    doc = json.loads(bundle.collateral.tcb_info)
    pretty = json.dumps(doc, indent=2).encode()
    collateral = dataclasses.replace(bundle.collateral, tcb_info=pretty)
    assert (
        _verify(dataclasses.replace(bundle, collateral=collateral)).claims.tcb_status == TcbStatus.UP_TO_DATE
    )


def test_edited_tcb_info_fails_its_signature(intel_bundles) -> None:
    bundle = intel_bundles["sgx-dcapqvl"]
    edited = bundle.collateral.tcb_info.replace(b'"tcbStatus":"OutOfDate"', b'"tcbStatus":"UpToDate"', 1)
    assert edited != bundle.collateral.tcb_info
    with pytest.raises(CollateralError) as e:
        _verify(
            dataclasses.replace(bundle, collateral=dataclasses.replace(bundle.collateral, tcb_info=edited))
        )
    assert e.value.check == "tcb_info.signature"


def test_old_tcb_signing_cert_cannot_vouch_for_newer_collateral(intel_bundles, vectors: Path) -> None:
    bundle = intel_bundles["tdx-gotdx-v5"]  # issued 2026, signed by the same key as the 2018-2025 cert
    old_chain = (vectors / "tdx/gotdxguest/tcbinfo_issuer_chain.pem").read_bytes()
    collateral = dataclasses.replace(bundle.collateral, tcb_info_issuer_chain=old_chain)
    with pytest.raises(CollateralError) as e:
        _verify(dataclasses.replace(bundle, collateral=collateral))
    assert e.value.check == "tcb_info.chain.expired"


# --- the Intel QVL sample set, signed by a test root that is not Intel's -----------------------------------


def _with_chain(quote: bytes, chain: bytes) -> bytes:
    """Re-assemble a v4 quote with another PCK chain (the chain is not covered by the quote signature)."""
    q = parse_quote(quote)
    s = q.signature
    block = (
        s.qe_report.raw + s.qe_report_signature + struct.pack("<H", len(s.qe_auth_data)) + s.qe_auth_data
        + struct.pack("<HI", 5, len(chain)) + chain
    )  # fmt: skip
    sig_data = s.signature + s.attestation_key + struct.pack("<HI", 6, len(block)) + block
    return q.signed_data + struct.pack("<I", len(sig_data)) + sig_data


def test_intel_sample_signed_by_a_test_root_is_refused(vectors: Path) -> None:
    base = vectors / "tdx/intel_qvl_sample_synthetic"
    collateral = IntelCollateral(
        tcb_info=(base / "tcbInfo.json").read_bytes(),
        tcb_info_issuer_chain=(base / "tcbSignChain.pem").read_bytes(),
        qe_identity=(base / "qeIdentity.json").read_bytes(),
        qe_identity_issuer_chain=(base / "tcbSignChain.pem").read_bytes(),
        pck_crl=(base / "intermediateCaCrl.der").read_bytes(),
        root_crl=(base / "rootCaCrl.der").read_bytes(),
    )
    from datetime import datetime

    at = datetime(2025, 9, 1, tzinfo=UTC)
    quote = (base / "quote.dat").read_bytes()
    with pytest.raises(AttestationError):
        verify_tdx_quote(quote, collateral=collateral, at=at)
    root_pem, ca_pem = (base / "pckSignChain.pem").read_bytes().split(b"-----END CERTIFICATE-----\n", 1)
    pem_chain = (base / "pckCert.pem").read_bytes() + ca_pem + root_pem + b"-----END CERTIFICATE-----\n"
    with pytest.raises(VerificationFailed) as e:
        verify_tdx_quote(_with_chain(quote, pem_chain), collateral=collateral, at=at)
    assert e.value.check == "dcap.pck_chain.root_pin"
    assert e.value.got.startswith("bf85a53f")  # type: ignore[union-attr]


# --- MANIFEST's documented byte-flip negatives for the SPR_E4 quote (go-tdx-guest RawTdxQuote) -----------

SPR_E4_FLIPS = [
    (0x00, 3, MalformedEvidence, "dcap."),  # "quote format not supported"
    (0x278, 0x10, MalformedEvidence, "dcap.certification_data_size"),  # cert data size mismatch
    (0x1343, 0x32, AttestationError, ""),  # PCK chain invalid
    (0x1329, 0x32, AttestationError, ""),  # root certificate signature
    (0xF5F, 0x32, AttestationError, ""),  # intermediate signature
    (0xB77, 0x32, AttestationError, ""),  # PCK leaf signature
    (0x1E, 0x32, VerificationFailed, "dcap.quote.signature"),
    (0x3C, 0x32, VerificationFailed, "dcap.quote.signature"),
]


@pytest.mark.parametrize(("offset", "value", "error", "check"), SPR_E4_FLIPS)
def test_spr_e4_documented_byte_flips(
    intel_bundles, offset: int, value: int, error: type, check: str
) -> None:
    bundle = intel_bundles["tdx-gotdx-spr-e4"]
    data = bytearray(bundle.quote)
    assert data[offset] != value
    data[offset] = value
    with pytest.raises(error) as e:
        verify_dcap_quote(bytes(data), collateral=bundle.collateral, at=bundle.at)
    assert e.value.check.startswith(check)
    assert e.value.check != "dcap.tcb.no_matching_level"  # it failed before TCB matching


def test_spr_e4_signatures_pass_before_tcb_matching(intel_bundles) -> None:
    bundle = intel_bundles["tdx-gotdx-spr-e4"]
    with pytest.raises(VerificationFailed) as e:
        verify_dcap_quote(bundle.quote, collateral=bundle.collateral, at=bundle.at)
    assert e.value.check == "dcap.tcb.no_matching_level"
    later = bundle.at.replace(year=2053)
    with pytest.raises(AttestationError) as e2:
        verify_dcap_quote(bundle.quote, collateral=bundle.collateral, at=later)
    assert e2.value.check.endswith("expired")


# --- negatives generated from every real positive -----------------------------------------------------------


def _regions(quote: bytes) -> dict[str, int]:
    """Offsets of one byte in each signed or certified region of the quote."""
    q = parse_quote(quote)
    sig_start = len(q.signed_data) + 4
    qe_off = sig_start + 128 + (0 if q.header.version == 3 else 6)
    chain_off = len(quote) - q.trailing - len(q.signature.pck_cert_chain)
    leaf_middle = quote.index(b"\n", chain_off + 200) - 10  # inside the PCK leaf's base64
    return {
        "header": 40,
        "body": 48 + 100,
        "report_data": len(q.signed_data) - 1,
        "quote_signature": sig_start + 5,
        "attestation_key": sig_start + 64 + 5,
        "qe_report": qe_off + 300,
        "qe_report_data": qe_off + 330,
        "qe_report_signature": qe_off + 384 + 5,
        "qe_auth_data": qe_off + 384 + 64 + 2 + 3,
        "pck_leaf": leaf_middle,
    }


@pytest.mark.parametrize("name", sorted(POSITIVE))
def test_flipped_byte_in_every_region_never_verifies(intel_bundles, name: str) -> None:
    bundle = intel_bundles[name]
    for region, offset in _regions(bundle.quote).items():
        data = bytearray(bundle.quote)
        if region == "pck_leaf":
            data[offset] = ord("B") if data[offset] != ord("B") else ord("C")  # stays valid base64
        else:
            data[offset] ^= 0x01
        with pytest.raises(AttestationError):
            verify_dcap_quote(bytes(data), collateral=bundle.collateral, at=bundle.at, **bundle.options)


@pytest.mark.parametrize("name", sorted(POSITIVE))
def test_truncated_quote_is_malformed(intel_bundles, name: str) -> None:
    quote = intel_bundles[name].quote
    q = parse_quote(quote)
    end = len(quote) - q.trailing
    for n in (0, 10, 47, 48, 300, len(q.signed_data), len(q.signed_data) + 4, end // 2, end - 1):
        with pytest.raises(MalformedEvidence):
            parse_quote(quote[:n])


@pytest.mark.parametrize("name", sorted(POSITIVE))
def test_wrong_expected_report_data_is_refused(intel_bundles, name: str) -> None:
    bundle = intel_bundles[name]
    good = _verify(bundle).claims.report_data
    assert _verify(bundle, report_data=good).claims.report_data == good
    with pytest.raises(VerificationFailed) as e:
        _verify(bundle, report_data=bytes(64) if good != bytes(64) else b"\x01" * 64)
    assert e.value.check == "dcap.report_data"


def test_trailing_padding_is_tolerated(intel_bundles) -> None:
    bundle = intel_bundles["tdx-dcapqvl"]
    assert parse_quote(bundle.quote).trailing == 70
    padded = bundle.quote + bytes(100)
    assert _verify(dataclasses.replace(bundle, quote=padded)).claims.tcb_status == TcbStatus.UP_TO_DATE


def test_pem_and_der_crls_are_both_accepted(intel_bundles) -> None:
    bundle = intel_bundles["tdx-dcapqvl"]
    from cryptography.hazmat.primitives import serialization

    pem = x509.load_der_x509_crl(bundle.collateral.pck_crl or b"").public_bytes(serialization.Encoding.PEM)
    collateral = dataclasses.replace(bundle.collateral, pck_crl=pem)
    assert (
        _verify(dataclasses.replace(bundle, collateral=collateral)).claims.tcb_status == TcbStatus.UP_TO_DATE
    )


def test_crl_from_the_wrong_ca_is_refused(intel_bundles) -> None:
    bundle = intel_bundles["sgx-steward-i5"]  # PCK issued by the Processor CA; give it the Platform CA's CRL
    xeon = intel_bundles["sgx-steward-xeon"]
    collateral = dataclasses.replace(bundle.collateral, pck_crl=xeon.collateral.pck_crl)
    with pytest.raises(CollateralError) as e:
        _verify(dataclasses.replace(bundle, collateral=collateral))
    assert e.value.check == "dcap.pck_crl.issuer"


# --- every real quote in the vectors parses to the fields MANIFEST.tsv documents ----------------------------

PARSE_CASES = [
    # path, version, body type, trailing bytes, debug, report_data prefix (hex), MRTD/MRENCLAVE prefix (hex)
    ("tdx/gotdxguest/tdx_prod_quote_SPR_E4.dat", 4, 2, 39, False, "6c62dec1b8191749", "6363b8043668a3ad"),
    ("tdx/gotdxguest/quote_v5_sample.dat", 5, 3, 0, False, "945eaacf5abc1f71", "7348651a34b2d2d3"),
    ("tdx/gotdxguest/ccel/cos-113-tdx-quote.dat", 4, 2, 3065, False, "00" * 64, "dae67181d3d65e07"),
    ("tdx/trustee/tdx_quote_4.dat", 4, 2, 0, True, "7c71fe2c86eff65a", "705ee9381b8633a9"),
    ("tdx/trustee/tdx_quote_5.dat", 5, 3, 0, False, "6d6ab13b", "dfba221b48a22af8"),
    ("tdx/trustee/tdx_quote_6.dat", 4, 2, 70, False, "26cae1c7", "21e8dead92d6c69d"),
    ("tdx/trustee_azure/td-quote.bin", 4, 2, 70, False, "9734504f161d104c", "024a32b070383331"),
    ("tdx/dcapqvl/tdx_quote_outdated", 5, 3, 0, False, "d2142b64", "273828c4"),
    ("tdx/dcapqvl/quote-from-tappd.derived.bin", 4, 2, 70, False, "7668c6b4", None),
    ("tdx/dcapqvl/tdx-quote.derived.bin", 4, 2, 70, False, "7148f47e", "7ba9e262"),
    ("sgx/trustee/occlum_quote.dat", 3, 1, 0, True, b"test".hex() + "00" * 60, "8f173e4613ff05c5"),
    ("sgx/steward/xeon.quote.dat", 3, 1, 0, False, "e8fb117d", "4046ea255f045513"),
]


@pytest.mark.parametrize(("path", "version", "body_type", "trailing", "debug", "rd", "mr"), PARSE_CASES)
def test_real_quotes_parse_to_documented_fields(
    vectors: Path,
    path: str,
    version: int,
    body_type: int,
    trailing: int,
    debug: bool,
    rd: str,
    mr: str | None,
) -> None:
    q = parse_quote((vectors / path).read_bytes())
    assert (q.header.version, q.body_type, q.trailing, q.body.debug) == (version, body_type, trailing, debug)
    assert q.body.report_data.hex().startswith(rd)
    measurement = q.body.mrtd if q.is_tdx else q.body.mrenclave  # type: ignore[union-attr]
    if mr is not None:
        assert measurement.hex().startswith(mr)
    assert q.signature.pck_cert_chain.startswith(b"-----BEGIN CERTIFICATE-----")


def test_debug_td_from_real_hardware_is_refused_unless_allowed(vectors: Path, intel_bundles) -> None:
    """trustee's tdx_quote_4 is a debug TD (TD_ATTRIBUTES bit 0) on FMSPC 50806f000000, the SPR E4
    bundle's platform, whose collateral (2023-07) covers it: every other check passes (UpToDate, computed
    here with Intel's matching rules; not asserted by the source repo), and debug is refused by default."""
    quote = (vectors / "tdx/trustee/tdx_quote_4.dat").read_bytes()
    bundle = intel_bundles["tdx-gotdx-spr-e4"]
    with pytest.raises(VerificationFailed) as e:
        verify_dcap_quote(quote, collateral=bundle.collateral, at=bundle.at)
    assert e.value.check == "dcap.debug"
    claims = verify_dcap_quote(quote, collateral=bundle.collateral, at=bundle.at, allow_debug=True).claims
    assert claims.debug is True and claims.tcb_status == TcbStatus.UP_TO_DATE
