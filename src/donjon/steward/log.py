"""The Steward's decision log: a transparency log (DESIGN.md "The Steward's log is a transparency log").

Every decision — issued or refused — is one entry, and the entry's stored bytes
(canonical JSON, :mod:`donjon.tlog.entry`) are a leaf of an RFC 9162 Merkle tree.
After each commit the Steward signs a checkpoint (C2SP ``tlog-checkpoint``) of the
new tree with its log key (Ed25519, not the CA key) and stores it with the
entries, in the same transaction. Look-up columns (``seq``, ``serial``) are
conveniences: every read parses the hashed bytes strictly and checks the columns
against them (:class:`LogCorrupt` otherwise).

:func:`verify_log` rebuilds the tree from the stored bytes and checks every
stored tree node and every signed checkpoint against it: truncation, rewritten
or reordered entries, re-pointed columns and non-canonical bytes are reported
with the entry where they are found. What it cannot see — a rollback that also
removed every later checkpoint — a witness holding an older checkpoint sees
(``donjon log audit``).

Stores (:class:`LogStore`) serialise appends *in the database* so that several
Steward replicas sharing one database grow one tree, and return only after the
entry is durable (committed): the Steward hands out a certificate only then.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from donjon.tlog.checkpoint import NoteError, NoteVerifier, open_checkpoint
from donjon.tlog.entry import EntryError, parse_entry
from donjon.tlog.merkle import EMPTY_ROOT, Frontier, leaf_hash

__all__ = [
    "LegacyLog",
    "LogCorrupt",
    "LogEntry",
    "LogStore",
    "NoLog",
    "Verified",
    "entry_from_row",
    "serial_of",
    "verify_log",
]


class LogCorrupt(Exception):
    """The stored log is not what was logged; ``seq`` is the entry (or tree size) where it shows."""

    def __init__(self, seq: int | None, check: str, reason: str) -> None:
        self.seq = seq
        self.check = check
        self.reason = reason
        where = f"entry {seq}: " if seq is not None else ""
        super().__init__(f"{where}{reason} ({check})")


class LegacyLog(Exception):
    """The database holds a log in the hash-chained format of earlier versions."""

    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(
            f"{where} holds a hash-chained decision log of an earlier Donjon version; convert it once "
            "with `donjon steward log migrate --config steward.toml` (which also creates the log key)"
        )


@dataclass(frozen=True)
class LogEntry:
    """One decision: its position, time and record, and the exact bytes that were hashed."""

    seq: int
    time: str
    record: Mapping[str, Any]
    data: bytes

    @property
    def index(self) -> int:
        """The leaf index in the tree (``seq - 1``)."""
        return self.seq - 1

    @property
    def leaf_hash(self) -> bytes:
        return leaf_hash(self.data)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "leaf_hash": self.leaf_hash.hex(),
            "record": dict(self.record),
        }


def serial_of(record: Mapping[str, Any]) -> str | None:
    """The value of the ``serial`` look-up column for a record."""
    serial = record.get("serial")
    return serial if isinstance(serial, str) else None


def entry_from_row(seq: int, data: bytes, serial: str | None) -> LogEntry:
    """A row checked against its bytes: strict parse, then every look-up column, or :class:`LogCorrupt`."""
    try:
        entry = parse_entry(data)
    except EntryError as e:
        raise LogCorrupt(seq, e.check, e.reason) from e
    if entry.seq != seq:
        raise LogCorrupt(
            seq, "entry.seq", f"the row at seq {seq} holds the bytes of entry {entry.seq} (rows moved)"
        )
    if serial_of(entry.record) != serial:
        raise LogCorrupt(
            seq,
            "entry.serial",
            f"the serial column says {serial!r} but the hashed entry says {serial_of(entry.record)!r}",
        )
    return LogEntry(seq=seq, time=entry.time, record=entry.record, data=data)


class LogStore(Protocol):
    """Where entries live. ``append`` returns after the entry is committed and a checkpoint signed."""

    def append(self, record: Mapping[str, Any], time: str) -> LogEntry: ...

    def entries(self, *, start: int = 1) -> Iterator[LogEntry]: ...

    def find_serial(self, serial: str) -> LogEntry | None: ...

    def checkpoint(self) -> bytes | None:
        """The latest signed checkpoint (a C2SP signed note), None for a log without one."""
        ...

    def inclusion_proof(self, index: int, size: int) -> list[bytes]: ...

    def consistency_proof(self, first: int, second: int) -> list[bytes]: ...

    @property
    def verifier(self) -> NoteVerifier | None:
        """The key the checkpoints are signed with (None: a store that cannot sign)."""
        ...

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

    def checkpoint(self) -> bytes | None:
        return None

    @property
    def verifier(self) -> NoteVerifier | None:
        return None

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        raise LogCorrupt(None, "tree.empty", "this Steward has no decision log")

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        raise LogCorrupt(None, "tree.empty", "this Steward has no decision log")

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Verified:
    """What :func:`verify_log` established: ``size`` entries, their ``root``, the signed checkpoints."""

    size: int
    root: bytes
    checkpoints: int
    latest: int


def _open(note: bytes, size: int, verifier: NoteVerifier) -> bytes:
    try:
        checkpoint = open_checkpoint(note, verifier)
    except NoteError as e:
        raise LogCorrupt(
            None,
            "checkpoint.signature",
            f"the stored checkpoint for size {size} is not signed by the log key: {e.reason}",
        ) from e
    if checkpoint.size != size:
        raise LogCorrupt(
            None, "checkpoint.size", f"the checkpoint stored for size {size} says size {checkpoint.size}"
        )
    return checkpoint.root


def verify_log(
    rows: Iterable[tuple[int, bytes, str | None]],
    nodes: Iterable[tuple[int, int, bytes]],
    checkpoints: Iterable[tuple[int, bytes]],
    verifier: NoteVerifier,
) -> Verified:
    """Rebuild the tree from the stored entry bytes and check everything stored against it.

    ``rows`` are ``(seq, bytes, serial column)`` by seq; ``nodes`` the stored perfect
    subtrees ``(level, index, hash)`` in the order they complete (by end leaf, then
    level); ``checkpoints`` ``(size, note)`` by size. Raises :class:`LogCorrupt` at the
    first finding, naming the entry (or the tree size) and the check.
    """
    stored_nodes = iter(nodes)
    pending = iter(checkpoints)
    next_cp = next(pending, None)
    frontier = Frontier.empty()
    matched = 0  # the size of the last checkpoint that matched
    count_cp = 0

    def check_checkpoints() -> None:
        nonlocal next_cp, matched, count_cp
        while next_cp is not None and next_cp[0] <= frontier.size:
            size, note = next_cp
            if size < frontier.size:  # cannot happen with ordered input: a duplicate size
                raise LogCorrupt(None, "checkpoint.order", f"checkpoints out of order at size {size}")
            root = _open(note, size, verifier)
            if root != frontier.root():
                first = matched + 1
                raise LogCorrupt(
                    size,
                    "checkpoint.root",
                    f"the entries up to {size} do not rebuild the root the log key signed for size {size}: "
                    f"an entry in {first}..{size} was changed after it was logged "
                    f"(the checkpoint for size {matched} still matches)",
                )
            matched = size
            count_cp += 1
            next_cp = next(pending, None)

    check_checkpoints()
    expected = 1
    for seq, data, serial in rows:
        if seq != expected:
            if seq > expected:
                raise LogCorrupt(expected, "entry.missing", f"entry {expected} is missing (next is {seq})")
            raise LogCorrupt(seq, "entry.order", f"entry {seq} appears twice")
        entry = entry_from_row(seq, data, serial)
        frontier, made = frontier.extend([entry.leaf_hash])
        for level, index, h in made:
            got = next(stored_nodes, None)
            if got is None:
                raise LogCorrupt(seq, "tree.node", f"the stored tree has no node ({level}, {index})")
            if got != (level, index, h):
                raise LogCorrupt(
                    seq,
                    "tree.node",
                    f"stored tree node ({got[0]}, {got[1]}) does not match the entries "
                    f"(rebuilt ({level}, {index}))",
                )
        check_checkpoints()
        expected += 1
    size = frontier.size
    if next_cp is not None:
        raise LogCorrupt(
            size + 1,
            "log.truncated",
            f"the log key signed a checkpoint for {next_cp[0]} entries but the log holds {size}: "
            f"entries {size + 1}..{next_cp[0]} were removed",
        )
    extra = next(stored_nodes, None)
    if extra is not None:
        raise LogCorrupt(
            size + 1,
            "tree.node",
            f"the stored tree has node ({extra[0]}, {extra[1]}) beyond the {size} entries",
        )
    if matched != size:
        raise LogCorrupt(
            matched + 1,
            "checkpoint.missing",
            f"entries {matched + 1}..{size} are covered by no checkpoint the log key signed",
        )
    return Verified(
        size=size, root=frontier.root() if size else EMPTY_ROOT, checkpoints=count_cp, latest=matched
    )
