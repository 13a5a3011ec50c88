"""The decision log as a transparency log: the tree, its checkpoints, tamper detection, replicas, migration.

The detection matrix tampers with the database the way an attacker with write access
would, then runs ``donjon steward log verify`` (exit 1, naming what and where). The
tree is recomputed in this file from RFC 9162 section 2.1's definitions, not with
``donjon.tlog``, so a re-hash is what an attacker would do, independently.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import secrets
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from donjon.cli import main as cli_main
from donjon.steward.config import load_config
from donjon.steward.log import LegacyLog, LogCorrupt
from donjon.steward.logkey import create_log_key, load_log_signer
from donjon.steward.service import log_signer, open_log
from donjon.steward.sqlite_log import SqliteLog
from donjon.tlog.checkpoint import Checkpoint, open_checkpoint

# --- RFC 9162 2.1.1, written out independently of donjon.tlog ---


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_mth(leaves: list[bytes]) -> bytes:
    """MTH over entry bytes (not hashes), by the recursive definition."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return ref_leaf(leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_nodes(leaves: list[bytes]) -> list[tuple[int, int, bytes]]:
    """Every perfect subtree (level, index, hash): what the nodes table holds for these leaves."""
    out = []
    level = 0
    while 1 << level <= len(leaves):
        width = 1 << level
        for i in range(len(leaves) // width):
            out.append((level, i, ref_mth(leaves[i * width : (i + 1) * width])))
        level += 1
    return out


# --- helpers ---


def _store(tmp_path: Path) -> SqliteLog:
    signer = create_log_key(tmp_path / "log-key.pem", "test.example/log")
    return SqliteLog(tmp_path / "log.db", signer)


def _fill(store, n: int) -> None:
    for i in range(n):
        store.append(
            {"decision": "issued", "serial": f"{i + 1:04x}", "i": i}, f"2026-01-01T00:00:{i % 60:02d}+00:00"
        )


def _entries(db: Path) -> list[bytes]:
    with sqlite3.connect(db) as conn:
        return [bytes(r[0]) for r in conn.execute("SELECT entry FROM log_entries ORDER BY seq")]


def _rehash(conn: sqlite3.Connection) -> None:
    """What an attacker recomputes after changing entries: every stored node."""
    leaves = [bytes(r[0]) for r in conn.execute("SELECT entry FROM log_entries ORDER BY seq")]
    conn.execute("DELETE FROM log_nodes")
    conn.executemany("INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)", ref_nodes(leaves))


def _set_entry(conn: sqlite3.Connection, seq: int, data: bytes) -> None:
    conn.execute("UPDATE log_entries SET entry = ? WHERE seq = ?", (data, seq))


def truncate(k: int) -> Callable[[sqlite3.Connection, int], None]:
    def tamper(conn: sqlite3.Connection, n: int) -> None:
        conn.execute("DELETE FROM log_entries WHERE seq > ?", (n - k,))

    return tamper


def rewrite_first_and_rehash(conn: sqlite3.Connection, n: int) -> None:
    old = bytes(conn.execute("SELECT entry FROM log_entries WHERE seq = 1").fetchone()[0])
    _set_entry(conn, 1, old.replace(b'"decision":"issued"', b'"decision":"refused"'))
    _rehash(conn)


def repoint_serial(conn: sqlite3.Connection, n: int) -> None:
    # Entry 7's certificate now "is" entry 3: the column moves, the hashed bytes stay.
    conn.execute("UPDATE log_entries SET serial = NULL WHERE seq = 7")
    conn.execute("UPDATE log_entries SET serial = '0007' WHERE seq = 3")


def duplicate_key_and_rehash(conn: sqlite3.Connection, n: int) -> None:
    old = bytes(conn.execute("SELECT entry FROM log_entries WHERE seq = 5").fetchone()[0])
    # A parser keeping the last value reads "refused"; one keeping the first reads "issued".
    _set_entry(conn, 5, old.replace(b'{"record":{', b'{"record":{"decision":"refused",'))
    _rehash(conn)


def reorder_and_rehash(conn: sqlite3.Connection, n: int) -> None:
    a, b = (
        bytes(r[0]) for r in conn.execute("SELECT entry FROM log_entries WHERE seq IN (4, 5) ORDER BY seq")
    )
    conn.execute("UPDATE log_entries SET entry = ?, serial = '0005' WHERE seq = 4", (b,))
    conn.execute("UPDATE log_entries SET entry = ?, serial = '0004' WHERE seq = 5", (a,))
    _rehash(conn)


MATRIX = [
    ("truncate-1", truncate(1), "log.truncated", "entry 150"),
    ("truncate-100", truncate(100), "log.truncated", "entry 51"),
    ("rewrite-entry-1-rehash", rewrite_first_and_rehash, "checkpoint.root", "an entry in 1.."),
    ("repointed-serial", repoint_serial, "entry.serial", "entry 3"),
    ("duplicate-key-rehash", duplicate_key_and_rehash, "entry.duplicate_key", "entry 5"),
    ("reordered-rows-rehash", reorder_and_rehash, "entry.seq", "entry 4"),
]


def test_append_read_and_sign(tmp_path):
    log = _store(tmp_path)
    a = log.append({"decision": "issued", "serial": "ab"}, "2026-01-01T00:00:00+00:00")
    b = log.append({"decision": "refused", "check": "binding"}, "2026-01-01T00:00:01+00:00")
    assert (a.seq, b.seq, a.index) == (1, 2, 0)
    # The stored bytes are the canonical entry, and the leaf is their RFC 9162 leaf hash.
    assert (
        a.data == b'{"record":{"decision":"issued","serial":"ab"},"seq":1,"time":"2026-01-01T00:00:00+00:00"}'
    )
    assert _entries(tmp_path / "log.db") == [a.data, b.data]
    checkpoint = open_checkpoint(log.checkpoint(), log.verifier)
    assert checkpoint == Checkpoint("test.example/log", 2, ref_mth([a.data, b.data]))
    assert log.find_serial("ab") == a and log.find_serial("cd") is None
    assert list(log.entries()) == [a, b]
    assert log.verify(log.verifier).size == 2
    log.close()
    log.close()  # closing twice is harmless
    with pytest.raises(RuntimeError):
        log.append({}, "t")


def test_a_new_log_signs_the_empty_tree(tmp_path):
    log = _store(tmp_path)
    checkpoint = open_checkpoint(log.checkpoint(), log.verifier)
    assert checkpoint.size == 0 and checkpoint.root == hashlib.sha256(b"").digest()
    log.close()


def test_a_checkpoint_per_commit_and_proofs_match_the_reference(tmp_path):
    log = _store(tmp_path)
    _fill(log, 37)
    leaves = _entries(tmp_path / "log.db")
    with sqlite3.connect(tmp_path / "log.db") as conn:
        sizes = [r[0] for r in conn.execute("SELECT size FROM log_checkpoints ORDER BY size")]
        stored = sorted(
            (r[0], r[1], bytes(r[2])) for r in conn.execute("SELECT level, idx, hash FROM log_nodes")
        )
    assert sizes == list(range(38))  # one append at a time: one signed checkpoint each, from 0
    assert stored == sorted(ref_nodes(leaves))
    from donjon.tlog.merkle import verify_consistency, verify_inclusion

    root = ref_mth(leaves)
    for i in (0, 1, 17, 36):
        verify_inclusion(ref_leaf(leaves[i]), i, 37, log.inclusion_proof(i, 37), root)
    for m in (1, 2, 16, 31, 36):
        verify_consistency(m, 37, ref_mth(leaves[:m]), root, log.consistency_proof(m, 37))
    log.close()


def test_read_only_store_cannot_append(tmp_path):
    _store(tmp_path).close()
    log = SqliteLog(tmp_path / "log.db")
    with pytest.raises(RuntimeError, match="without its log key"):
        log.append({"decision": "issued"}, "t")
    log.close()


@pytest.mark.parametrize(("name", "tamper", "check", "where"), MATRIX, ids=[m[0] for m in MATRIX])
def test_log_verify_detection_matrix(env, capsys, name, tamper, check, where):
    config = load_config(env.config)
    log = open_log(config, signer=log_signer(config))
    _fill(log, 150)
    log.close()
    assert cli_main(["steward", "log", "verify", "--config", str(env.config)]) == 0
    assert "log OK: 150 entries" in capsys.readouterr().out
    with sqlite3.connect(env.dir / "log.db") as conn:
        tamper(conn, 150)
    assert cli_main(["steward", "log", "verify", "--config", str(env.config)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("log BROKEN") and f"({check})" in out and where in out, out


def test_repointed_serial_never_shows_the_wrong_entry(env, capsys):
    config = load_config(env.config)
    log = open_log(config, signer=log_signer(config))
    _fill(log, 10)
    log.close()
    show = ["steward", "log", "show", "--config", str(env.config), "--format", "json", "--serial"]
    assert cli_main([*show, "0007"]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 7
    with sqlite3.connect(env.dir / "log.db") as conn:
        repoint_serial(conn, 10)
    assert cli_main([*show, "0007"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "serial column says '0007'" in captured.err


def test_an_honest_steward_refuses_to_sign_over_a_tampered_tree(tmp_path):
    log = _store(tmp_path)
    _fill(log, 20)
    log.close()
    with sqlite3.connect(tmp_path / "log.db") as conn:
        rewrite_first_and_rehash(conn, 20)
    signer = load_log_signer(tmp_path / "log-key.pem", "test.example/log")
    # On open it reads the tree's frontier back and compares it with the latest checkpoint it
    # signed: a Steward does not start (so issues nothing) over a rewritten history.
    with pytest.raises(LogCorrupt, match="does not match the latest signed checkpoint"):
        SqliteLog(tmp_path / "log.db", signer)


def test_old_hash_chained_log_is_refused_with_the_fix_and_migrated(env, capsys):
    _write_legacy(env.dir / "log.db", 25)
    # An old Steward directory also has no log key.
    (env.dir / "log-key.pem").unlink()
    (env.dir / "log-key.pub").unlink()
    assert cli_main(["steward", "serve", "--config", str(env.config), "--port", "0"]) == 2
    assert "log migrate" in capsys.readouterr().err
    assert cli_main(["steward", "log", "migrate", "--config", str(env.config)]) == 0
    out = capsys.readouterr().out
    assert "created the log key" in out and "converted 25 entries" in out
    assert (env.dir / "log-key.pem").stat().st_mode & 0o777 == 0o600
    assert cli_main(["steward", "log", "verify", "--config", str(env.config)]) == 0
    assert "25 entries" in capsys.readouterr().out
    # Entries keep their bytes: the leaves are exactly what the old chain hashed.
    with sqlite3.connect(env.dir / "log.db") as conn:
        old = conn.execute("SELECT seq, time, record FROM decisions_hashchain ORDER BY seq").fetchall()
    assert _entries(env.dir / "log.db") == [_legacy_bytes(*row) for row in old]
    assert cli_main(["steward", "log", "migrate", "--config", str(env.config)]) == 0
    assert "nothing to convert" in capsys.readouterr().out
    config = load_config(env.config)
    log = open_log(config, signer=log_signer(config))
    assert log.append({"decision": "issued", "serial": "abc"}, "t").seq == 26
    log.close()


@pytest.mark.parametrize("break_at", [1, 13])
def test_migrate_refuses_a_broken_chain(env, capsys, break_at):
    _write_legacy(env.dir / "log.db", 20)
    with sqlite3.connect(env.dir / "log.db") as conn:
        conn.execute(
            "UPDATE decisions SET record = replace(record, 'issued', 'refused') WHERE seq = ?", (break_at,)
        )
    assert cli_main(["steward", "log", "migrate", "--config", str(env.config)]) == 1
    assert f"entry {break_at}:" in capsys.readouterr().err
    with sqlite3.connect(env.dir / "log.db") as conn:  # nothing converted, nothing renamed
        assert conn.execute("SELECT count(*) FROM decisions").fetchone()[0] == 20
        assert conn.execute("SELECT count(*) FROM log_entries").fetchone()[0] == 0


def _legacy_bytes(seq: int, time: str, record: str) -> bytes:
    return (
        b'{"record":'
        + record.encode()
        + b',"seq":'
        + str(seq).encode()
        + b',"time":'
        + json.dumps(time).encode()
        + b"}"
    )


def _write_legacy(db: Path, n: int) -> None:
    """A log as the hash-chained version wrote it (schema and hashes from that version's docs)."""
    if db.exists():
        db.unlink()
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE decisions (seq INTEGER PRIMARY KEY, time TEXT NOT NULL, record TEXT NOT NULL, "
        "prev_hash BLOB NOT NULL, hash BLOB NOT NULL, serial TEXT)"
    )
    prev = bytes(32)
    for seq in range(1, n + 1):
        record = json.dumps({"decision": "issued", "serial": f"{seq:x}", "é": seq}, sort_keys=True,
                            separators=(",", ":"), ensure_ascii=False)  # fmt: skip
        time = f"2025-01-01T00:00:{seq % 60:02d}+00:00"
        digest = hashlib.sha256(prev + _legacy_bytes(seq, time, record)).digest()
        conn.execute(
            "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?)", (seq, time, record, prev, digest, f"{seq:x}")
        )
        prev = digest
    conn.commit()
    conn.close()


def test_legacy_table_is_refused_by_the_store(tmp_path):
    _write_legacy(tmp_path / "log.db", 3)
    with pytest.raises(LegacyLog, match="log migrate"):
        SqliteLog(tmp_path / "log.db")


def _append_many(path: str, key: str, worker: int, count: int) -> None:
    log = SqliteLog(path, load_log_signer(Path(key), "test.example/log"))
    for i in range(count):
        log.append({"decision": "refused", "worker": worker, "i": i}, f"t{worker}-{i}")
    log.close()


def _run_in_processes(target, argss):
    """Run ``target`` once per argument tuple, each in its own spawned process, and wait for all."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for args in argss]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0


def test_appends_from_two_processes_grow_one_tree(tmp_path):
    _store(tmp_path).close()
    path, key = str(tmp_path / "log.db"), str(tmp_path / "log-key.pem")
    _run_in_processes(_append_many, [(path, key, w, 60) for w in range(2)])
    log = SqliteLog(path)
    signer = load_log_signer(Path(key), "test.example/log")
    assert log.verify(signer.verifier).size == 120
    assert {e.record["worker"] for e in log.entries()} == {0, 1}
    assert open_checkpoint(log.checkpoint(), signer.verifier).root == ref_mth(_entries(tmp_path / "log.db"))
    log.close()


def test_threads_share_one_store(tmp_path):
    log = _store(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: log.append({"i": i}, "t"), range(80)))
    assert log.verify(log.verifier).size == 80
    log.close()


def test_failed_append_commits_nothing_and_the_store_goes_on(tmp_path):
    log = _store(tmp_path)
    log.append({"decision": "issued", "serial": "01"}, "t1")
    conn = sqlite3.connect(tmp_path / "log.db")
    conn.execute(
        "CREATE TRIGGER no_more BEFORE INSERT ON log_entries "
        "WHEN json_extract(CAST(NEW.entry AS TEXT), '$.record.poison') IS NOT NULL "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    conn.commit()
    conn.close()
    with pytest.raises(sqlite3.IntegrityError):
        log.append({"decision": "issued", "poison": True}, "t2")
    entry = log.append({"decision": "issued", "serial": "02"}, "t3")
    assert entry.seq == 2
    assert log.verify(log.verifier).size == 2
    log.close()


def test_no_log_refuses_appends_and_is_empty():
    from donjon.steward.log import NoLog

    log = NoLog()
    with pytest.raises(RuntimeError, match="no decision log"):
        log.append({"decision": "issued"}, "t")
    assert list(log.entries()) == [] and log.find_serial("01") is None and log.checkpoint() is None
    log.close()


# --- PostgreSQL: several replicas, one tree ---


@pytest.fixture
def pg_dsn(kit):
    base = kit.postgres_dsn()
    name = f"h9_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = base.rsplit("/", 1)[0] + "/" + name
    yield dsn
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _pg_append_many(dsn: str, key: str, worker: int, count: int) -> None:
    from donjon.steward.postgres_log import PostgresLog

    log = PostgresLog(dsn, load_log_signer(Path(key), "test.example/log"))
    for i in range(count):
        log.append({"decision": "issued", "serial": f"{worker:02x}{i:04x}", "worker": worker}, "t")
    log.close()


@pytest.mark.postgres
def test_postgres_tree_proofs_and_tamper(pg_dsn, tmp_path):
    from donjon.steward.postgres_log import PostgresLog
    from donjon.tlog.merkle import verify_inclusion

    signer = create_log_key(tmp_path / "log-key.pem", "test.example/log")
    log = PostgresLog(pg_dsn, signer)
    for i in range(5):
        log.append({"decision": "issued", "serial": f"{i:x}"}, f"t{i}")
    assert log.verify(signer.verifier).size == 5
    entry = log.find_serial("3")
    assert entry is not None and entry.seq == 4
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        leaves = [bytes(r[0]) for r in conn.execute("SELECT entry FROM donjon_log_entries ORDER BY seq")]
    verify_inclusion(ref_leaf(leaves[3]), 3, 5, log.inclusion_proof(3, 5), ref_mth(leaves))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE donjon_log_entries SET serial = '3' WHERE seq = 2")
        conn.execute("UPDATE donjon_log_entries SET serial = NULL WHERE seq = 4")
    with pytest.raises(LogCorrupt, match="serial column"):
        log.find_serial("3")
    with pytest.raises(LogCorrupt) as found:
        log.verify(signer.verifier)
    assert found.value.seq == 2 and found.value.check == "entry.serial"
    log.close()


@pytest.mark.postgres
def test_postgres_replicas_grow_one_tree_never_forked(pg_dsn, tmp_path):
    from donjon.steward.postgres_log import PostgresLog

    signer = create_log_key(tmp_path / "log-key.pem", "test.example/log")
    PostgresLog(pg_dsn, signer).close()
    _run_in_processes(_pg_append_many, [(pg_dsn, str(tmp_path / "log-key.pem"), w, 50) for w in range(3)])
    log = PostgresLog(pg_dsn)
    assert log.verify(signer.verifier).size == 150
    assert {e.record["worker"] for e in log.entries()} == {0, 1, 2}
    log.close()


@pytest.mark.postgres
def test_postgres_failed_append_commits_nothing_and_the_store_goes_on(pg_dsn, tmp_path):
    from donjon.steward.postgres_log import PostgresLog

    log = PostgresLog(pg_dsn, create_log_key(tmp_path / "log-key.pem", "test.example/log"))
    log.append({"decision": "issued", "serial": "01"}, "t1")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION no_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF convert_from(NEW.entry, 'UTF8') LIKE '%poison%' THEN RAISE EXCEPTION 'refused'; END IF; "
            "RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER no_poison BEFORE INSERT ON donjon_log_entries "
            "FOR EACH ROW EXECUTE FUNCTION no_poison()"
        )
    with pytest.raises(psycopg.errors.RaiseException):
        log.append({"decision": "issued", "poison": True}, "t2")
    entry = log.append({"decision": "issued", "serial": "02"}, "t3")
    assert entry.seq == 2
    assert log.verify(log.verifier).size == 2
    assert log.find_serial("02") == entry
    log.close()


@pytest.mark.postgres
def test_postgres_migration_from_the_hash_chain(pg_dsn, tmp_path):
    from donjon.steward.postgres_log import PostgresLog

    db = tmp_path / "old.db"
    _write_legacy(db, 30)
    with sqlite3.connect(db) as src, psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE donjon_decisions (seq BIGINT PRIMARY KEY, time TEXT NOT NULL, "
            "record TEXT NOT NULL, prev_hash BYTEA NOT NULL, hash BYTEA NOT NULL, serial TEXT)"
        )
        for row in src.execute("SELECT seq, time, record, prev_hash, hash, serial FROM decisions"):
            conn.execute("INSERT INTO donjon_decisions VALUES (%s, %s, %s, %s, %s, %s)", row)
    signer = create_log_key(tmp_path / "log-key.pem", "test.example/log")
    with pytest.raises(LegacyLog):
        PostgresLog(pg_dsn, signer)
    log = PostgresLog(pg_dsn, signer, legacy_ok=True)
    assert log.has_legacy() and log.migrate_legacy(page=7) == 30
    log.close()
    log = PostgresLog(pg_dsn, signer)
    assert log.verify(signer.verifier).size == 30
    assert log.append({"decision": "issued", "serial": "fff"}, "t").seq == 31
    log.close()


def test_log_key_is_created_private_once_and_never_through_a_symlink(tmp_path, umask_000):
    signer = create_log_key(tmp_path / "log-key.pem", "test.example/log")
    assert (tmp_path / "log-key.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "log-key.pub").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "log-key.pub").read_text().strip() == signer.verifier.vkey()
    assert load_log_signer(tmp_path / "log-key.pem", "test.example/log").verifier == signer.verifier
    with pytest.raises(FileExistsError):
        create_log_key(tmp_path / "log-key.pem", "test.example/log")
    # A planted symlink is refused, and what it points to is not written.
    target = tmp_path / "elsewhere"
    target.write_text("precious")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "log-key.pem").symlink_to(target)
    with pytest.raises(FileExistsError):
        create_log_key(tmp_path / "d" / "log-key.pem", "test.example/log")
    assert target.read_text() == "precious"
    # Loading wants an Ed25519 key (reading through a link is fine: secret mounts are links).
    from donjon.steward.errors import ConfigError

    with pytest.raises(ConfigError, match="not a PEM private key"):
        load_log_signer(tmp_path / "d" / "log-key.pem", "test.example/log")
    with pytest.raises(ConfigError, match=r"does not exist.*log migrate"):
        load_log_signer(tmp_path / "missing.pem", "test.example/log")


def test_init_creates_the_log_key_and_prints_its_verifier_key(tmp_path, capsys):
    d = tmp_path / "s"
    assert cli_main(["steward", "init", "--dir", str(d), "--trust-domain", "corp.test"]) == 0
    out = capsys.readouterr().out
    vkey = (d / "log-key.pub").read_text().strip()
    assert vkey.startswith("corp.test/donjon-steward-log+") and vkey in out
    assert (d / "log-key.pem").stat().st_mode & 0o777 == 0o600
    config = load_config(d / "steward.toml")
    assert (
        config.log_key == d.resolve() / "log-key.pem" and config.log_origin == "corp.test/donjon-steward-log"
    )
    # --force replaces the key (and the CA): a new Steward.
    assert cli_main(["steward", "init", "--dir", str(d), "--trust-domain", "corp.test", "--force"]) == 0
    assert (d / "log-key.pub").read_text().strip() != vkey


def test_verify_reads_one_snapshot_while_the_steward_appends(tmp_path):
    import threading

    log = _store(tmp_path)
    _fill(log, 50)
    done = threading.Event()

    def appender() -> None:
        for i in range(400):
            log.append({"decision": "refused", "i": i}, "t")
        done.set()

    thread = threading.Thread(target=appender)
    thread.start()
    reader = SqliteLog(tmp_path / "log.db")  # another connection, as `log verify` uses
    sizes = []
    while not done.is_set():
        sizes.append(reader.verify(log.verifier).size)  # never a false "truncated" mid-commit
    thread.join(30)
    assert sizes == sorted(sizes) and reader.verify(log.verifier).size == 450
    reader.close()
    log.close()
