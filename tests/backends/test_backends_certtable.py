"""The SEV-SNP certificate table (GHCB 4.1.8.1), as configfs-tsm's auxblob carries it."""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from donjon.backends.certtable import (
    ARK_GUID,
    ASK_GUID,
    CRL_GUID,
    ENTRY_SIZE,
    MAX_ENTRIES,
    VCEK_GUID,
    VLEK_GUID,
    build_cert_table,
    chain_from_table,
    parse_cert_table,
)
from donjon.backends.errors import MalformedPlatformOutput


def test_guids_are_the_ghcb_ones():
    assert str(VCEK_GUID) == "63da758d-e664-4564-adc5-f4b93be8accd"
    assert str(VLEK_GUID) == "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
    assert str(ASK_GUID) == "4ab7b379-bbac-4fe4-a02f-05aef327c782"
    assert str(ARK_GUID) == "c0b406a4-a803-4952-9743-3fb6014cd0ae"


def test_guid_wire_bytes_are_rfc4122_order():
    # go-sev-guest and virtee/sev read the 16 bytes big-endian; the mixed-endian EFI
    # form of the same text would put 8d75da63 first.
    table = build_cert_table([(VCEK_GUID, b"x")])
    assert table[:16] == bytes.fromhex("63da758de6644564adc5f4b93be8accd")
    assert struct.unpack_from("<II", table, 16) == (2 * ENTRY_SIZE, 1)
    assert table[ENTRY_SIZE : 2 * ENTRY_SIZE] == bytes(ENTRY_SIZE)


def test_real_milan_chain_round_trips_leaf_first(vectors, platforms):
    vcek, ask, ark = platforms.milan_chain_der(vectors)
    table = build_cert_table([(ARK_GUID, ark), (VCEK_GUID, vcek), (ASK_GUID, ask)])
    entries = parse_cert_table(table)
    assert [e.name for e in entries] == ["ark", "vcek", "ask"]
    assert chain_from_table(entries) == (vcek, ask, ark)


def test_vlek_table_gives_vlek_first():
    table = build_cert_table([(ASK_GUID, b"asvk"), (VLEK_GUID, b"vlek"), (ARK_GUID, b"ark")])
    assert chain_from_table(parse_cert_table(table)) == (b"vlek", b"asvk", b"ark")


def test_unknown_guid_is_parsed_but_not_in_the_chain():
    other = uuid.UUID("12345678-1234-5678-1234-567812345678")
    entries = parse_cert_table(build_cert_table([(other, b"?"), (CRL_GUID, b"crl"), (VCEK_GUID, b"v")]))
    assert [e.name for e in entries] == [str(other), "crl", "vcek"]
    assert chain_from_table(entries) == (b"v",)


def test_empty_blob_is_an_empty_table():
    assert parse_cert_table(b"") == ()
    assert parse_cert_table(bytes(ENTRY_SIZE)) == ()


def test_trailing_padding_after_the_certificates_is_accepted():
    table = build_cert_table([(VCEK_GUID, b"v")]) + bytes(4096)
    assert chain_from_table(parse_cert_table(table)) == (b"v",)


def _entry(guid: uuid.UUID, offset: int, length: int) -> bytes:
    return guid.bytes + struct.pack("<II", offset, length)


def test_missing_terminator_is_malformed():
    with pytest.raises(MalformedPlatformOutput, match="terminator"):
        parse_cert_table(_entry(VCEK_GUID, 48, 1))


def test_offset_into_the_table_is_malformed():
    blob = _entry(VCEK_GUID, 8, 4) + bytes(ENTRY_SIZE) + b"cert"
    with pytest.raises(MalformedPlatformOutput, match="points into the table"):
        parse_cert_table(blob)


def test_entry_past_the_end_is_malformed():
    blob = _entry(VCEK_GUID, 48, 100) + bytes(ENTRY_SIZE) + b"short"
    with pytest.raises(MalformedPlatformOutput, match="outside"):
        parse_cert_table(blob)


def test_empty_entry_is_malformed():
    blob = _entry(VCEK_GUID, 48, 0) + bytes(ENTRY_SIZE)
    with pytest.raises(MalformedPlatformOutput, match="outside"):
        parse_cert_table(blob)


def test_duplicate_guid_is_malformed():
    blob = build_cert_table([(VCEK_GUID, b"a"), (VCEK_GUID, b"b")])
    with pytest.raises(MalformedPlatformOutput, match="twice"):
        parse_cert_table(blob)


def test_too_many_entries_is_malformed():
    items = [(uuid.UUID(int=i + 1), b"c") for i in range(MAX_ENTRIES + 1)]
    with pytest.raises(MalformedPlatformOutput, match="more than"):
        parse_cert_table(build_cert_table(items))


@given(st.binary(max_size=400))
def test_any_bytes_parse_or_raise_malformed(blob):
    try:
        entries = parse_cert_table(blob)
    except MalformedPlatformOutput:
        return
    for entry in entries:
        assert entry.data and entry.data in blob


@given(
    st.lists(st.tuples(st.uuids(), st.binary(min_size=1, max_size=64)), max_size=8, unique_by=lambda t: t[0])
)
def test_build_then_parse_is_identity(items):
    items = [(g, d) for g, d in items if g.int != 0]
    entries = parse_cert_table(build_cert_table(items))
    assert [(e.guid, e.data) for e in entries] == items
