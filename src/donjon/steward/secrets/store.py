"""The secret store: versions of named secrets in the Steward's database, encrypted.

Envelope encryption (NIST SP 800-57 part 1, "key-wrapping key"): every stored
version gets a fresh random 256-bit data key; the value is sealed with AES-256-GCM
under that key, and the data key is wrapped by the :class:`~donjon.steward.secrets.kek.Kek`.
Both use the same authenticated data, ``"donjon-secret-v1" 0x00 name 0x00 version``
(version as 8 bytes big-endian), so a row moved to another name or version, or a
wrapped key swapped between rows, does not decrypt. The database therefore holds
only ciphertext, wrapped keys, names, sizes and times: a stolen copy reveals no value.

The tables live beside the log's (SQLite: the same ``log.db``; PostgreSQL: the same
database, so replicas share them). A KEK check row — a random key wrapped once
when the store is first used — lets :meth:`SecretStore.check_kek` refuse a wrong
KEK at start-up instead of at the first release.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from donjon.steward.secrets.errors import (
    KekUnwrapError,
    SecretError,
    SecretNotFound,
    SecretUnreadable,
)
from donjon.steward.secrets.kek import DATA_KEY_BYTES, Kek
from donjon.steward.secrets.names import MAX_VERSIONS, check_name, check_size

__all__ = ["SecretStore", "SecretValue", "SecretVersion", "aad_for", "open_store"]

_AAD_LABEL = b"donjon-secret-v1"
_CHECK_AAD = b"donjon-kek-check-v1"
_NONCE = 12

_SCHEMA = """
CREATE TABLE IF NOT EXISTS donjon_secrets (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    created TEXT NOT NULL,
    size BIGINT NOT NULL,
    kek TEXT NOT NULL,
    wrapped_key {blob} NOT NULL,
    nonce {blob} NOT NULL,
    ciphertext {blob} NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS donjon_secret_kek_check (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    kek TEXT NOT NULL,
    wrapped {blob} NOT NULL
);
"""


def aad_for(name: str, version: int) -> bytes:
    """The authenticated data of one secret version (see the module docstring)."""
    return _AAD_LABEL + b"\x00" + name.encode("ascii") + b"\x00" + version.to_bytes(8, "big")


@dataclass(frozen=True)
class SecretVersion:
    """What ``secret list`` shows of one version: never the value."""

    name: str
    version: int
    created: str
    size: int
    kek: str


@dataclass(frozen=True)
class SecretValue:
    name: str
    version: int
    created: str
    value: bytes

    def __repr__(self) -> str:  # a value must never reach a log line through a repr
        return f"SecretValue({self.name!r}, version={self.version}, {len(self.value)} bytes)"


class _Db:
    """The SQL the store needs, over SQLite (a connection per thread) or PostgreSQL."""

    def __init__(self, connect: Callable[[], Any], mark: str, blob: str, begin: str = "BEGIN") -> None:
        self._connect = connect
        self.mark = mark
        self.blob = blob
        self.begin = begin
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    def conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def sql(self, text: str) -> str:
        return text.replace("?", self.mark)

    def query(self, text: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        cur = self.conn().execute(self.sql(text), tuple(params))
        return list(cur.fetchall()) if cur.description is not None else []

    def transaction(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        conn = self.conn()
        conn.execute(self.begin)
        try:
            for text, params in statements:
                conn.execute(self.sql(text), tuple(params))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            # Another thread's SQLite connection may refuse: it goes with its thread.
            with contextlib.suppress(Exception):
                conn.close()
        self._local = threading.local()


def _sqlite(path: Path) -> _Db:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    # IMMEDIATE: take the write lock at once (waiting up to the busy timeout for the Steward's log
    # appends to the same file), rather than failing to upgrade a read transaction later.
    return _Db(connect, "?", "BLOB", "BEGIN IMMEDIATE")


def _postgres(dsn: str) -> _Db:
    import psycopg

    def connect() -> Any:
        return psycopg.connect(dsn, autocommit=True)

    return _Db(connect, "%s", "BYTEA")


class SecretStore:
    """Named, versioned secrets; every value encrypted (module docstring). Close it (or ``with``)."""

    def __init__(self, db: _Db, kek: Kek, *, clock: Callable[[], datetime] | None = None) -> None:
        self._db = db
        self.kek = kek
        self._clock = clock or (lambda: datetime.now(UTC))
        conn = db.conn()
        for statement in _SCHEMA.format(blob=db.blob).split(";"):
            if statement.strip():
                conn.execute(statement)

    @classmethod
    def sqlite(cls, path: str | Path, kek: Kek, **kwargs: Any) -> SecretStore:
        return cls(_sqlite(Path(path)), kek, **kwargs)

    @classmethod
    def postgres(cls, dsn: str, kek: Kek, **kwargs: Any) -> SecretStore:
        return cls(_postgres(dsn), kek, **kwargs)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SecretStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the KEK ---

    def check_kek(self) -> None:
        """Refuse a KEK that is not the one this store's keys are wrapped by (:class:`KekUnwrapError`).

        The first call on a new store records a check value under this KEK.
        """
        rows = self._db.query("SELECT wrapped FROM donjon_secret_kek_check WHERE id = 1")
        if rows:
            self.kek.unwrap(bytes(rows[0][0]), _CHECK_AAD)
            return
        newest = self._db.query(
            "SELECT name, version, wrapped_key FROM donjon_secrets ORDER BY created DESC LIMIT 1"
        )
        if newest:
            name, version, wrapped = newest[0]
            self.kek.unwrap(bytes(wrapped), aad_for(str(name), int(version)))
        check = self.kek.wrap(os.urandom(DATA_KEY_BYTES), _CHECK_AAD)
        self._db.transaction(
            [
                (
                    "INSERT INTO donjon_secret_kek_check (id, kek, wrapped) VALUES (1, ?, ?) "
                    "ON CONFLICT (id) DO NOTHING",
                    (self.kek.name, check),
                )
            ]
        )

    # --- writing ---

    def put(self, name: str, value: bytes) -> SecretVersion:
        """Store ``value`` as the next version of ``name`` (version 1 for a new name)."""
        check_name(name)
        check_size(len(value))
        versions = self.versions(name)
        if len(versions) >= MAX_VERSIONS:
            raise SecretError(
                f"secret {name} has {len(versions)} versions, the most kept; prune old ones first"
            )
        version = (versions[-1].version if versions else 0) + 1
        aad = aad_for(name, version)
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE)
        ciphertext = AESGCM(data_key).encrypt(nonce, value, aad)
        wrapped = self.kek.wrap(data_key, aad)
        created = self._clock().isoformat(timespec="microseconds")
        # The primary key (name, version) refuses a concurrent put that picked the same version.
        self._db.transaction(
            [
                (
                    "INSERT INTO donjon_secrets (name, version, created, size, kek, wrapped_key, nonce, "
                    "ciphertext) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, version, created, len(value), self.kek.name, wrapped, nonce, ciphertext),
                )
            ]
        )
        return SecretVersion(name, version, created, len(value), self.kek.name)

    def prune(self, name: str, keep: int = 1) -> int:
        """Delete all but the newest ``keep`` versions of ``name``; the number deleted."""
        check_name(name)
        if keep < 1:
            raise ValueError("keep at least one version (use delete to remove a secret)")
        versions = self.versions(name)
        if not versions:
            raise SecretNotFound(name)
        doomed = versions[:-keep]
        if doomed:
            self._db.transaction(
                [("DELETE FROM donjon_secrets WHERE name = ? AND version <= ?", (name, doomed[-1].version))]
            )
        return len(doomed)

    def delete(self, name: str) -> int:
        """Delete every version of ``name``; the number deleted."""
        check_name(name)
        versions = self.versions(name)
        if not versions:
            raise SecretNotFound(name)
        self._db.transaction([("DELETE FROM donjon_secrets WHERE name = ?", (name,))])
        return len(versions)

    # --- reading ---

    def versions(self, name: str | None = None) -> list[SecretVersion]:
        """Every stored version (of ``name``), oldest first, without values."""
        where, params = ("WHERE name = ?", (name,)) if name is not None else ("", ())
        rows = self._db.query(
            f"SELECT name, version, created, size, kek FROM donjon_secrets {where} ORDER BY name, version",
            params,
        )
        return [SecretVersion(str(n), int(v), str(c), int(s), str(k)) for n, v, c, s, k in rows]

    def get(self, name: str, version: int | None = None) -> SecretValue:
        """The value of ``name`` (its newest version unless ``version``), decrypted."""
        check_name(name)
        if version is None:
            rows = self._db.query(
                "SELECT version, created, wrapped_key, nonce, ciphertext FROM donjon_secrets "
                "WHERE name = ? ORDER BY version DESC LIMIT 1",
                (name,),
            )
        else:
            rows = self._db.query(
                "SELECT version, created, wrapped_key, nonce, ciphertext FROM donjon_secrets "
                "WHERE name = ? AND version = ?",
                (name, version),
            )
        if not rows:
            raise SecretNotFound(name, version)
        got, created, wrapped, nonce, ciphertext = rows[0]
        aad = aad_for(name, int(got))
        try:
            data_key = self.kek.unwrap(bytes(wrapped), aad)
            value = AESGCM(data_key).decrypt(bytes(nonce), bytes(ciphertext), aad)
        except KekUnwrapError:
            raise
        except (InvalidTag, ValueError) as e:
            raise SecretUnreadable(name, int(got), "the ciphertext or its key was altered") from e
        return SecretValue(name, int(got), str(created), value)


def open_store(
    backend: str, *, path: Path | None, dsn: str | None, kek: Kek, check: bool = True
) -> SecretStore:
    """The store beside the log (``[log] backend``); ``check``: refuse a wrong KEK now."""
    if backend == "postgres":
        assert dsn is not None
        store = SecretStore.postgres(dsn, kek)
    else:
        assert path is not None
        store = SecretStore.sqlite(path, kek)
    if check:
        try:
            store.check_kek()
        except BaseException:
            store.close()
            raise
    return store
