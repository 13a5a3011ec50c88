"""The decision log in PostgreSQL, for several Steward replicas.

Each append is one transaction that first takes a transaction-scoped advisory
lock (``pg_advisory_xact_lock``), then reads the head and inserts the next
entry: appends from every replica are serialised in the database, and the
primary key on ``seq`` would refuse a fork even if the lock were bypassed. The
entry is returned after ``COMMIT``; concurrent appends of one replica share a
transaction (group commit).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg

from donjon.steward.groupcommit import GroupCommit
from donjon.steward.log import GENESIS, LogEntry, canonical_json, entry_hash_canonical

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


class PostgresLog:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._local = threading.local()
        self._all: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._group: GroupCommit[tuple[str, dict[str, Any], str], LogEntry] = GroupCommit(self._commit)
        conn = self._conn()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(_SCHEMA)

    def _conn(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise RuntimeError("the log is closed")
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self.dsn, autocommit=True)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def append(self, record: Mapping[str, Any], time: str) -> LogEntry:
        # Serialised once, canonically: stored as is and hashed without a second pass.
        body = canonical_json(record).decode()
        return self._group.submit((body, dict(record), time))

    def _commit(self, batch: Sequence[tuple[str, dict[str, Any], str]]) -> list[LogEntry]:
        conn = self._conn()
        out: list[LogEntry] = []
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            row = conn.execute("SELECT seq, hash FROM donjon_decisions ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))
            rows = []
            for body, stored, time in batch:
                seq += 1
                digest = entry_hash_canonical(prev, seq, time, body.encode())
                serial = stored.get("serial")
                rows.append((seq, time, body, prev, digest, serial if isinstance(serial, str) else None))
                out.append(LogEntry(seq=seq, time=time, record=stored, prev_hash=prev, hash=digest))
                prev = digest
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO donjon_decisions (seq, time, record, prev_hash, hash, serial) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    rows,
                )
        return out

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> LogEntry:
        return LogEntry(
            seq=int(row[0]),
            time=str(row[1]),
            record=json.loads(row[2]),
            prev_hash=bytes(row[3]),
            hash=bytes(row[4]),
        )

    def entries(self, *, start: int = 1) -> Iterator[LogEntry]:
        conn = self._conn()
        with conn.cursor() as cur:
            cur.execute(
                "SELECT seq, time, record, prev_hash, hash FROM donjon_decisions "
                "WHERE seq >= %s ORDER BY seq",
                (start,),
            )
            for row in cur:
                yield self._entry(row)

    def find_serial(self, serial: str) -> LogEntry | None:
        row = (
            self._conn()
            .execute(
                "SELECT seq, time, record, prev_hash, hash FROM donjon_decisions WHERE serial = %s", (serial,)
            )
            .fetchone()
        )
        return None if row is None else self._entry(row)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
            self._closed = True
        for conn in conns:
            conn.close()
