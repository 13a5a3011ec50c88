"""TCB Info / QE Identity documents, Intel's matching rules, and the PCK SGX extension parser."""

from __future__ import annotations

import json

import pytest

from donjon.attestation import CollateralError, MalformedEvidence, TcbStatus, VerificationFailed
from donjon.attestation.intel import parse_sgx_extensions
from donjon.attestation.simtdx import sgx_extension_der
from donjon.attestation.tcbinfo import (
    converge,
    match_qe_identity,
    match_tcb_level,
    parse_qe_identity,
    parse_tcb_info,
    split_signed_document,
)

SIG = "ab" * 64


def _level(
    sgx: list[int], pce: int, tdx: list[int] | None, status: str, adv: list[str] | None = None
) -> dict:
    tcb: dict = {"sgxtcbcomponents": [{"svn": v} for v in sgx], "pcesvn": pce}
    if tdx is not None:
        tcb["tdxtcbcomponents"] = [{"svn": v} for v in tdx]
    out: dict = {"tcb": tcb, "tcbDate": "2024-01-01T00:00:00Z", "tcbStatus": status}
    if adv:
        out["advisoryIDs"] = adv
    return out


def _info(levels: list[dict], tee: str = "TDX", identities: list[dict] | None = None) -> bytes:
    body: dict = {
        "id": tee, "version": 3, "issueDate": "2025-01-01T00:00:00Z", "nextUpdate": "2025-02-01T00:00:00Z",
        "fmspc": "00806F050000", "pceId": "0000", "tcbType": 0, "tcbEvaluationDataNumber": 17,
        "tcbLevels": levels,
    }  # fmt: skip
    if tee == "TDX":  # TDX TCB Info v3 always carries the module-version-0 identity
        body["tdxModule"] = {"mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8}
    if identities is not None:
        body["tdxModuleIdentities"] = identities
    return json.dumps(body, separators=(",", ":")).encode()


def _module(major: int, levels: list[tuple[int, str]]) -> dict:
    return {
        "id": f"TDX_{major:02d}", "mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8,
        "tcbLevels": [{"tcb": {"isvsvn": svn}, "tcbDate": "2024-01-01T00:00:00Z", "tcbStatus": st}
                      for svn, st in levels],
    }  # fmt: skip


Z16 = [0] * 16
SEAM = {"mrsignerseam": bytes(48), "seam_attributes": bytes(8)}


# --- signed document splitting ---------------------------------------------------------------------------


def test_compact_member_is_returned_byte_exact() -> None:
    member = b'{"id":"TDX","x":1.50,"s":"a\\/b"}'  # not what json.dumps would produce: kept as served
    signed, sig = split_signed_document(
        b'{"tcbInfo":' + member + b',"signature":"' + SIG.encode() + b'"}', "tcbInfo"
    )
    assert signed == member and sig == bytes.fromhex(SIG)


def test_pretty_printed_member_is_reserialised_compactly_in_order() -> None:
    doc = b'{\n  "tcbInfo": {\n    "b": 1,\n    "a": [1, 2]\n  },\n  "signature": "' + SIG.encode() + b'"\n}'
    signed, _ = split_signed_document(doc, "tcbInfo")
    assert signed == b'{"b":1,"a":[1,2]}'


@pytest.mark.parametrize(
    "doc",
    [
        b"",
        b"[]",
        b'{"tcbInfo":{}}',
        b'{"tcbInfo":{},"signature":"zz"}',
        b'{"tcbInfo":{"a":1,"a":2},"signature":"' + SIG.encode() + b'"}',
        b'{"tcbInfo":{},"tcbInfo":{},"signature":"' + SIG.encode() + b'"}',
        b'{"tcbInfo":{},"signature":"' + SIG.encode() + b'"} trailing',
        b'{"tcbInfo":[],"signature":"' + SIG.encode() + b'"}',
        b'{"tcbInfo":{"n":NaN},"signature":"' + SIG.encode() + b'"}',
        b"\xff\xfe",
    ],
)
def test_malformed_signed_documents_are_collateral_errors(doc: bytes) -> None:
    with pytest.raises(CollateralError):
        split_signed_document(doc, "tcbInfo")


def test_tcb_info_fields_are_typed_and_bounded() -> None:
    good = json.loads(_info([_level(Z16, 0, Z16, "UpToDate")]))
    for field, bad in [("fmspc", "00806F05"), ("version", 9), ("tcbLevels", []), ("issueDate", "yesterday")]:
        with pytest.raises(CollateralError):
            parse_tcb_info(json.dumps({**good, field: bad}).encode())
    with pytest.raises(CollateralError):
        parse_tcb_info(_info([_level(Z16, 0, Z16, "Fine")]))
    with pytest.raises(CollateralError):
        parse_tcb_info(_info([_level([0] * 15, 0, Z16, "UpToDate")]))


# --- TCB level matching (Intel QVL TcbLevelCheck / TdxModuleCheck) ----------------------------------------


def test_sgx_level_needs_every_component_and_pcesvn() -> None:
    info = parse_tcb_info(_info([
        _level([5, 5] + [0] * 14, 10, None, "UpToDate"),
        _level([3, 3] + [0] * 14, 5, None, "OutOfDate", ["INTEL-SA-1"]),
    ], tee="SGX"))  # fmt: skip
    assert match_tcb_level(info, [5, 5] + [0] * 14, 10).status == TcbStatus.UP_TO_DATE
    # Per component, not lexicographic: [6, 4] is not >= [5, 5].
    m = match_tcb_level(info, [6, 4] + [0] * 14, 10)
    assert m.status == TcbStatus.OUT_OF_DATE and m.advisory_ids == ("INTEL-SA-1",)
    assert match_tcb_level(info, [5, 5] + [0] * 14, 9).status == TcbStatus.OUT_OF_DATE
    with pytest.raises(VerificationFailed) as e:
        match_tcb_level(info, [2, 9] + [0] * 14, 99)
    assert e.value.check == "dcap.tcb.no_matching_level"


def test_tdx_compares_tee_tcb_svn_bytes_0_and_1_only_without_a_module_version() -> None:
    tdx = [4, 0, 5] + [0] * 13
    info = parse_tcb_info(
        _info(
            [_level(Z16, 0, tdx, "UpToDate"), _level(Z16, 0, Z16, "OutOfDate")],
            identities=[_module(1, [(0, "UpToDate")])],
        )
    )
    # Module major 0: byte 0 (3 < 4) is compared, so only the old level matches.
    assert (
        match_tcb_level(info, Z16, 0, tee_tcb_svn=bytes([3, 0, 5]) + bytes(13), **SEAM).status
        == TcbStatus.OUT_OF_DATE
    )
    # Module major 1: bytes 0 and 1 are the module's, judged by TDX_01 instead.
    assert (
        match_tcb_level(info, Z16, 0, tee_tcb_svn=bytes([3, 1, 5]) + bytes(13), **SEAM).status
        == TcbStatus.UP_TO_DATE
    )
    # Byte 2 (SEAM loader) is always compared.
    assert (
        match_tcb_level(info, Z16, 0, tee_tcb_svn=bytes([9, 1, 4]) + bytes(13), **SEAM).status
        == TcbStatus.OUT_OF_DATE
    )


def test_tdx_module_identity_status_converges() -> None:
    info = parse_tcb_info(
        _info(
            [_level(Z16, 0, Z16, "UpToDate", ["INTEL-SA-2"])],
            identities=[_module(3, [(5, "UpToDate"), (2, "OutOfDate")])],
        )
    )
    assert (
        match_tcb_level(info, Z16, 0, tee_tcb_svn=bytes([5, 3]) + bytes(14), **SEAM).status
        == TcbStatus.UP_TO_DATE
    )
    m = match_tcb_level(info, Z16, 0, tee_tcb_svn=bytes([3, 3]) + bytes(14), **SEAM)
    assert m.status == TcbStatus.OUT_OF_DATE and m.module_status == TcbStatus.OUT_OF_DATE
    assert m.advisory_ids == ("INTEL-SA-2",)
    with pytest.raises(VerificationFailed) as e:
        match_tcb_level(info, Z16, 0, tee_tcb_svn=bytes([1, 3]) + bytes(14), **SEAM)
    assert e.value.check == "dcap.tcb.no_matching_level"
    with pytest.raises(VerificationFailed) as e:
        match_tcb_level(
            info,
            Z16,
            0,
            tee_tcb_svn=bytes([5, 3]) + bytes(14),
            mrsignerseam=b"\x01" * 48,
            seam_attributes=bytes(8),
        )
    assert e.value.check == "dcap.tdx_module.mismatch"


@pytest.mark.parametrize(
    ("status", "other", "expected"),
    [
        ("UpToDate", "UpToDate", "UpToDate"),
        ("UpToDate", "OutOfDate", "OutOfDate"),
        ("SWHardeningNeeded", "OutOfDate", "OutOfDate"),
        ("ConfigurationNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("OutOfDate", "UpToDate", "OutOfDate"),
        ("ConfigurationAndSWHardeningNeeded", "UpToDate", "ConfigurationAndSWHardeningNeeded"),
        ("UpToDate", "Revoked", "Revoked"),
        ("Revoked", "UpToDate", "Revoked"),
    ],
)
def test_status_convergence_follows_intel(status: str, other: str, expected: str) -> None:
    assert converge(TcbStatus(status), TcbStatus(other)) == TcbStatus(expected)


# --- QE identity --------------------------------------------------------------------------------------------


def _identity() -> bytes:
    return json.dumps({
        "id": "TD_QE", "version": 2, "issueDate": "2025-01-01T00:00:00Z",
        "nextUpdate": "2025-02-01T00:00:00Z", "tcbEvaluationDataNumber": 17,
        "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
        "attributes": "11000000000000000000000000000000",
        "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": "AA" * 32, "isvprodid": 2,
        "tcbLevels": [{"tcb": {"isvsvn": 4}, "tcbDate": "2024-01-01T00:00:00Z", "tcbStatus": "UpToDate"},
                      {"tcb": {"isvsvn": 2}, "tcbDate": "2023-01-01T00:00:00Z", "tcbStatus": "OutOfDate",
                       "advisoryIDs": ["INTEL-SA-3"]}],
    }).encode()  # fmt: skip


def test_qe_identity_matching() -> None:
    ident = parse_qe_identity(_identity())
    attrs = bytes.fromhex("11000000000000000000000000000000")
    assert match_qe_identity(ident, 0, attrs, b"\xaa" * 32, 2, 5).status == TcbStatus.UP_TO_DATE
    level = match_qe_identity(ident, 0, attrs, b"\xaa" * 32, 2, 3)
    assert level.status == TcbStatus.OUT_OF_DATE and level.advisory_ids == ("INTEL-SA-3",)
    # Bits outside the mask do not matter (the second half of ATTRIBUTES is XFRM).
    assert (
        match_qe_identity(ident, 0, attrs[:8] + b"\xff" * 8, b"\xaa" * 32, 2, 4).status
        == TcbStatus.UP_TO_DATE
    )
    debug = bytes([0x13]) + attrs[1:]
    for args, check in [
        ((1, attrs, b"\xaa" * 32, 2, 4), "dcap.qe_identity.miscselect"),
        ((0, debug, b"\xaa" * 32, 2, 4), "dcap.qe_identity.attributes"),
        ((0, attrs, b"\xbb" * 32, 2, 4), "dcap.qe_identity.mrsigner"),
        ((0, attrs, b"\xaa" * 32, 1, 4), "dcap.qe_identity.isvprodid"),
        ((0, attrs, b"\xaa" * 32, 2, 1), "dcap.qe_identity.no_matching_level"),
    ]:
        with pytest.raises(VerificationFailed) as e:
            match_qe_identity(ident, *args)
        assert e.value.check == check


# --- PCK SGX extensions -------------------------------------------------------------------------------


def _ext(**kw) -> bytes:  # type: ignore[no-untyped-def]
    args = {"ppid": b"\x01" * 16, "svns": list(range(16)), "pce_svn": 300, "pce_id": b"\x00\x01",
            "fmspc": bytes.fromhex("00906ed50000"), "sgx_type": 1}  # fmt: skip
    return sgx_extension_der(**{**args, **kw})


def test_sgx_extensions_round_trip() -> None:
    ext = parse_sgx_extensions(_ext())
    assert ext.tcb_comp_svns == tuple(range(16)) and ext.pce_svn == 300
    assert ext.fmspc.hex() == "00906ed50000" and ext.pce_id == b"\x00\x01" and ext.sgx_type == 1
    assert ext.cpu_svn == bytes(range(16))


def test_malformed_sgx_extensions_are_malformed_evidence() -> None:
    good = _ext()
    for bad in [b"", good[:-1], good + b"\x00", b"\x04\x00", good[:2] + b"\x30\x80" + good[4:],
                _ext(fmspc=b"\x00" * 5), _ext(ppid=b"\x00" * 15)]:  # fmt: skip
        with pytest.raises(MalformedEvidence):
            parse_sgx_extensions(bad)
    # Duplicate PPID entry.
    inner = good[4:] if good[1] == 0x82 else good[3:] if good[1] == 0x81 else good[2:]
    first = inner[: 2 + inner[1]]
    body = first + inner
    dup = b"\x30\x82" + len(body).to_bytes(2, "big") + body
    with pytest.raises(MalformedEvidence):
        parse_sgx_extensions(dup)
