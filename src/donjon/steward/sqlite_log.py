"""The decision log in SQLite (the default): WAL journal, ``synchronous=FULL``.

Appends run in ``BEGIN IMMEDIATE`` transactions, which SQLite serialises across
connections and processes, so two Stewards on one file grow one tree; concurrent
appends of one process share a transaction (group commit,
:mod:`donjon.steward.treestore`). Connections are per thread (SQLite objects
must not cross threads).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from donjon.steward.log import LegacyLog
from donjon.steward.treestore import EntryRow, NodeRow, TreeStore
from donjon.tlog.checkpoint import NoteSigner

__all__ = ["SqliteLog"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_entries (
    seq INTEGER PRIMARY KEY,
    entry BLOB NOT NULL,
    serial TEXT
);
CREATE INDEX IF NOT EXISTS log_entries_serial ON log_entries(serial);
CREATE TABLE IF NOT EXISTS log_nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_checkpoints (
    size INTEGER PRIMARY KEY,
    note BLOB NOT NULL
);
"""
#: The hash-chained table of earlier versions, and its name once converted.
LEGACY = "decisions"
RETIRED = "decisions_hashchain"


class SqliteLog(TreeStore[sqlite3.Connection]):
    """``signer``: the log key (None: read-only). ``legacy_ok``: open a database that still holds
    the hash-chained table (only ``log migrate`` does)."""

    def __init__(
        self,
        path: str | Path,
        signer: NoteSigner | None = None,
        *,
        busy_timeout_ms: int = 30000,
        legacy_ok: bool = False,
    ) -> None:
        super().__init__(signer)
        self.path = str(path)
        self._busy = busy_timeout_ms
        conn = self._conn()
        if not legacy_ok and self.has_legacy():
            self.close()
            raise LegacyLog(self.path)
        conn.executescript(_SCHEMA)
        if signer is not None and not legacy_ok:
            self.sign_empty()

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

    def _begin_locked_head(self, conn: sqlite3.Connection) -> int:
        # IMMEDIATE: SQLite serialises it against every other connection and process;
        # the head is read inside it.
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute("SELECT max(seq) FROM log_entries").fetchone()
        return int(row[0] or 0)

    def _insert(
        self,
        conn: sqlite3.Connection,
        entries: Sequence[EntryRow],
        nodes: Sequence[NodeRow],
        checkpoint: tuple[int, bytes] | None,
    ) -> None:
        conn.executemany("INSERT INTO log_entries (seq, entry, serial) VALUES (?, ?, ?)", entries)
        conn.executemany("INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
        if checkpoint is not None:
            conn.execute("INSERT INTO log_checkpoints (size, note) VALUES (?, ?)", checkpoint)

    def _execute(
        self, conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()
    ) -> Iterable[Sequence[Any]]:
        return conn.execute(sql, params)

    def _begin_read(self, conn: sqlite3.Connection) -> None:
        # A deferred transaction reads one snapshot of the WAL database from its first SELECT.
        conn.execute("BEGIN")

    # --- the hash-chained table of earlier versions ---

    def has_legacy(self) -> bool:
        row = (
            self._conn()
            .execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (LEGACY,))
            .fetchone()
        )
        return row is not None

    def _legacy_page(self, conn: sqlite3.Connection, after: int, limit: int) -> list[Sequence[Any]]:
        return conn.execute(
            f"SELECT seq, time, record, prev_hash, hash FROM {LEGACY} WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()

    def _retire_legacy(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"ALTER TABLE {LEGACY} RENAME TO {RETIRED}")
