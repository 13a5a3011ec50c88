"""The secret store on PostgreSQL: the same encryption and the same answers as on SQLite, shared by
replicas (two stores on one database see one set of versions)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from donjon.steward.secrets import KekUnwrapError, create_file_kek
from donjon.steward.secrets.store import open_store

from ..conftest import postgres_dsn

pytestmark = pytest.mark.postgres


@pytest.fixture
def fresh_dsn() -> str:
    """A new database of its own, so that the KEK check row is this test's."""
    import psycopg

    dsn = postgres_dsn()
    name = f"donjon_secrets_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return dsn.rsplit("/", 1)[0] + f"/{name}"


def test_two_replicas_share_the_versions_and_the_rows_hold_no_value(fresh_dsn: str, tmp_path: Path) -> None:
    import psycopg

    kek = create_file_kek(tmp_path / "kek.key")
    with (
        open_store("postgres", path=None, dsn=fresh_dsn, kek=kek) as one,
        open_store("postgres", path=None, dsn=fresh_dsn, kek=kek) as two,
    ):
        one.put("db-password", b"pg-secret-value")
        two.put("db-password", b"pg-secret-value-2")
        assert one.get("db-password").value == b"pg-secret-value-2"
        assert [v.version for v in two.versions("db-password")] == [1, 2]
    with psycopg.connect(fresh_dsn) as conn:
        rows = conn.execute("SELECT name, ciphertext, wrapped_key FROM donjon_secrets").fetchall()
    assert rows and all(b"pg-secret" not in bytes(ct) + bytes(wk) for _, ct, wk in rows)
    other = create_file_kek(tmp_path / "other.key")
    with pytest.raises(KekUnwrapError):
        open_store("postgres", path=None, dsn=fresh_dsn, kek=other)
