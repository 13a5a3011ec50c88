"""Locating the report data and the PCK chain in real evidence (offsets from the public specs)."""

from __future__ import annotations

import itertools

import pytest
from cryptography import x509

from donjon.backends.base import EvidenceKind
from donjon.backends.errors import MalformedPlatformOutput
from donjon.backends.layout import dcap_pck_chain, report_data_of


def test_snp_report_data_of_real_reports(vectors):
    # MANIFEST.tsv: go-sev-guest's report binds 0102030405 then 59 zero bytes; trustee's
    # binds ec6c52d7...7e2 then 32 zero bytes.
    gosev = (vectors / "snp/gosevguest/attestation.bin").read_bytes()
    assert report_data_of(EvidenceKind.SNP_REPORT, gosev, backend="snp") == bytes.fromhex(
        "0102030405"
    ) + bytes(59)
    trustee = (vectors / "snp/trustee/test-report.bin").read_bytes()
    expected = bytes.fromhex("ec6c52d7533cc2c4f45be7849cf112ab82b2009fe7bd43e71ed08c14400ad7e2") + bytes(32)
    assert report_data_of(EvidenceKind.SNP_REPORT, trustee, backend="snp") == expected


def test_tdx_report_data_of_a_real_v4_quote(vectors):
    import json

    quote = (vectors / "tdx/trustee/tdx_quote_4.dat").read_bytes()
    claims = json.loads((vectors / "tdx/trustee/parse_tdx_claims_expected.json").read_text())
    expected = bytes.fromhex(claims["quote"]["body"]["report_data"])
    assert report_data_of(EvidenceKind.TDX_QUOTE, quote, backend="tdx") == expected


def test_tdx_report_data_of_a_real_v5_quote_skips_the_body_descriptor(vectors):
    quote = (vectors / "tdx/gotdxguest/quote_v5_sample.dat").read_bytes()
    assert int.from_bytes(quote[0:2], "little") == 5
    # Header (48) + body descriptor (6) + REPORTDATA offset in the TD report body (520).
    assert report_data_of(EvidenceKind.TDX_QUOTE, quote, backend="tdx") == quote[574:638]


def test_sgx_report_data_of_a_real_quote(vectors):
    quote = (vectors / "sgx/trustee/occlum_quote.dat").read_bytes()
    assert report_data_of(EvidenceKind.SGX_QUOTE, quote, backend="sgx") == b"test" + bytes(60)


def test_kind_and_tee_type_must_agree(vectors):
    sgx = (vectors / "sgx/trustee/occlum_quote.dat").read_bytes()
    with pytest.raises(MalformedPlatformOutput, match="tee_type"):
        report_data_of(EvidenceKind.TDX_QUOTE, sgx, backend="tdx")


def test_cca_report_data_is_not_located():
    assert report_data_of(EvidenceKind.CCA_TOKEN, b"\xd9\x01\x8f", backend="cca") is None


def test_short_snp_report_is_malformed():
    with pytest.raises(MalformedPlatformOutput, match="1184"):
        report_data_of(EvidenceKind.SNP_REPORT, bytes(1000), backend="snp")


@pytest.mark.parametrize(
    "path",
    [
        "tdx/gotdxguest/quote_v5_sample.dat",
        "tdx/gotdxguest/tdx_prod_quote_SPR_E4.dat",
        "tdx/trustee/tdx_quote_4.dat",
        "sgx/trustee/occlum_quote.dat",
        "sgx/steward/i5.quote.dat",
    ],
)
def test_pck_chain_of_real_quotes_is_leaf_first_to_the_intel_root(vectors, path):
    chain = [
        x509.load_der_x509_certificate(c) for c in dcap_pck_chain((vectors / path).read_bytes(), backend="x")
    ]
    assert len(chain) == 3
    cn = [c.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value for c in chain]
    assert cn[0] == "Intel SGX PCK Certificate"
    assert cn[2] == "Intel SGX Root CA"
    for child, parent in itertools.pairwise(chain):
        assert child.issuer == parent.subject


def test_every_truncation_of_a_quote_is_malformed_never_a_crash(vectors):
    quote = (vectors / "tdx/gotdxguest/quote_v5_sample.dat").read_bytes()
    for cut in range(0, len(quote), 97):
        with pytest.raises(MalformedPlatformOutput):
            dcap_pck_chain(quote[:cut], backend="tdx")


def test_unknown_quote_version_is_malformed(vectors):
    quote = bytearray((vectors / "sgx/trustee/occlum_quote.dat").read_bytes())
    quote[0:2] = (9).to_bytes(2, "little")
    with pytest.raises(MalformedPlatformOutput, match="version 9"):
        dcap_pck_chain(bytes(quote), backend="sgx")
