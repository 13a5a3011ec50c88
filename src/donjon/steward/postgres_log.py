"""The decision log in PostgreSQL, for several Steward replicas: one tree, never forked.

Each append is one transaction that first takes a transaction-scoped advisory
lock (``pg_advisory_xact_lock``), then reads the head and inserts the next
entries, the tree nodes they complete and the new signed checkpoint: appends
from every replica are serialised in the database, and the primary keys on
``seq``, ``(level, idx)`` and ``size`` would refuse a fork even if the lock were
bypassed. The entries are returned after ``COMMIT``; concurrent appends of one
replica share a transaction (group commit, :mod:`donjon.steward.treestore`).

Three round trips per transaction: ``BEGIN``, the lock and the head read go as
one simple-protocol query (statements run in order, so the head is read under the
lock), then one statement inserting into the three tables (data-modifying
``WITH``), then ``COMMIT``. A replica that finds the head moved by another reads
the tree's frontier back (one more query) before it signs.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from donjon.steward.log import LegacyLog
from donjon.steward.treestore import EntryRow, NodeRow, TreeStore
from donjon.tlog.checkpoint import NoteSigner

__all__ = ["PostgresLog"]

#: Arbitrary 64-bit key of the advisory lock ("donjon" in ASCII).
_LOCK_KEY = 0x646F6E6A6F6E

_SCHEMA = """
CREATE TABLE IF NOT EXISTS donjon_log_entries (
    seq BIGINT PRIMARY KEY,
    entry BYTEA NOT NULL,
    serial TEXT
);
CREATE INDEX IF NOT EXISTS donjon_log_entries_serial ON donjon_log_entries(serial);
CREATE TABLE IF NOT EXISTS donjon_log_nodes (
    level INTEGER NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE IF NOT EXISTS donjon_log_checkpoints (
    size BIGINT PRIMARY KEY,
    note BYTEA NOT NULL
);
"""
LEGACY = "donjon_decisions"
RETIRED = "donjon_decisions_hashchain"

# No parameters, so psycopg sends it as one simple query (one result per statement).
_BEGIN_LOCKED_HEAD = (
    f"BEGIN; SELECT pg_advisory_xact_lock({_LOCK_KEY}); SELECT max(seq) FROM donjon_log_entries"
)


class PostgresLog(TreeStore[psycopg.Connection[Any]]):
    ENTRIES = "donjon_log_entries"
    NODES = "donjon_log_nodes"
    CHECKPOINTS = "donjon_log_checkpoints"
    PARAM = "%s"

    def __init__(self, dsn: str, signer: NoteSigner | None = None, *, legacy_ok: bool = False) -> None:
        super().__init__(signer)
        self.dsn = dsn
        self._cursors = itertools.count()
        conn = self._conn()
        if not legacy_ok and self.has_legacy():
            self.close()
            raise LegacyLog("the PostgreSQL database")
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(_SCHEMA)
        if signer is not None and not legacy_ok:
            self.sign_empty()

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True)

    def _usable(self, conn: psycopg.Connection[Any]) -> bool:
        return not conn.closed

    def _close_connection(self, conn: psycopg.Connection[Any]) -> None:
        conn.close()

    def _begin_locked_head(self, conn: psycopg.Connection[Any]) -> int:
        cur = conn.execute(_BEGIN_LOCKED_HEAD)
        while cur.nextset():  # to the last statement's result: the head
            pass
        row = cur.fetchone()
        return int(row[0] or 0) if row is not None else 0

    def _insert(
        self,
        conn: psycopg.Connection[Any],
        entries: Sequence[EntryRow],
        nodes: Sequence[NodeRow],
        checkpoint: tuple[int, bytes] | None,
    ) -> None:
        parts: list[str] = []
        params: list[Any] = []
        if entries:
            parts.append(
                "INSERT INTO donjon_log_entries (seq, entry, serial) VALUES "
                + ", ".join(["(%s, %s, %s)"] * len(entries))
            )
            params += [v for row in entries for v in row]
        if nodes:
            parts.append(
                "INSERT INTO donjon_log_nodes (level, idx, hash) VALUES "
                + ", ".join(["(%s, %s, %s)"] * len(nodes))
            )
            params += [v for row in nodes for v in row]
        if checkpoint is not None:
            parts.append("INSERT INTO donjon_log_checkpoints (size, note) VALUES (%s, %s)")
            params += list(checkpoint)
        if not parts:
            return
        # One statement, one round trip: every insert but the last as a data-modifying WITH.
        head = ", ".join(f"i{n} AS ({sql})" for n, sql in enumerate(parts[:-1]))
        conn.execute((f"WITH {head} " if head else "") + parts[-1], params)

    def _execute(
        self, conn: psycopg.Connection[Any], sql: str, params: Sequence[Any] = ()
    ) -> Iterable[Sequence[Any]]:
        return conn.execute(sql, params or None)

    def _rollback(self, conn: psycopg.Connection[Any]) -> None:
        # Nothing of the batch is durable; a broken connection has rolled back by itself.
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")

    def _begin_read(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def _stream(
        self, conn: psycopg.Connection[Any], sql: str, params: Sequence[Any] = ()
    ) -> Iterable[Sequence[Any]]:
        # A server-side cursor (inside the read transaction): rows arrive in pages.
        cur = conn.cursor(name=f"donjon_scan_{next(self._cursors)}")
        cur.itersize = 1000
        cur.execute(sql, params or None)
        return cur

    # --- the hash-chained table of earlier versions ---

    def has_legacy(self) -> bool:
        row = self._conn().execute("SELECT to_regclass(%s)", (LEGACY,)).fetchone()
        return row is not None and row[0] is not None

    def _legacy_page(self, conn: psycopg.Connection[Any], after: int, limit: int) -> list[Sequence[Any]]:
        return conn.execute(
            f"SELECT seq, time, record, prev_hash, hash FROM {LEGACY} WHERE seq > %s ORDER BY seq LIMIT %s",
            (after, limit),
        ).fetchall()

    def _retire_legacy(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(f"ALTER TABLE {LEGACY} RENAME TO {RETIRED}")
