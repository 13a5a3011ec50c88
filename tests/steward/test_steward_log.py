"""The decision log: hash chain, tamper detection, serialised appends across processes."""

from __future__ import annotations

import multiprocessing
import secrets
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from donjon.steward.log import GENESIS, entry_hash, verify_chain
from donjon.steward.sqlite_log import SqliteLog


def _append_many(path: str, worker: int, count: int) -> None:
    log = SqliteLog(path)
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


def test_chain_links_every_entry(tmp_path):
    log = SqliteLog(tmp_path / "log.db")
    a = log.append({"decision": "issued", "serial": "ab"}, "2026-01-01T00:00:00+00:00")
    b = log.append({"decision": "refused", "check": "binding"}, "2026-01-01T00:00:01+00:00")
    assert (a.seq, b.seq) == (1, 2)
    assert a.prev_hash == GENESIS and b.prev_hash == a.hash
    assert b.hash == entry_hash(a.hash, 2, b.time, b.record)
    assert verify_chain(log.entries()) == (2, None)
    assert log.find_serial("ab") == a
    assert log.find_serial("cd") is None
    log.close()
    log.close()  # closing twice is harmless
    with pytest.raises(RuntimeError):
        log.append({}, "t")


@pytest.mark.parametrize(
    ("sql", "seq", "reason"),
    [
        ("UPDATE decisions SET record = replace(record, 'binding', 'policy') WHERE seq = 3", 3, "content"),
        ("DELETE FROM decisions WHERE seq = 2", 3, "expected entry 2"),
        ("UPDATE decisions SET time = 'yesterday' WHERE seq = 4", 4, "content"),
        ("UPDATE decisions SET prev_hash = zeroblob(32) WHERE seq = 5", 5, "previous-hash"),
    ],
    ids=["edited-record", "deleted-entry", "edited-time", "relinked"],
)
def test_tampering_is_found_at_the_first_break(tmp_path, sql, seq, reason):
    path = tmp_path / "log.db"
    log = SqliteLog(path)
    for i in range(6):
        log.append({"decision": "refused", "check": "binding", "i": i}, f"2026-01-01T00:00:0{i}+00:00")
    log.close()
    with sqlite3.connect(path) as conn:
        conn.execute(sql)
    log = SqliteLog(path)
    count, brk = verify_chain(log.entries())
    assert brk is not None and brk.seq == seq and reason in brk.reason
    assert count == seq - 1 if "expected" not in reason else count == 1
    log.close()


def test_appends_from_two_processes_never_fork(tmp_path):
    path = str(tmp_path / "log.db")
    SqliteLog(path).close()
    _run_in_processes(_append_many, [(path, w, 60) for w in range(2)])
    log = SqliteLog(path)
    entries = list(log.entries())
    assert len(entries) == 120
    assert verify_chain(entries) == (120, None)
    assert {e.record["worker"] for e in entries} == {0, 1}
    log.close()


def test_threads_share_one_store(tmp_path):
    log = SqliteLog(tmp_path / "log.db")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: log.append({"i": i}, "t"), range(80)))
    assert verify_chain(log.entries()) == (80, None)
    log.close()


@pytest.fixture
def pg_dsn(kit):
    base = kit.postgres_dsn()
    name = f"h5_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = base.rsplit("/", 1)[0] + "/" + name
    yield dsn
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _pg_append_many(dsn: str, worker: int, count: int) -> None:
    from donjon.steward.postgres_log import PostgresLog

    log = PostgresLog(dsn)
    for i in range(count):
        log.append({"decision": "issued", "serial": f"{worker:02x}{i:04x}", "worker": worker}, "t")
    log.close()


@pytest.mark.postgres
def test_postgres_chain_and_tamper(pg_dsn):
    from donjon.steward.postgres_log import PostgresLog

    log = PostgresLog(pg_dsn)
    for i in range(5):
        log.append({"decision": "issued", "serial": f"{i:x}"}, f"t{i}")
    assert verify_chain(log.entries()) == (5, None)
    assert log.find_serial("3").seq == 4
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE donjon_decisions SET record = replace(record, 'issued', 'refused') WHERE seq = 2"
        )
    count, brk = verify_chain(log.entries())
    assert count == 1 and brk is not None and brk.seq == 2
    log.close()


@pytest.mark.postgres
def test_postgres_appends_from_two_processes_never_fork(pg_dsn):
    from donjon.steward.postgres_log import PostgresLog

    PostgresLog(pg_dsn).close()
    _run_in_processes(_pg_append_many, [(pg_dsn, w, 50) for w in range(3)])
    log = PostgresLog(pg_dsn)
    entries = list(log.entries())
    assert verify_chain(entries) == (150, None)
    assert {e.record["worker"] for e in entries} == {0, 1, 2}
    log.close()


