"""What the SQL decision-log stores share: chaining a batch, per-thread connections, group commit.

A store (:class:`~donjon.steward.sqlite_log.SqliteLog`,
:class:`~donjon.steward.postgres_log.PostgresLog`) supplies only its SQL: how to
connect, and how to run one append transaction — take the database's append lock,
read the head, insert the rows that :func:`chain_batch` computed from it, commit.
Everything else — canonical JSON, entry hashes (:mod:`donjon.steward.log`), group
commit, reading entries back — is here, once.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

from donjon.steward.groupcommit import GroupCommit
from donjon.steward.log import GENESIS, LogEntry, canonical_json, entry_hash_canonical

__all__ = ["COLUMNS", "ChainStore", "Pending", "Row", "chain_batch", "entry_from_row"]

#: An append waiting for its commit: (record as canonical JSON text, the record, time).
Pending = tuple[str, dict[str, Any], str]
#: A row as stored: (seq, time, record JSON, prev_hash, hash, serial or None).
Row = tuple[int, str, str, bytes, bytes, str | None]
#: The columns an entry is read back from, in :func:`entry_from_row`'s order.
COLUMNS = "seq, time, record, prev_hash, hash"

_Conn = TypeVar("_Conn")


def chain_batch(head: tuple[int, bytes] | None, batch: Sequence[Pending]) -> tuple[list[Row], list[LogEntry]]:
    """The rows and entries that follow ``head`` (the last (seq, hash), or None for an empty log).

    Each entry is chained to the one before it; run inside the transaction that read ``head``.
    """
    seq, prev = (0, GENESIS) if head is None else head
    rows: list[Row] = []
    entries: list[LogEntry] = []
    for body, record, time in batch:
        seq += 1
        digest = entry_hash_canonical(prev, seq, time, body.encode())
        serial = record.get("serial")
        rows.append((seq, time, body, prev, digest, serial if isinstance(serial, str) else None))
        entries.append(LogEntry(seq=seq, time=time, record=record, prev_hash=prev, hash=digest))
        prev = digest
    return rows, entries


def entry_from_row(row: Sequence[Any]) -> LogEntry:
    """A :class:`LogEntry` from a row of :data:`COLUMNS`."""
    return LogEntry(
        seq=int(row[0]),
        time=str(row[1]),
        record=json.loads(row[2]),
        prev_hash=bytes(row[3]),
        hash=bytes(row[4]),
    )


class ChainStore(ABC, Generic[_Conn]):
    """A :class:`~donjon.steward.log.LogStore` over one SQL table; subclasses give the SQL."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[_Conn] = []
        self._lock = threading.Lock()
        self._closed = False
        self._group: GroupCommit[Pending, LogEntry] = GroupCommit(self._commit_batch)

    # --- what a store supplies ---

    @abstractmethod
    def _connect(self) -> _Conn:
        """A new connection, in autocommit mode (transactions are explicit)."""

    @abstractmethod
    def _usable(self, conn: _Conn) -> bool:
        """Whether this thread's connection can still be used."""

    @abstractmethod
    def _close_connection(self, conn: _Conn) -> None: ...

    @abstractmethod
    def _commit_batch_on(self, conn: _Conn, batch: Sequence[Pending]) -> list[LogEntry]:
        """One transaction: serialise against every other appender, read the head,
        insert :func:`chain_batch`'s rows, commit (roll back on any error)."""

    @abstractmethod
    def _select(self, conn: _Conn, where: str, param: object) -> Iterable[Sequence[Any]]:
        """Rows of :data:`COLUMNS` matching ``where`` (``seq >= ?`` or ``serial = ?``), by seq."""

    # --- shared ---

    def _conn(self) -> _Conn:
        if self._closed:
            raise RuntimeError("the log is closed")
        conn: _Conn | None = getattr(self._local, "conn", None)
        if conn is None or not self._usable(conn):
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def append(self, record: Mapping[str, Any], time: str) -> LogEntry:
        """Chain and commit ``record``; returns once it is durable (concurrent appends share a commit)."""
        # Serialised once, canonically: stored as is and hashed without a second pass.
        body = canonical_json(record).decode()
        return self._group.submit((body, dict(record), time))

    def _commit_batch(self, batch: Sequence[Pending]) -> list[LogEntry]:
        return self._commit_batch_on(self._conn(), batch)

    def entries(self, *, start: int = 1) -> Iterator[LogEntry]:
        for row in self._select(self._conn(), "seq >= ?", start):
            yield entry_from_row(row)

    def find_serial(self, serial: str) -> LogEntry | None:
        for row in self._select(self._conn(), "serial = ?", serial):
            return entry_from_row(row)
        return None

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
            self._closed = True
        for conn in conns:
            self._close_connection(conn)
