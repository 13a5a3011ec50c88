"""Bounded property tests for the Azure vTPM parsers and verifier (a few seconds); each states one rule."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from donjon.attestation import hcl, tpm
from donjon.attestation.azure import AzureOptions, parse_azure_evidence
from donjon.attestation.errors import AttestationError, MalformedEvidence
from donjon.attestation.verify import EvidenceKind, TrustRoots, verify_evidence

AT = datetime(2026, 11, 29, tzinfo=UTC)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_QUOTE = bytes.fromhex(
    "ff54434780180022000b96f6ef2a64ed155e38183fc0f0f240b2e63e4feb4c2ac230f14684fbe9348000096368616c6c656e6765"
)


def _recorded(snp_dir: Path) -> tuple[bytes, bytes]:
    doc = json.loads((snp_dir / "evidence-v1.json").read_bytes())
    raw = doc["hcl_report"]
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)), bytes.fromhex(doc["tpm_quote"]["message"])


#: Bytes shaped like an HCL report often enough to reach the inner checks.
hcl_like = st.one_of(
    st.binary(max_size=3000),
    st.builds(
        lambda body, version, report_type: (
            b"HCLA" + version.to_bytes(4, "little") + body[:0x4C0] + report_type.to_bytes(4, "little") + body
        ),
        st.binary(min_size=0, max_size=2600),
        st.integers(0, 3),
        st.integers(0, 5),
    ),
)


@FAST
@given(hcl_like)
@example(b"HCLA" + bytes(0x4D0))
def test_any_bytes_parse_as_hcl_or_raise_malformed(data: bytes) -> None:
    try:
        report = hcl.parse_hcl_report(data)
    except MalformedEvidence:
        return
    assert report.raw == data and len(report.hw_report) in (hcl.HW_REPORT_SIZE, hcl.TD_REPORT_SIZE)


@FAST
@given(
    st.one_of(st.binary(max_size=400), st.builds(lambda tail: _QUOTE[:12] + tail, st.binary(max_size=200)))
)
@example(_QUOTE)
def test_any_bytes_parse_as_tpm_quote_or_raise_malformed(data: bytes) -> None:
    try:
        quote = tpm.parse_quote(data)
    except MalformedEvidence:
        return
    assert quote.raw == data and all(s.hash_alg in tpm.HASH_SIZES for s in quote.selections)


@FAST
@given(st.binary(max_size=600))
@example(b"\x00\x14\x00\x0b\x00\x02ab")
def test_any_bytes_parse_as_tpm_signature_or_raise_malformed(data: bytes) -> None:
    try:
        sig = tpm.parse_signature(data)
    except MalformedEvidence:
        return
    assert sig.sig_alg == tpm.ALG_RSASSA and len(sig.signature) == len(data) - 6


@FAST
@given(
    st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
@example(b'{"keys":[{"kid":"HCLAkPub","kty":"RSA","n":"AQAB","e":"AQAB"}]}')
@example(b"[" * 5000)
def test_any_bytes_parse_as_runtime_claims_or_raise_malformed(data: bytes) -> None:
    try:
        hcl.parse_runtime_claims(data)
    except MalformedEvidence:
        return


@FAST
@given(st.binary(max_size=300), st.sampled_from(["sev-snp", "tdx"]))
@example(b'{"version": 1}', "tdx")
@example(b'{"quote": {"signature": [], "message": [256], "pcrs": []}, "report": [], "vcek": ""}', "sev-snp")
def test_any_bytes_parse_as_evidence_or_raise_malformed(data: bytes, tee: str) -> None:
    try:
        parse_azure_evidence(data, tee)
    except MalformedEvidence:
        return


@SLOW
@given(st.data())
def test_a_flipped_bit_in_a_signed_region_never_verifies(
    snp_dir: Path, amd_roots: TrustRoots, data: st.DataObject
) -> None:
    report, message = _recorded(snp_dir)
    doc = json.loads((snp_dir / "evidence-v1.json").read_bytes())
    where = data.draw(st.sampled_from(["hardware", "claims", "quote", "signature", "pcr"]))
    if where in ("hardware", "claims"):
        # The SNP report's signed bytes, or the runtime claims (bound by its REPORT_DATA).
        lo, hi = (0x20, 0x20 + 0x2A0) if where == "hardware" else (0x4D4, 0x4D4 + 1110)
        i = data.draw(st.integers(lo, hi - 1))
        raw = bytearray(report)
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
        doc["hcl_report"] = base64.urlsafe_b64encode(bytes(raw)).decode()
    elif where == "quote":
        raw = bytearray(message)
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        doc["tpm_quote"]["message"] = raw.hex()
    elif where == "signature":
        raw = bytearray.fromhex(doc["tpm_quote"]["signature"])
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        doc["tpm_quote"]["signature"] = raw.hex()
    else:
        n = data.draw(st.integers(0, 23))
        raw = bytearray.fromhex(doc["tpm_quote"]["pcrs"][n])
        raw[data.draw(st.integers(0, 31))] ^= 1 << data.draw(st.integers(0, 7))
        doc["tpm_quote"]["pcrs"][n] = raw.hex()
    try:
        verify_evidence(
            EvidenceKind.AZURE_SNP_VTPM,
            json.dumps(doc).encode(),
            roots=amd_roots,
            at=AT,
            options=AzureOptions(qualifying_data=b"challenge"),
        )
    except AttestationError:
        return
    raise AssertionError(f"a flipped bit in the {where} verified")
