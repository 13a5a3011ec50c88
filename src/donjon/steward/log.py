"""The Steward's decision log: append-only and hash-chained.

Every decision — issued or refused — is one entry. An entry's ``hash`` is
``SHA-256(previous hash || canonical JSON of the entry)``, where the entry is the
object ``{"seq", "time", "record"}`` serialised with sorted keys, no whitespace,
UTF-8, and the first entry's previous hash is 32 zero bytes. Changing, removing
or reordering any entry breaks every later hash, which :func:`verify_chain`
reports at the first break.

Stores (:class:`LogStore`) serialise appends *in the database* so that several
Steward replicas sharing one database never fork the chain, and return only after
the entry is durable (committed): the Steward hands out a certificate only then.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "GENESIS",
    "ChainBreak",
    "LogEntry",
    "LogStore",
    "NoLog",
    "canonical_json",
    "entry_hash",
    "entry_hash_canonical",
    "verify_chain",
]

GENESIS = bytes(32)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes the chain hashes."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def entry_hash(prev_hash: bytes, seq: int, time: str, record: Mapping[str, Any]) -> bytes:
    return entry_hash_canonical(prev_hash, seq, time, canonical_json(record))


def entry_hash_canonical(prev_hash: bytes, seq: int, time: str, record_json: bytes) -> bytes:
    """:func:`entry_hash` from the record's canonical JSON, without serialising it again.

    Keys sort as ``record``, ``seq``, ``time``, so the canonical entry is exactly
    ``{"record":<record>,"seq":<seq>,"time":<time>}``.
    """
    body = (
        b'{"record":'
        + record_json
        + b',"seq":'
        + str(seq).encode()
        + b',"time":'
        + canonical_json(time)
        + b"}"
    )
    return hashlib.sha256(prev_hash + body).digest()


@dataclass(frozen=True)
class LogEntry:
    seq: int
    time: str
    record: Mapping[str, Any]
    prev_hash: bytes
    hash: bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "prev_hash": self.prev_hash.hex(),
            "hash": self.hash.hex(),
            "record": dict(self.record),
        }


@dataclass(frozen=True)
class ChainBreak:
    """The first entry whose position or hash does not follow from the one before."""

    seq: int
    reason: str


class LogStore(Protocol):
    """Where entries live. ``append`` returns after the entry is committed."""

    def append(self, record: Mapping[str, Any], time: str) -> LogEntry: ...

    def entries(self, *, start: int = 1) -> Iterator[LogEntry]: ...

    def find_serial(self, serial: str) -> LogEntry | None: ...

    def close(self) -> None: ...


class NoLog:
    """A :class:`LogStore` for dry runs (``donjon policy test``, the benchmark's ceiling): it is
    empty and refuses every append, so nothing can be issued through it."""

    def append(self, record: Mapping[str, Any], time: str) -> LogEntry:
        raise RuntimeError("this Steward has no decision log: nothing can be issued or logged")

    def entries(self, *, start: int = 1) -> Iterator[LogEntry]:
        return iter(())

    def find_serial(self, serial: str) -> LogEntry | None:
        return None

    def close(self) -> None:
        pass


def verify_chain(entries: Iterable[LogEntry]) -> tuple[int, ChainBreak | None]:
    """Check a whole log from its first entry; return (entries checked, first break or None)."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    for entry in entries:
        if entry.seq != expected_seq:
            return count, ChainBreak(entry.seq, f"expected entry {expected_seq}, found {entry.seq}")
        if entry.prev_hash != prev:
            return count, ChainBreak(
                entry.seq, "previous-hash field does not match the previous entry's hash"
            )
        recomputed = entry_hash(prev, entry.seq, entry.time, entry.record)
        if recomputed != entry.hash:
            return count, ChainBreak(entry.seq, "entry content does not match its hash")
        prev = entry.hash
        expected_seq += 1
        count += 1
    return count, None
