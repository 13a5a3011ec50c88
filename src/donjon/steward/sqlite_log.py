"""The decision log in SQLite (the default): WAL journal, ``synchronous=FULL``.

Appends run in ``BEGIN IMMEDIATE`` transactions, which SQLite serialises across
connections and processes, so two Stewards on one file cannot fork the chain;
concurrent appends of one process share a transaction (group commit).
Connections are per thread (SQLite objects must not cross threads).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from donjon.steward.groupcommit import GroupCommit
from donjon.steward.log import GENESIS, LogEntry, canonical_json, entry_hash_canonical

__all__ = ["SqliteLog"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    record TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL,
    serial TEXT
);
CREATE INDEX IF NOT EXISTS decisions_serial ON decisions(serial);
"""


class SqliteLog:
    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30000) -> None:
        self.path = str(path)
        self._busy = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._group: GroupCommit[tuple[str, dict[str, Any], str], LogEntry] = GroupCommit(self._commit)
        self._closed = False
        conn = self._conn()
        conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("the log is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=self._busy / 1000, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy)}")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def append(self, record: Mapping[str, Any], time: str) -> LogEntry:
        # Serialised once, canonically: stored as is and hashed without a second pass.
        body = canonical_json(record).decode()
        return self._group.submit((body, dict(record), time))

    def _commit(self, batch: Sequence[tuple[str, dict[str, Any], str]]) -> list[LogEntry]:
        # One IMMEDIATE transaction for the whole batch: SQLite serialises it against
        # every other connection and process; the head is read inside it.
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT seq, hash FROM decisions ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))
            out: list[LogEntry] = []
            for body, stored, time in batch:
                seq += 1
                digest = entry_hash_canonical(prev, seq, time, body.encode())
                serial = stored.get("serial")
                conn.execute(
                    "INSERT INTO decisions (seq, time, record, prev_hash, hash, serial) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (seq, time, body, prev, digest, serial if isinstance(serial, str) else None),
                )
                out.append(LogEntry(seq=seq, time=time, record=stored, prev_hash=prev, hash=digest))
                prev = digest
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
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
        cursor = conn.execute(
            "SELECT seq, time, record, prev_hash, hash FROM decisions WHERE seq >= ? ORDER BY seq", (start,)
        )
        for row in cursor:
            yield self._entry(row)

    def find_serial(self, serial: str) -> LogEntry | None:
        row = (
            self._conn()
            .execute("SELECT seq, time, record, prev_hash, hash FROM decisions WHERE serial = ?", (serial,))
            .fetchone()
        )
        return None if row is None else self._entry(row)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
            self._closed = True
        for conn in conns:
            with contextlib.suppress(sqlite3.ProgrammingError):  # another thread's connection
                conn.close()
