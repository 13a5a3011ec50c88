"""The decision log in PostgreSQL, for several Steward replicas.

Each append is one transaction that first takes a transaction-scoped advisory
lock (``pg_advisory_xact_lock``), then reads the head and inserts the next
entries: appends from every replica are serialised in the database, and the
primary key on ``seq`` would refuse a fork even if the lock were bypassed. The
entries are returned after ``COMMIT``; concurrent appends of one replica share a
transaction (group commit, :mod:`donjon.steward.chainstore`).

Three round trips per transaction: ``BEGIN``, the lock and the head read go as
one simple-protocol query (statements run in order, so the head is read under the
lock), then one multi-row ``INSERT``, then ``COMMIT``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from donjon.steward.chainstore import COLUMNS, ChainStore, Pending, chain_batch
from donjon.steward.log import LogEntry

__all__ = ["PostgresLog"]

#: Arbitrary 64-bit key of the advisory lock ("donjon" in ASCII).
_LOCK_KEY = 0x646F6E6A6F6E

_SCHEMA = """
CREATE TABLE IF NOT EXISTS donjon_decisions (
    seq BIGINT PRIMARY KEY,
    time TEXT NOT NULL,
    record TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    serial TEXT
);
CREATE INDEX IF NOT EXISTS donjon_decisions_serial ON donjon_decisions(serial);
"""

# No parameters, so psycopg sends it as one simple query (one result per statement).
_BEGIN_LOCKED_HEAD = (
    f"BEGIN; SELECT pg_advisory_xact_lock({_LOCK_KEY}); "
    "SELECT seq, hash FROM donjon_decisions ORDER BY seq DESC LIMIT 1"
)
_INSERT = "INSERT INTO donjon_decisions (seq, time, record, prev_hash, hash, serial) VALUES "
_ROW = "(%s, %s, %s, %s, %s, %s)"


class PostgresLog(ChainStore[psycopg.Connection[Any]]):
    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn = dsn
        conn = self._conn()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(_SCHEMA)

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True)

    def _usable(self, conn: psycopg.Connection[Any]) -> bool:
        return not conn.closed

    def _close_connection(self, conn: psycopg.Connection[Any]) -> None:
        conn.close()

    def _commit_batch_on(self, conn: psycopg.Connection[Any], batch: Sequence[Pending]) -> list[LogEntry]:
        try:
            cur = conn.execute(_BEGIN_LOCKED_HEAD)
            while cur.nextset():  # to the last statement's result: the head
                pass
            row = cur.fetchone()
            rows, entries = chain_batch(None if row is None else (int(row[0]), bytes(row[1])), batch)
            conn.execute(_INSERT + ", ".join([_ROW] * len(rows)), [value for r in rows for value in r])
            conn.execute("COMMIT")
        except BaseException:
            # Nothing of the batch is durable; a broken connection has rolled back by itself.
            if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            raise
        return entries

    def _select(self, conn: psycopg.Connection[Any], where: str, param: object) -> Iterable[Sequence[Any]]:
        where = where.replace("?", "%s")
        return conn.execute(f"SELECT {COLUMNS} FROM donjon_decisions WHERE {where} ORDER BY seq", (param,))
