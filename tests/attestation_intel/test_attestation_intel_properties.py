"""Property tests, one rule each, bounded so the file runs in seconds."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from donjon.attestation import AttestationError, MalformedEvidence
from donjon.attestation.dcap import parse_quote
from donjon.attestation.dcap_verify import verify_tdx_quote
from donjon.attestation.simtdx import SimulatedTdx

ISSUED = datetime(2026, 1, 1, tzinfo=UTC)
AT = ISSUED + timedelta(days=1)
SIM = SimulatedTdx(issued_at=ISSUED)
QUOTES = {v: SIM.quote(bytes(range(64)), version=v) for v in (4, 5)}
COLLATERAL = SIM.collateral()


def _signed_regions(quote: bytes) -> list[tuple[int, int]]:
    """Byte ranges covered by a signature or a binding: header+body, quote signature, attestation key,
    QE report, QE report signature, QE auth data (the PEM chain is excluded: base64 padding bits and
    line layout can change without changing a certificate)."""
    q = parse_quote(quote)
    sig = len(q.signed_data) + 4
    qe = sig + 128 + 6
    auth = qe + 384 + 64 + 2
    return [
        (0, len(q.signed_data)),
        (sig, qe - 6),
        (qe, auth - 2),
        (auth, auth + len(q.signature.qe_auth_data)),
    ]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=6000))
def test_any_bytes_parse_or_raise_malformed(data: bytes) -> None:
    """Any bytes either parse or raise MalformedEvidence."""
    with contextlib.suppress(MalformedEvidence):
        parse_quote(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([4, 5]), st.data())
def test_mutated_quotes_parse_or_raise_malformed(version: int, data: st.DataObject) -> None:
    """Any mutation of a valid quote (overwritten bytes, truncation) parses or raises MalformedEvidence."""
    quote = bytearray(QUOTES[version])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(quote) - 1))
        quote[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(quote) + 16))
    mutated = bytes(quote[:cut]) + bytes(max(0, cut - len(quote)))
    with contextlib.suppress(MalformedEvidence):
        parse_quote(mutated)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from([4, 5]), st.data())
def test_flipped_bit_in_a_signed_region_never_verifies(version: int, data: st.DataObject) -> None:
    """A flipped bit in a signed or bound region never verifies (and fails only with the library's errors)."""
    quote = QUOTES[version]
    start, end = data.draw(st.sampled_from(_signed_regions(quote)))
    pos = data.draw(st.integers(start, end - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = bytearray(quote)
    flipped[pos] ^= 1 << bit
    try:
        verify_tdx_quote(bytes(flipped), collateral=COLLATERAL, roots=[SIM.root], at=AT)
    except AttestationError:
        return
    raise AssertionError(f"quote with bit {bit} of byte {pos} flipped verified")


def test_unflipped_quotes_verify() -> None:
    """The property above is not vacuous: the originals verify."""
    for quote in QUOTES.values():
        assert verify_tdx_quote(quote, collateral=COLLATERAL, roots=[SIM.root], at=AT).claims.simulated


def _with_mutated_leaf_der(quote: bytes, pos: int, value: int) -> bytes:
    """Change one byte of the PCK leaf's DER, re-encoding its PEM base64 (same length)."""
    import base64

    start = quote.index(b"-----BEGIN CERTIFICATE-----\n") + 28
    end = quote.index(b"-----END CERTIFICATE-----", start)
    der = bytearray(base64.b64decode(quote[start:end]))
    der[pos % len(der)] = value
    pem = base64.b64encode(bytes(der))
    lines = b"\n".join(pem[i : i + 64] for i in range(0, len(pem), 64)) + b"\n"
    if len(lines) != end - start:
        return quote
    return quote[:start] + lines + quote[end:]


@pytest.mark.filterwarnings("ignore::UserWarning")  # cryptography warns about malformed name attributes
@settings(max_examples=150, deadline=None)
@given(st.integers(0, 4096), st.integers(0, 255))
def test_malformed_pck_certificate_fails_with_library_errors_only(pos: int, value: int) -> None:
    """Any change to the PCK leaf's DER fails with an AttestationError, never another exception."""
    quote = _with_mutated_leaf_der(QUOTES[4], pos, value)
    if quote == QUOTES[4]:
        return
    try:
        verify_tdx_quote(quote, collateral=COLLATERAL, roots=[SIM.root], at=AT)
    except AttestationError:
        return
    raise AssertionError("a quote with a modified PCK certificate verified")


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["tcb_info", "qe_identity", "pck_crl", "root_crl"]),
    st.integers(0, 1 << 16),
    st.integers(0, 255),
)
def test_mutated_collateral_fails_with_library_errors_only(field: str, pos: int, value: int) -> None:
    """A changed collateral byte either still verifies to the same claims or raises an AttestationError."""
    import dataclasses

    original: bytes = getattr(COLLATERAL, field)
    data = bytearray(original)
    data[pos % len(data)] = value
    collateral = dataclasses.replace(COLLATERAL, **{field: bytes(data)})
    expected = verify_tdx_quote(QUOTES[4], collateral=COLLATERAL, roots=[SIM.root], at=AT).claims
    try:
        got = verify_tdx_quote(QUOTES[4], collateral=collateral, roots=[SIM.root], at=AT).claims
    except AttestationError:
        return
    assert got == expected  # e.g. a hex digit of the signature changed case
