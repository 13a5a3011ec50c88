"""The hash-chained log of earlier Donjon versions, read once to convert it (``log migrate``).

Each old entry's hash was ``SHA-256(previous hash || {"record":<record>,"seq":<n>,"time":<t>})``
over the canonical JSON of the entry, the first previous hash 32 zero bytes. Those
canonical entry bytes are exactly what the transparency log stores as a leaf
(:func:`donjon.tlog.entry.entry_bytes`), so a converted entry keeps its bytes.
:func:`legacy_entries` yields them only while the chain verifies: a broken chain
is refused, not converted (converting would launder the tampering into a signed
tree).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from donjon.steward.log import LogCorrupt
from donjon.tlog.entry import EntryError, entry_bytes, parse_entry

__all__ = ["GENESIS", "LegacyRow", "legacy_entries"]

GENESIS = bytes(32)
#: A row of the old table: (seq, time, record JSON text, prev_hash, hash).
LegacyRow = tuple[int, str, str, bytes, bytes]


def legacy_entries(rows: Iterable[LegacyRow]) -> Iterator[bytes]:
    """The entry bytes of each old row, in order, checked link by link; :class:`LogCorrupt` at a break."""
    prev = GENESIS
    expected = 1
    for seq, time, record, prev_hash, digest in rows:
        if seq != expected:
            raise LogCorrupt(expected, "chain.missing", f"entry {expected} is missing (next is {seq})")
        if prev_hash != prev:
            raise LogCorrupt(seq, "chain.link", "the previous-hash field does not match the previous entry")
        try:
            data = entry_bytes(seq, time, record.encode("utf-8"))
            parse_entry(data)
        except (EntryError, UnicodeEncodeError) as e:
            raise LogCorrupt(seq, "chain.entry", f"the entry is not canonical JSON: {e}") from e
        if hashlib.sha256(prev + data).digest() != digest:
            raise LogCorrupt(seq, "chain.hash", "the entry's content does not match its hash")
        prev = digest
        expected += 1
        yield data
