"""What the SQL decision-log stores share: the tree, its checkpoints, reads, proofs, group commit.

A store (:class:`~donjon.steward.sqlite_log.SqliteLog`,
:class:`~donjon.steward.postgres_log.PostgresLog`) supplies only its SQL: how to
connect, the schema, how to open an append transaction (take the database's
append lock and read the head) and how to insert rows. Everything else is here,
once:

- three tables: ``entries (seq, entry, serial)`` — the leaf bytes and the serial
  look-up column; ``nodes (level, idx, hash)`` — every perfect subtree of the
  tree (``2**level`` leaves from ``idx * 2**level``), which never changes once
  complete; ``checkpoints (size, note)`` — the signed checkpoint of each size the
  tree had after a commit;
- an append batch extends the tree's frontier (the perfect subtrees whose sizes
  add up to the tree size) and stores the subtrees it completes, then signs the
  new checkpoint — O(batch + log n) hashing, never the whole log. The frontier
  is cached between batches; when another replica appended in between (or at
  start) it is read back (one query) and checked against the latest signed
  checkpoint before anything is signed over it;
- an inclusion or consistency proof reads the O(log n) subtrees it needs in one
  query (:func:`donjon.tlog.merkle.needed`);
- every read checks the look-up columns against the hashed bytes
  (:func:`donjon.steward.log.entry_from_row`).
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

from donjon.steward.groupcommit import GroupCommit
from donjon.steward.hashchain import LegacyRow, legacy_entries
from donjon.steward.log import LogCorrupt, LogEntry, Verified, entry_from_row, serial_of, verify_log
from donjon.tlog.checkpoint import Checkpoint, NoteError, NoteSigner, NoteVerifier, open_checkpoint
from donjon.tlog.entry import canonical_json, entry_bytes, parse_entry
from donjon.tlog.merkle import (
    Frontier,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    needed,
    range_hash,
)

__all__ = ["EntryRow", "NodeRow", "Pending", "TreeStore"]

#: An append waiting for its commit: (record as canonical JSON, the record, time).
Pending = tuple[bytes, dict[str, Any], str]
#: A row of the entries table: (seq, entry bytes, serial or None).
EntryRow = tuple[int, bytes, str | None]
#: A row of the nodes table: (level, index, hash).
NodeRow = tuple[int, int, bytes]

_Conn = TypeVar("_Conn")


class TreeStore(ABC, Generic[_Conn]):
    """A :class:`~donjon.steward.log.LogStore` over three SQL tables; subclasses give the SQL.

    ``signer`` signs checkpoints; without one the store is read-only (``log verify``,
    ``log show``) and refuses appends.
    """

    #: Table names; the PostgreSQL store prefixes them (one database may hold other things).
    ENTRIES = "log_entries"
    NODES = "log_nodes"
    CHECKPOINTS = "log_checkpoints"
    #: The parameter placeholder of the driver.
    PARAM = "?"

    def __init__(self, signer: NoteSigner | None) -> None:
        self._signer = signer
        self._local = threading.local()
        self._all: list[_Conn] = []
        self._lock = threading.Lock()
        self._closed = False
        # Touched only by the group commit's leader, one batch at a time.
        self._frontier: Frontier | None = None
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
    def _begin_locked_head(self, conn: _Conn) -> int:
        """Open a transaction serialised against every other appender; return the number of entries."""

    @abstractmethod
    def _insert(
        self,
        conn: _Conn,
        entries: Sequence[EntryRow],
        nodes: Sequence[NodeRow],
        checkpoint: tuple[int, bytes] | None,
    ) -> None:
        """Insert rows inside the open transaction."""

    @abstractmethod
    def _execute(self, conn: _Conn, sql: str, params: Sequence[Any] = ()) -> Iterable[Sequence[Any]]:
        """Run one statement; its rows."""

    def _stream(self, conn: _Conn, sql: str, params: Sequence[Any] = ()) -> Iterable[Sequence[Any]]:
        """Rows of a large result without holding them all (inside a read transaction)."""
        return self._execute(conn, sql, params)

    @abstractmethod
    def _begin_read(self, conn: _Conn) -> None:
        """Open a read transaction with one snapshot of all tables."""

    @abstractmethod
    def has_legacy(self) -> bool:
        """Whether the database still holds the hash-chained table of earlier versions."""

    @abstractmethod
    def _legacy_page(self, conn: _Conn, after: int, limit: int) -> Sequence[Sequence[Any]]:
        """Up to ``limit`` old rows ``(seq, time, record, prev_hash, hash)`` with seq > ``after``."""

    @abstractmethod
    def _retire_legacy(self, conn: _Conn) -> None:
        """Rename the old table (kept for the record, never read again)."""

    # --- connections ---

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

    def _sql(self, text: str) -> str:
        return (
            text.replace("{E}", self.ENTRIES)
            .replace("{N}", self.NODES)
            .replace("{C}", self.CHECKPOINTS)
            .replace("?", self.PARAM)
        )

    def _rollback(self, conn: _Conn) -> None:
        with contextlib.suppress(Exception):
            self._execute(conn, "ROLLBACK")

    @property
    def verifier(self) -> NoteVerifier | None:
        return self._signer.verifier if self._signer is not None else None

    # --- appending ---

    def append(self, record: Mapping[str, Any], time: str) -> LogEntry:
        """Add ``record`` as a leaf and commit it with a signed checkpoint; returns once durable
        (concurrent appends share a commit)."""
        if self._signer is None:
            raise RuntimeError("this log was opened without its log key: it cannot sign, so it cannot append")
        # Serialised once, canonically: stored as is and hashed without a second pass.
        return self._group.submit((canonical_json(record), dict(record), time))

    def _commit_batch(self, batch: Sequence[Pending]) -> list[LogEntry]:
        return self._commit_batch_on(self._conn(), batch)

    def _read_nodes(self, conn: _Conn, coords: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        if not coords:
            return {}
        where = " OR ".join(["(level = ? AND idx = ?)"] * len(coords))
        params = [v for c in coords for v in c]
        rows = self._execute(conn, self._sql(f"SELECT level, idx, hash FROM {{N}} WHERE {where}"), params)
        return {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}

    def _latest(self, conn: _Conn) -> tuple[int, bytes] | None:
        for row in self._execute(conn, self._sql("SELECT size, note FROM {C} ORDER BY size DESC LIMIT 1")):
            return int(row[0]), bytes(row[1])
        return None

    def _frontier_at(self, conn: _Conn, size: int) -> Frontier:
        """The frontier of the stored tree of ``size`` leaves, checked against the latest checkpoint."""
        cached = self._frontier
        if cached is not None and cached.size == size:
            return cached
        stored = self._read_nodes(conn, Frontier.coordinates(size))
        try:
            frontier = Frontier.of(size, stored)
        except KeyError as e:
            raise LogCorrupt(size, "tree.node", f"the stored tree lacks node {e.args[0]}") from e
        latest = self._latest(conn)
        assert self._signer is not None
        if latest is None:
            if size:
                raise LogCorrupt(size, "checkpoint.missing", "the log holds entries but no signed checkpoint")
            return frontier
        try:
            signed = open_checkpoint(latest[1], self._signer.verifier)
        except NoteError as e:
            raise LogCorrupt(
                latest[0], "checkpoint.signature", f"the latest checkpoint does not verify: {e}"
            ) from e
        if signed.size != size or signed.root != frontier.root():
            # Someone changed the tables behind the Steward's back: signing over them would
            # vouch for it. Refuse; `log verify` says what.
            raise LogCorrupt(
                size,
                "checkpoint.root",
                f"the stored tree of {size} entries does not match the latest signed checkpoint "
                f"(size {signed.size}); run `donjon steward log verify`",
            )
        return frontier

    def _commit_batch_on(self, conn: _Conn, batch: Sequence[Pending]) -> list[LogEntry]:
        assert self._signer is not None
        size = self._begin_locked_head(conn)
        try:
            frontier = self._frontier_at(conn, size)
            rows: list[EntryRow] = []
            entries: list[LogEntry] = []
            for body, record, time in batch:
                seq = size + len(rows) + 1
                data = entry_bytes(seq, time, body)
                rows.append((seq, data, serial_of(record)))
                entries.append(LogEntry(seq=seq, time=time, record=record, data=data))
            new, made = frontier.extend(leaf_hash(data) for _, data, _ in rows)
            note = self._signer.sign_checkpoint(Checkpoint(self._signer.name, new.size, new.root()))
            if rows or self._latest(conn) is None:
                self._insert(conn, rows, made, (new.size, note))
            self._execute(conn, "COMMIT")
        except BaseException:
            self._frontier = None
            self._rollback(conn)
            raise
        self._frontier = new
        return entries

    def sign_empty(self) -> None:
        """Check the stored tree against the latest signed checkpoint (:class:`LogCorrupt` if it does not
        match), and sign the empty tree's checkpoint if there is none yet (a witness can start at 0)."""
        self._commit_batch_on(self._conn(), [])

    def migrate_legacy(self, *, page: int = 1000) -> int:
        """Convert the hash-chained table into the tree in one transaction, after checking the chain
        (:func:`~donjon.steward.hashchain.legacy_entries`); returns the number of entries converted."""
        if self._signer is None:
            raise RuntimeError("converting the log needs the log key")
        conn = self._conn()
        size = self._begin_locked_head(conn)
        try:
            if size:
                raise LogCorrupt(
                    None, "migrate.not_empty", f"the transparency log already holds {size} entries"
                )

            def old_rows() -> Iterator[LegacyRow]:
                after = 0
                while rows := self._legacy_page(conn, after, page):
                    for r in rows:
                        yield int(r[0]), str(r[1]), str(r[2]), bytes(r[3]), bytes(r[4])
                    after = int(rows[-1][0])

            frontier = Frontier.empty()
            chunk: list[EntryRow] = []

            def flush() -> None:
                nonlocal frontier, chunk
                frontier, made = frontier.extend(leaf_hash(data) for _, data, _ in chunk)
                self._insert(conn, chunk, made, None)
                chunk = []

            for data in legacy_entries(old_rows()):
                record = parse_entry(data).record
                chunk.append((frontier.size + len(chunk) + 1, data, serial_of(record)))
                if len(chunk) >= page:
                    flush()
            flush()
            note = self._signer.sign_checkpoint(Checkpoint(self._signer.name, frontier.size, frontier.root()))
            if frontier.size or self._latest(conn) is None:
                self._insert(conn, [], [], (frontier.size, note))
            self._retire_legacy(conn)
            self._execute(conn, "COMMIT")
        except BaseException:
            self._frontier = None
            self._rollback(conn)
            raise
        self._frontier = frontier
        return frontier.size

    # --- reading ---

    def _rows(self, where: str, param: object) -> Iterator[LogEntry]:
        sql = self._sql(f"SELECT seq, entry, serial FROM {{E}} WHERE {where} ORDER BY seq")
        for row in self._execute(self._conn(), sql, (param,)):
            yield entry_from_row(int(row[0]), bytes(row[1]), row[2])

    def entries(self, *, start: int = 1) -> Iterator[LogEntry]:
        return self._rows("seq >= ?", start)

    def entry(self, seq: int) -> LogEntry | None:
        return next(self._rows("seq = ?", seq), None)

    def find_serial(self, serial: str) -> LogEntry | None:
        found = list(self._rows("serial = ?", serial))
        if len(found) > 1:
            raise LogCorrupt(found[1].seq, "entry.serial", f"entries {found[0].seq} and {found[1].seq} both "
                             f"name serial {serial}")  # fmt: skip
        return found[0] if found else None

    def checkpoint(self) -> bytes | None:
        latest = self._latest(self._conn())
        return latest[1] if latest is not None else None

    def size(self) -> int:
        for row in self._execute(self._conn(), self._sql("SELECT max(seq) FROM {E}")):
            return int(row[0] or 0)
        return 0

    def _hashes(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        coords = needed(ranges)
        stored = self._read_nodes(self._conn(), coords)
        try:
            return [range_hash(a, b, stored) for a, b in ranges]
        except KeyError as e:
            raise LogCorrupt(None, "tree.node", f"the stored tree lacks node {e.args[0]}") from e

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 9162 2.1.3)."""
        return self._hashes(inclusion_ranges(index, size))

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """The consistency proof from the tree of ``first`` leaves to that of ``second`` (RFC 9162 2.1.4)."""
        return self._hashes(consistency_ranges(first, second))

    def verify(self, verifier: NoteVerifier) -> Verified:
        """:func:`~donjon.steward.log.verify_log` over one snapshot of the tables."""
        conn = self._connect()  # its own connection: a long read transaction, streamed
        try:
            self._begin_read(conn)
            rows = (
                (int(r[0]), bytes(r[1]), r[2])
                for r in self._stream(conn, self._sql("SELECT seq, entry, serial FROM {E} ORDER BY seq"))
            )
            nodes = (
                (int(r[0]), int(r[1]), bytes(r[2]))
                for r in self._stream(
                    conn, self._sql("SELECT level, idx, hash FROM {N} ORDER BY ((idx + 1) << level), level")
                )
            )
            cps = (
                (int(r[0]), bytes(r[1]))
                for r in self._stream(conn, self._sql("SELECT size, note FROM {C} ORDER BY size"))
            )
            return verify_log(rows, nodes, cps, verifier)
        finally:
            self._rollback(conn)
            self._close_connection(conn)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
            self._closed = True
        for conn in conns:
            self._close_connection(conn)
