"""``donjon.dice``: the TCG DICE MultiTcbInfo extension, encoded and read back."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from donjon.dice import (
    MAX_DICE_BYTES,
    DiceError,
    Fwid,
    TcbInfo,
    claims_values,
    decode_multi_tcb_info,
    encode_multi_tcb_info,
    encode_with_pyasn1,
    workload_digest_of,
)

WORKLOAD = hashlib.sha256(b"workload").digest()
TEE = TcbInfo(
    vendor="AMD",
    model="SEV-SNP",
    version="bootloader=4 tee=0 snp=24 microcode=219",
    svn=0xDB18000000000004,
    layer=0,
    fwids=(Fwid.of(hashlib.sha384(b"image").digest()),),
)
APP = TcbInfo(vendor="Donjon", model="workload", layer=1, fwids=(Fwid("sha256", WORKLOAD),))


def test_round_trip_and_claims() -> None:
    der = encode_multi_tcb_info([TEE, APP])
    assert decode_multi_tcb_info(der) == (TEE, APP)
    values = claims_values(decode_multi_tcb_info(der))
    assert values["workload_digest"] == WORKLOAD.hex() and values["tee"] == "sev-snp"
    assert values["svn"] == 0xDB18000000000004 and values["simulated"] is False
    assert values["not_secure"] is False


def test_not_secure_is_one_named_bit_in_der() -> None:
    der = encode_multi_tcb_info([TcbInfo(vendor="Donjon", model="workload", not_secure=True)])
    # [7] IMPLICIT BIT STRING: length 2, 6 unused bits, 0b01000000 (X.690 11.2.2: no trailing zeros).
    assert der.endswith(b"\x87\x02\x06\x40")
    assert decode_multi_tcb_info(der)[0].not_secure


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ([APP, APP], "more than one workload entry"),
        ([TcbInfo(vendor="Donjon", model="workload", fwids=(Fwid.of(bytes(48)),))], "exactly one SHA-256"),
    ],
)
def test_workload_entry_must_be_unambiguous(entries: list[TcbInfo], why: str) -> None:
    with pytest.raises(DiceError, match=why):
        workload_digest_of(decode_multi_tcb_info(encode_multi_tcb_info(entries)))


def test_bounds() -> None:
    with pytest.raises(DiceError, match="exceeds"):
        decode_multi_tcb_info(b"\x30" * (MAX_DICE_BYTES + 1))
    with pytest.raises(DiceError):
        encode_multi_tcb_info([])
    with pytest.raises(DiceError):
        Fwid.of(b"\x00" * 20)
    with pytest.raises(DiceError, match="bytes after"):
        decode_multi_tcb_info(encode_multi_tcb_info([APP]) + b"\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_decode_or_raise_dice_error(data: bytes) -> None:
    """Rule: an extension value from a peer either parses or raises DiceError, nothing else."""
    try:
        entries = decode_multi_tcb_info(data)
    except DiceError:
        return
    with contextlib.suppress(DiceError):
        claims_values(entries)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=len(encode_multi_tcb_info([TEE, APP])) - 1), st.integers(0, 7))
def test_a_flipped_bit_never_escapes_as_another_exception(index: int, bit: int) -> None:
    der = bytearray(encode_multi_tcb_info([TEE, APP]))
    der[index] ^= 1 << bit
    with contextlib.suppress(DiceError):
        decode_multi_tcb_info(bytes(der))


_fwids = st.lists(
    st.sampled_from([32, 48, 64]).flatmap(lambda n: st.binary(min_size=n, max_size=n)).map(Fwid.of),
    max_size=3,
)
_entries = st.builds(
    TcbInfo,
    vendor=st.none() | st.text(max_size=200),
    model=st.none() | st.text(max_size=40),
    version=st.none() | st.text(max_size=300),
    svn=st.none() | st.integers(min_value=0, max_value=2**130),
    layer=st.none() | st.integers(min_value=0, max_value=300),
    fwids=_fwids.map(tuple),
    not_secure=st.booleans(),
    vendor_info=st.none() | st.binary(max_size=300),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_entries, min_size=1, max_size=4))
def test_the_direct_encoder_writes_exactly_what_pyasn1_writes(entries: list[TcbInfo]) -> None:
    """Rule: the Steward's fast DER encoder and pyasn1's (the reference) agree byte for byte,
    and the result decodes to the same values."""
    der = encode_multi_tcb_info(entries)
    assert der == encode_with_pyasn1(entries)
    assert decode_multi_tcb_info(der) == tuple(entries)
