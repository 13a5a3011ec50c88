"""The decision log in SQLite (the default): WAL journal, ``synchronous=FULL``.

Appends run in ``BEGIN IMMEDIATE`` transactions, which SQLite serialises across
connections and processes, so two Stewards on one file cannot fork the chain;
concurrent appends of one process share a transaction (group commit,
:mod:`donjon.steward.chainstore`). Connections are per thread (SQLite objects
must not cross threads).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from donjon.steward.chainstore import COLUMNS, ChainStore, Pending, chain_batch
from donjon.steward.log import LogEntry

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


class SqliteLog(ChainStore[sqlite3.Connection]):
    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30000) -> None:
        super().__init__()
        self.path = str(path)
        self._busy = busy_timeout_ms
        self._conn().executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._busy / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={int(self._busy)}")
        return conn

    def _usable(self, conn: sqlite3.Connection) -> bool:
        return True

    def _close_connection(self, conn: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.ProgrammingError):  # another thread's connection
            conn.close()

    def _commit_batch_on(self, conn: sqlite3.Connection, batch: Sequence[Pending]) -> list[LogEntry]:
        # One IMMEDIATE transaction for the whole batch: SQLite serialises it against
        # every other connection and process; the head is read inside it.
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT seq, hash FROM decisions ORDER BY seq DESC LIMIT 1").fetchone()
            rows, entries = chain_batch(None if row is None else (int(row[0]), bytes(row[1])), batch)
            conn.executemany(
                "INSERT INTO decisions (seq, time, record, prev_hash, hash, serial) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return entries

    def _select(self, conn: sqlite3.Connection, where: str, param: object) -> Iterable[Sequence[Any]]:
        return conn.execute(f"SELECT {COLUMNS} FROM decisions WHERE {where} ORDER BY seq", (param,))