def test_hash_from_canonical_json_equals_the_definition():
    from donjon.steward.log import canonical_json, entry_hash_canonical

    record = {"b": [1, "é", None], "a": {"z": True, "y": 1.5}, "serial": "ff"}
    assert entry_hash_canonical(
        GENESIS, 7, "2026-01-01T00:00:00+00:00", canonical_json(record)
    ) == entry_hash(GENESIS, 7, "2026-01-01T00:00:00+00:00", record)


def test_group_commit_batches_and_fails_whole_batches():
    import threading
    import time

    from donjon.steward.groupcommit import GroupCommit

    batches: list[list[int]] = []
    gate = threading.Event()

    def commit(items):
        gate.wait(5)
        batches.append(list(items))
        if any(i < 0 for i in items):
            raise OSError("disk full")
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(commit)
    results: dict[int, object] = {}

    def submit(i: int) -> None:
        try:
            results[i] = group.submit(i)
        except OSError as e:
            results[i] = e

    threads = [threading.Thread(target=submit, args=(i,)) for i in (1, 2, 3, -4, 5)]
    threads[0].start()
    time.sleep(0.1)  # the first becomes the leader and blocks in commit; the rest queue up
    for t in threads[1:]:
        t.start()
    time.sleep(0.1)
    gate.set()
    for t in threads:
        t.join(5)
    assert batches[0] == [1]
    assert sorted(i for b in batches[1:] for i in b) == [-4, 2, 3, 5]
    assert results[1] == 10
    # Everything committed together with the failing item failed with it: nothing half-durable.
    failed_batch = next(b for b in batches if -4 in b)
    assert all(isinstance(results[i], OSError) for i in failed_batch)
    assert all(results[i] == i * 10 for b in batches if -4 not in b for i in b)


def _refuse_inserts_sqlite(path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TRIGGER no_more BEFORE INSERT ON decisions "
        "WHEN json_extract(NEW.record, '$.poison') IS NOT NULL BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    conn.commit()
    conn.close()


def test_sqlite_failed_append_commits_nothing_and_the_store_goes_on(tmp_path):
    log = SqliteLog(tmp_path / "log.db")
    log.append({"decision": "issued", "serial": "01"}, "t1")
    _refuse_inserts_sqlite(tmp_path / "log.db")
    with pytest.raises(sqlite3.IntegrityError):
        log.append({"decision": "issued", "poison": True}, "t2")
    entry = log.append({"decision": "issued", "serial": "02"}, "t3")
    assert entry.seq == 2
    assert verify_chain(log.entries()) == (2, None)
    log.close()


@pytest.mark.postgres
def test_postgres_failed_append_commits_nothing_and_the_store_goes_on(pg_dsn):
    from donjon.steward.postgres_log import PostgresLog

    log = PostgresLog(pg_dsn)
    log.append({"decision": "issued", "serial": "01"}, "t1")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION no_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.record LIKE '%poison%' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER no_poison BEFORE INSERT ON donjon_decisions "
            "FOR EACH ROW EXECUTE FUNCTION no_poison()"
        )
    with pytest.raises(psycopg.errors.RaiseException):
        log.append({"decision": "issued", "poison": True}, "t2")
    entry = log.append({"decision": "issued", "serial": "02"}, "t3")
    assert entry.seq == 2
    assert verify_chain(log.entries()) == (2, None)
    assert log.find_serial("02") == entry
    log.close()


def test_no_log_refuses_appends_and_is_empty():
    from donjon.steward.log import NoLog

    log = NoLog()
    with pytest.raises(RuntimeError, match="no decision log"):
        log.append({"decision": "issued"}, "t")
    assert list(log.entries()) == []
    assert log.find_serial("01") is None
    log.close()


def test_group_commit_hands_over_in_bounded_batches_each_item_once():
    import threading
    import time

    from donjon.steward.groupcommit import GroupCommit

    batches: list[list[int]] = []

    def commit(items):
        time.sleep(0.002)  # long enough for others to queue behind the leader
        batches.append(list(items))
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(commit, max_batch=3)
    results: dict[int, int] = {}
    start = threading.Barrier(40)

    def submit(i: int) -> None:
        start.wait(5)
        results[i] = group.submit(i)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert results == {i: i * 10 for i in range(40)}
    assert sorted(i for b in batches for i in b) == list(range(40))
    assert all(1 <= len(b) <= 3 for b in batches)
    assert any(len(b) > 1 for b in batches)  # the commits were shared


def test_group_commit_wrong_result_count_fails_the_batch_and_the_next_goes_on():
    from donjon.steward.groupcommit import GroupCommit

    calls = []

    def commit(items):
        calls.append(list(items))
        return [] if len(calls) == 1 else [i for i in items]

    group: GroupCommit[int, int] = GroupCommit(commit)
    with pytest.raises(RuntimeError, match="returned 0 results"):
        group.submit(1)
    assert group.submit(2) == 2
