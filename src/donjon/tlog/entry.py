"""The bytes of a log entry: canonical JSON, and a strict parser that refuses anything else.

An entry is the JSON object ``{"record": {...}, "seq": <n>, "time": "<RFC 3339>"}``
serialised with sorted keys, no white space, UTF-8, no NaN or infinities (the
form the hash-chained log hashed, so converted entries keep their bytes). These
bytes are the Merkle leaf. ``seq`` is 1-based: the leaf index is ``seq - 1``.

:func:`parse_entry` accepts exactly the bytes :func:`entry_bytes` produces:
duplicate keys, NaN, other white space or key order, escapes where the canonical
form has none — any second spelling of the same value — is refused, so one
entry has one meaning and one hash.

Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_ENTRY_BYTES", "Entry", "EntryError", "canonical_json", "entry_bytes", "parse_entry"]

#: Records hold digests, names and claims; a megabyte is far past any honest one.
MAX_ENTRY_BYTES = 1 << 20
#: Deeper JSON than this is not a record the Steward writes.
MAX_DEPTH = 32


class EntryError(ValueError):
    """Entry bytes that are not one canonical entry; ``check`` names what is wrong."""

    def __init__(self, check: str, reason: str) -> None:
        self.check = check
        self.reason = reason
        super().__init__(f"{check}: {reason}")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no white space, UTF-8, no NaN: the one encoding of a value."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


@dataclass(frozen=True)
class Entry:
    seq: int
    time: str
    record: Mapping[str, Any]

    @property
    def index(self) -> int:
        return self.seq - 1


def entry_bytes(seq: int, time: str, record_json: bytes) -> bytes:
    """The canonical entry from the record's canonical JSON (not serialised again).

    Keys sort as ``record``, ``seq``, ``time``.
    """
    if seq < 1:
        raise EntryError("entry.seq", "seq starts at 1")
    return (
        b'{"record":'
        + record_json
        + b',"seq":'
        + str(seq).encode()
        + b',"time":'
        + canonical_json(time)
        + b"}"
    )


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise EntryError("entry.duplicate_key", f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise EntryError("entry.number", f"{name} is not a JSON number")


def _depth(value: Any, level: int = 0) -> None:
    if level > MAX_DEPTH:
        raise EntryError("entry.depth", f"nested deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        for v in value.values():
            _depth(v, level + 1)
    elif isinstance(value, list):
        for v in value:
            _depth(v, level + 1)


def parse_entry(data: bytes) -> Entry:
    """The entry ``data`` encodes, or :class:`EntryError`; ``data`` must be canonical."""
    if len(data) > MAX_ENTRY_BYTES:
        raise EntryError("entry.size", f"an entry of {len(data)} bytes exceeds {MAX_ENTRY_BYTES}")
    # The C parser bounds its own recursion (RecursionError, caught below); the depth of what
    # it returns is bounded after.
    try:
        text = data.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except EntryError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise EntryError("entry.json", f"not JSON: {e}") from e
    if not isinstance(value, dict) or set(value) != {"record", "seq", "time"}:
        raise EntryError("entry.shape", 'an entry is exactly {"record", "seq", "time"}')
    seq, time, record = value["seq"], value["time"], value["record"]
    if type(seq) is not int or seq < 1:
        raise EntryError("entry.seq", "seq is not a positive integer")
    if not isinstance(time, str) or not isinstance(record, dict):
        raise EntryError("entry.shape", "time must be a string and record an object")
    _depth(record)
    try:
        again = canonical_json(value)
    except (ValueError, UnicodeEncodeError) as e:
        raise EntryError("entry.json", f"cannot be encoded canonically: {e}") from e
    if again != data:
        raise EntryError("entry.canonical", "the entry is not in canonical form (order, spacing or escapes)")
    return Entry(seq=seq, time=time, record=record)
