"""Recognising collateral by content: any bytes give documents or none, never an exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from donjon.collateral.recognize import MAX_DOCUMENT_BYTES, recognize
from donjon.collateral.validity import DocKind

pytestmark = pytest.mark.filterwarnings(
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("snp/gosevguest/vcek_milan.der", DocKind.CERTIFICATES),
        ("roots/amd/gosevguest_ask_ark_milan.pem", DocKind.CERTIFICATES),
        ("tdx/gotdxguest/pckcrl.der", DocKind.CRL),
        ("tdx/gotdxguest/tcbinfo_fmspc_50806f000000.json", DocKind.TCB_INFO),
        ("tdx/gotdxguest/qe_identity_tdx.json", DocKind.QE_IDENTITY),
        ("sgx/dcapqvl/sgx_quote.coll.qe_identity.json", DocKind.QE_IDENTITY),
    ],
)
def test_recorded_collateral_is_recognised(vectors: Path, path: str, kind: DocKind) -> None:
    docs = recognize((vectors / path).read_bytes(), "x")
    assert [d.kind for d in docs] == [kind]


@pytest.mark.parametrize(
    "path", ["snp/gosevguest/attestation.bin", "cca/ccatoken/cca_token.cbor", "tdx/trustee/tdx_quote_4.dat"]
)
def test_evidence_is_not_collateral(vectors: Path, path: str) -> None:
    assert recognize((vectors / path).read_bytes(), "x") == []


def test_deeply_nested_json_is_not_collateral() -> None:
    assert recognize(b'{"tcbInfo":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "x") == []


def test_oversized_input_is_not_parsed() -> None:
    assert recognize(b"{" + b" " * MAX_DOCUMENT_BYTES + b"}", "x") == []


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=512),
        st.binary(max_size=512).map(lambda b: b"\x30" + b),
        st.binary(max_size=256).map(lambda b: b"-----BEGIN CERTIFICATE-----\n" + b),
        st.binary(max_size=256).map(lambda b: b"-----BEGIN X509 CRL-----\n" + b),
        st.text(max_size=200).map(lambda t: ('{"tcbInfo": ' + t).encode()),
    )
)
def test_any_bytes_are_recognised_or_not_never_raise(data: bytes) -> None:
    """Rule: recognize() returns a (possibly empty) list of documents for any input; it never raises."""
    assert all(doc.kind in DocKind for doc in recognize(data, "fuzz"))
