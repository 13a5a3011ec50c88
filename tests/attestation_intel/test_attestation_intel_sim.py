"""The simulated TDX vendor against the real verifier: every check it can exercise with keys we hold."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta

import pytest

from donjon.attestation import CollateralError, TcbStatus, TeeType, VerificationFailed
from donjon.attestation.dcap import parse_quote
from donjon.attestation.dcap_verify import verify_tdx_quote
from donjon.attestation.simtdx import SimulatedTdx

ISSUED = datetime(2026, 1, 1, tzinfo=UTC)
AT = ISSUED + timedelta(days=1)
_SIM: SimulatedTdx | None = None


def sim() -> SimulatedTdx:
    """One vendor for the whole module: building it is the expensive part."""
    global _SIM
    if _SIM is None:
        _SIM = SimulatedTdx(issued_at=ISSUED)
    return _SIM


def verify(quote: bytes, vendor: SimulatedTdx | None = None, **kw):  # type: ignore[no-untyped-def]
    v = vendor or sim()
    kw.setdefault("collateral", v.collateral())
    kw.setdefault("roots", [v.root])
    kw.setdefault("at", AT)
    return verify_tdx_quote(quote, **kw)


@pytest.mark.parametrize("version", [4, 5])
def test_simulated_quote_verifies_and_says_simulated(version: int) -> None:
    rd = os.urandom(64)
    mrtd, rtmrs = os.urandom(48), tuple(os.urandom(48) for _ in range(4))
    quote = sim().quote(rd, mrtd=mrtd, rtmrs=rtmrs, mrconfigid=b"\x01" * 48, version=version)
    claims = verify(quote, report_data=rd).claims
    assert claims.tee == TeeType.TDX and claims.simulated is True
    assert claims.tcb_status == TcbStatus.UP_TO_DATE and claims.advisory_ids == ()
    assert claims.report_data == rd and claims.measurement == mrtd
    assert [claims.measurements[f"rtmr{i}"] for i in range(4)] == list(rtmrs)
    assert claims.measurements["mrconfigid"] == b"\x01" * 48
    assert claims.platform == sim().fmspc.hex()
    assert ("mrservicetd" in claims.measurements) == (version == 5)
    assert parse_quote(quote).header.version == version


def test_simulated_root_is_not_trusted_implicitly() -> None:
    with pytest.raises(VerificationFailed) as e:
        verify(sim().quote(bytes(64)), roots=None)
    assert e.value.check == "dcap.pck_chain.root_pin"


def test_another_simulated_root_is_not_trusted() -> None:
    other = SimulatedTdx(issued_at=ISSUED)
    with pytest.raises(VerificationFailed) as e:
        verify(sim().quote(bytes(64)), roots=[other.root])
    assert e.value.check == "dcap.pck_chain.untrusted_root"


def test_collateral_from_another_vendor_is_refused() -> None:
    other = SimulatedTdx(issued_at=ISSUED)
    with pytest.raises(CollateralError):
        verify(
            sim().quote(bytes(64)),
            collateral=dataclasses.replace(sim().collateral(), tcb_info=other.tcb_info()),
        )
    with pytest.raises(CollateralError):
        verify(sim().quote(bytes(64)), collateral=other.collateral())


@pytest.mark.parametrize(
    ("revoked", "cert", "check"),
    [
        ("revoked_pck_serials", "pck", "dcap.pck_chain.revoked"),
        ("revoked_ca_serials", "pck_ca", "dcap.pck_chain.revoked"),
        ("revoked_ca_serials", "tcb_signing", "tcb_info.chain.revoked"),
    ],
    ids=["pck-certificate", "pck-ca", "tcb-signing-certificate"],
)
def test_revoked_certificate_is_refused(revoked: str, cert: str, check: str) -> None:
    s = sim()
    collateral = s.collateral(**{revoked: [getattr(s, cert).serial_number]})
    with pytest.raises(VerificationFailed) as e:
        verify(s.quote(bytes(64)), collateral=collateral)
    assert e.value.check == check


def test_unrelated_revocations_do_not_matter() -> None:
    s = sim()
    collateral = s.collateral(revoked_pck_serials=[12345], revoked_ca_serials=[67890])
    assert verify(s.quote(bytes(64)), collateral=collateral).claims.tcb_status == TcbStatus.UP_TO_DATE


def test_debug_td_is_refused_unless_allowed() -> None:
    debug_attributes = (1 | 1 << 28).to_bytes(8, "little")
    quote = sim().quote(bytes(64), td_attributes=debug_attributes)
    with pytest.raises(VerificationFailed) as e:
        verify(quote)
    assert e.value.check == "dcap.debug"
    assert verify(quote, allow_debug=True).claims.debug is True


def test_wrong_report_data_is_refused() -> None:
    with pytest.raises(VerificationFailed) as e:
        verify(sim().quote(b"\x01" * 64), report_data=b"\x02" * 64)
    assert e.value.check == "dcap.report_data"


@pytest.mark.parametrize("delta", [timedelta(days=31), timedelta(days=-2)])
def test_collateral_outside_its_window_is_refused(delta: timedelta) -> None:
    with pytest.raises((CollateralError, VerificationFailed)) as e:
        verify(sim().quote(bytes(64)), at=ISSUED + delta)
    assert e.value.check.endswith(("expired", "not_yet_valid"))


def test_reissued_collateral_verifies_later() -> None:
    later = ISSUED + timedelta(days=200)
    collateral = sim().collateral(issued_at=later)
    assert (
        verify(sim().quote(bytes(64)), collateral=collateral, at=later).claims.tcb_status
        == TcbStatus.UP_TO_DATE
    )


def test_missing_collateral_pieces_fail_closed() -> None:
    c = sim().collateral()
    with pytest.raises(CollateralError) as e:
        verify(sim().quote(bytes(64)), collateral=dataclasses.replace(c, qe_identity=None))
    assert e.value.check == "dcap.qe_identity.missing"
    with pytest.raises(CollateralError) as e:
        verify(sim().quote(bytes(64)), collateral=dataclasses.replace(c, pck_crl=None))
    assert e.value.check == "dcap.crl.missing"
    with pytest.raises(CollateralError):
        verify(sim().quote(bytes(64)), collateral=dataclasses.replace(c, root_crl=c.pck_crl))


def test_tcb_status_and_advisories_are_reported_and_filterable() -> None:
    s = SimulatedTdx(
        issued_at=ISSUED, tcb_status=TcbStatus.SW_HARDENING_NEEDED, advisory_ids=["INTEL-SA-00615"]
    )
    quote = s.quote(bytes(64))
    claims = verify(quote, s).claims
    assert claims.tcb_status == TcbStatus.SW_HARDENING_NEEDED and claims.advisory_ids == ("INTEL-SA-00615",)
    assert verify(quote, s, allowed_advisories=["INTEL-SA-00615"]).claims.advisory_ids == ("INTEL-SA-00615",)
    with pytest.raises(VerificationFailed):
        verify(quote, s, allowed_advisories=[])
    with pytest.raises(VerificationFailed):
        verify(quote, s, allowed_statuses=[TcbStatus.UP_TO_DATE])


def test_revoked_tcb_level_is_always_refused() -> None:
    s = SimulatedTdx(issued_at=ISSUED, tcb_status=TcbStatus.REVOKED)
    with pytest.raises(VerificationFailed) as e:
        verify(s.quote(bytes(64)), s, allowed_statuses=list(TcbStatus))
    assert e.value.check == "dcap.tcb.revoked"


def test_lower_tee_tcb_svn_falls_to_an_older_level() -> None:
    s = SimulatedTdx(issued_at=ISSUED)
    s.tee_tcb_svn = bytes([3, 1, 1]) + bytes(13)  # the TD runs an older SEAM loader than the TCB info's level
    claims = verify(s.quote(bytes(64)), s).claims
    assert claims.tcb_status == TcbStatus.OUT_OF_DATE and claims.advisory_ids == ("INTEL-SA-00000",)


def test_unknown_tdx_module_major_version_is_refused() -> None:
    s = SimulatedTdx(issued_at=ISSUED)
    s.tee_tcb_svn = bytes([3, 2, 2]) + bytes(13)  # TDX_02 has no identity in the TCB info
    with pytest.raises(VerificationFailed) as e:
        verify(s.quote(bytes(64)), s)
    assert e.value.check == "dcap.tdx_module.mismatch"


def test_pck_pcesvn_below_the_current_level_falls_to_the_old_level() -> None:
    s = SimulatedTdx(issued_at=ISSUED, pce_svn=13)  # the PCK certificate says PCESVN 13
    s.pce_svn = 14  # ...and TCB info issued from now on demands 14 for UpToDate
    collateral = dataclasses.replace(s.collateral(), tcb_info=s.tcb_info())
    claims = verify(s.quote(bytes(64)), s, collateral=collateral).claims
    assert claims.tcb_status == TcbStatus.OUT_OF_DATE and claims.raw["pce_svn"] == 13


def test_dump_and_load_round_trip() -> None:
    s = sim()
    loaded = SimulatedTdx.load(s.dump())
    assert loaded.root == s.root and loaded.pck == s.pck
    assert verify(loaded.quote(bytes(64)), s).claims.simulated is True
    with pytest.raises(ValueError):
        SimulatedTdx.load(b'{"format": "something else"}')
