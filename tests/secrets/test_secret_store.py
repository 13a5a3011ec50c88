"""The store and the KEK: envelope encryption, what a stolen database holds, files and names."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from donjon.steward.secrets import (
    BadSecretName,
    FileKek,
    KekError,
    KekUnwrapError,
    SecretNotFound,
    SecretTooLarge,
    SecretUnreadable,
    create_file_kek,
)
from donjon.steward.secrets.kek import Kek
from donjon.steward.secrets.names import MAX_SECRET_BYTES, check_name
from donjon.steward.secrets.store import SecretStore, aad_for, open_store

VALUE = b"s3cr3t-" + bytes(range(256))


@pytest.fixture
def kek(tmp_path: Path) -> FileKek:
    return create_file_kek(tmp_path / "kek.key")


def test_a_stored_value_comes_back_and_the_database_file_never_holds_it(tmp_path: Path, kek: FileKek) -> None:
    db = tmp_path / "log.db"
    with open_store("sqlite", path=db, dsn=None, kek=kek) as store:
        store.put("db-password", VALUE)
        assert store.get("db-password").value == VALUE
    for path in tmp_path.iterdir():
        if path.name.startswith("log.db"):
            assert VALUE not in path.read_bytes() and b"s3cr3t" not in path.read_bytes()


def test_every_version_has_its_own_data_key_and_rotation_keeps_the_old_one_until_pruned(
    tmp_path: Path, kek: FileKek
) -> None:
    with open_store("sqlite", path=tmp_path / "log.db", dsn=None, kek=kek) as store:
        store.put("a", b"one")
        store.put("a", b"two")
        assert [v.version for v in store.versions("a")] == [1, 2]
        assert store.get("a").value == b"two" and store.get("a", 1).value == b"one"
        assert store.prune("a", keep=1) == 1
        with pytest.raises(SecretNotFound):
            store.get("a", 1)
        assert store.delete("a") == 1
        with pytest.raises(SecretNotFound):
            store.get("a")
    with sqlite3.connect(tmp_path / "log.db") as conn:
        keys = conn.execute("SELECT wrapped_key FROM donjon_secrets").fetchall()
    assert keys == []


def test_a_row_moved_to_another_name_or_version_does_not_decrypt(tmp_path: Path, kek: FileKek) -> None:
    with open_store("sqlite", path=tmp_path / "log.db", dsn=None, kek=kek) as store:
        store.put("a", b"value of a")
        store.put("b", b"value of b")
    with sqlite3.connect(tmp_path / "log.db") as conn:
        conn.execute("DELETE FROM donjon_secrets WHERE name = 'b'")
        conn.execute("UPDATE donjon_secrets SET name = 'b' WHERE name = 'a'")
    with (
        open_store("sqlite", path=tmp_path / "log.db", dsn=None, kek=kek) as store,
        pytest.raises(KekUnwrapError),
    ):
        store.get("b")


def test_altered_ciphertext_is_refused_not_served(tmp_path: Path, kek: FileKek) -> None:
    with open_store("sqlite", path=tmp_path / "log.db", dsn=None, kek=kek) as store:
        store.put("a", b"value")
    with sqlite3.connect(tmp_path / "log.db") as conn:
        (ct,) = conn.execute("SELECT ciphertext FROM donjon_secrets").fetchone()
        conn.execute("UPDATE donjon_secrets SET ciphertext = ?", (bytes([ct[0] ^ 1]) + ct[1:],))
    with (
        open_store("sqlite", path=tmp_path / "log.db", dsn=None, kek=kek) as store,
        pytest.raises(SecretUnreadable),
    ):
        store.get("a")


def test_another_kek_is_refused_at_open(tmp_path: Path, kek: FileKek) -> None:
    with open_store("sqlite", path=tmp_path / "log.db", dsn=None, kek=kek) as store:
        store.put("a", b"value")
    other = create_file_kek(tmp_path / "other.key")
    with pytest.raises(KekUnwrapError):
        open_store("sqlite", path=tmp_path / "log.db", dsn=None, kek=other)


def test_the_kek_file_is_0600_created_once_and_never_through_a_symlink(
    tmp_path: Path, umask_000: None
) -> None:
    path = tmp_path / "kek.key"
    create_file_kek(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_size == 32
    with pytest.raises(KekError, match="created once"):
        create_file_kek(path)
    (tmp_path / "target").write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(KekError):
        create_file_kek(tmp_path / "link")
    with pytest.raises(KekError):
        FileKek.open(tmp_path / "link")


@pytest.mark.parametrize(
    ("mode", "size", "match"), [(0o640, 32, "lets others read"), (0o600, 31, "32 bytes")]
)
def test_a_kek_file_readable_by_others_or_of_the_wrong_size_is_refused(
    tmp_path: Path, mode: int, size: int, match: str
) -> None:
    path = tmp_path / "kek.key"
    path.write_bytes(b"k" * size)
    path.chmod(mode)
    with pytest.raises(KekError, match=match):
        FileKek.open(path)


def test_the_file_kek_is_a_kek() -> None:
    assert isinstance(FileKek("k", bytes(32)), Kek)
    wrapped = FileKek("k", bytes(32)).wrap(bytes(32), aad_for("a", 1))
    with pytest.raises(KekUnwrapError):
        FileKek("k", bytes(32)).unwrap(wrapped, aad_for("a", 2))


@pytest.mark.parametrize("name", ["", "a/b", "..", ".", "../etc", "a b", "x" * 129, "é", "a\x00"])
def test_names_that_could_be_paths_or_too_long_are_refused(name: str) -> None:
    with pytest.raises(BadSecretName):
        check_name(name)


def test_a_value_over_the_limit_is_refused(tmp_path: Path, kek: FileKek) -> None:
    with SecretStore.sqlite(tmp_path / "log.db", kek) as store:
        with pytest.raises(SecretTooLarge):
            store.put("big", bytes(MAX_SECRET_BYTES + 1))
        store.put("edge", bytes(MAX_SECRET_BYTES))


def test_a_value_never_appears_in_a_repr(tmp_path: Path, kek: FileKek) -> None:
    with SecretStore.sqlite(tmp_path / "log.db", kek) as store:
        store.put("a", b"hunter2")
        assert "hunter2" not in repr(store.get("a"))
