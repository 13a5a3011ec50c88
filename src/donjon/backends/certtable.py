"""The SEV-SNP certificate table: what configfs-tsm's ``auxblob`` holds for ``sev_guest``.

Format (AMD "SEV-ES Guest-Hypervisor Communication Block Standardization"
v2.03, section 4.1.8.1 "MSG_REPORT_REQ", the extended guest request's
``cert_table``; Linux Documentation/ABI/testing/configfs-tsm-report, auxblob):
a sequence of 24-byte entries ``{ GUID guid (16 bytes); u32 offset; u32 length }``
(little-endian), ended by an all-zero entry, followed by the certificates.
Offsets count from the start of the table. GUIDs are stored in RFC 4122 byte
order (as go-sev-guest and virtee/sev read them).

Pure: bytes in, entries out, or :class:`MalformedPlatformOutput`.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from donjon.backends.errors import MalformedPlatformOutput

__all__ = [
    "ARK_GUID",
    "ASK_GUID",
    "CRL_GUID",
    "ENTRY_SIZE",
    "MAX_ENTRIES",
    "VCEK_GUID",
    "VLEK_GUID",
    "CertTableEntry",
    "build_cert_table",
    "chain_from_table",
    "parse_cert_table",
]

#: GHCB v2.03 section 4.1.8.1 certificate GUIDs (also AMD's sev-guest tools and virtee/sev).
VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
VLEK_GUID = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
ASK_GUID = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
ARK_GUID = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
#: A CRL some hosts attach (virtee/sev ``CertType::CRL``); not a certificate.
CRL_GUID = uuid.UUID("92f81bc3-5811-4d3d-97ff-d19f88dc67ea")

_NAMES = {VCEK_GUID: "vcek", VLEK_GUID: "vlek", ASK_GUID: "ask", ARK_GUID: "ark", CRL_GUID: "crl"}

ENTRY_SIZE = 24
#: A host attaches a handful of entries; more than this is not a certificate table.
MAX_ENTRIES = 64
_ENTRY = struct.Struct("<16sII")
_SOURCE = "auxblob (SEV-SNP certificate table)"


@dataclass(frozen=True)
class CertTableEntry:
    guid: uuid.UUID
    data: bytes

    @property
    def name(self) -> str:
        """``vcek``, ``vlek``, ``ask``, ``ark``, ``crl``, or the GUID for one Donjon does not know."""
        return _NAMES.get(self.guid, str(self.guid))


def parse_cert_table(blob: bytes, *, backend: str = "snp") -> tuple[CertTableEntry, ...]:
    """Split a certificate table into its entries, in table order.

    An empty blob is an empty table (a host that attaches no certificates).
    Every entry must lie inside the blob and after the table's terminator.
    """

    def bad(reason: str) -> MalformedPlatformOutput:
        return MalformedPlatformOutput(backend, f"{_SOURCE}: {reason}")

    if not blob:
        return ()
    raw: list[tuple[uuid.UUID, int, int]] = []
    pos = 0
    while True:
        if pos + ENTRY_SIZE > len(blob):
            raise bad(f"no all-zero terminator entry within {len(blob)} bytes")
        guid_bytes, offset, length = _ENTRY.unpack_from(blob, pos)
        pos += ENTRY_SIZE
        if guid_bytes == bytes(16) and offset == 0 and length == 0:
            break
        if len(raw) == MAX_ENTRIES:
            raise bad(f"more than {MAX_ENTRIES} entries")
        raw.append((uuid.UUID(bytes=guid_bytes), offset, length))
    entries = []
    seen: set[uuid.UUID] = set()
    for index, (guid, offset, length) in enumerate(raw):
        if guid in seen:
            raise bad(f"entry {index}: GUID {guid} appears twice")
        seen.add(guid)
        if offset < pos:
            raise bad(f"entry {index} ({guid}): offset {offset} points into the table (ends at {pos})")
        if length == 0 or offset + length > len(blob):
            raise bad(
                f"entry {index} ({guid}): bytes {offset}..{offset + length} outside the {len(blob)}-byte blob"
            )
        entries.append(CertTableEntry(guid, blob[offset : offset + length]))
    return tuple(entries)


def chain_from_table(entries: Sequence[CertTableEntry]) -> tuple[bytes, ...]:
    """The certificates, leaf first: VCEK or VLEK, then ASK (or ASVK), then ARK.

    Entries Donjon does not know (and the CRL) are left out; the Steward never
    needs them to verify a report, and it fetches its own revocation data.
    """
    by_guid = {entry.guid: entry.data for entry in entries}
    return tuple(by_guid[g] for g in (VCEK_GUID, VLEK_GUID, ASK_GUID, ARK_GUID) if g in by_guid)


def build_cert_table(entries: Iterable[tuple[uuid.UUID, bytes]]) -> bytes:
    """The inverse of :func:`parse_cert_table` (for the simulators and the tests' fake kernel)."""
    items = list(entries)
    header_size = ENTRY_SIZE * (len(items) + 1)
    header = bytearray()
    body = bytearray()
    for guid, data in items:
        header += _ENTRY.pack(guid.bytes, header_size + len(body), len(data))
        body += data
    header += bytes(ENTRY_SIZE)
    return bytes(header + body)
