"""The transparency log over HTTP: the endpoints on a real server, and a witness (``donjon log audit``).

The witness matrix: a witness holds the checkpoint of a log of 150 entries; the
database is then truncated or rewritten, the way someone holding the database
*and the log key* would (a clean truncation that leaves no trace in the tables, or
a rewrite re-hashed and re-signed), and the Steward goes on logging. The witness
refuses (exit 1) and keeps its state file as it was.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from donjon.audit.verify import AuditRefused, check_inclusion
from donjon.cli import main as cli_main
from donjon.steward.config import load_config
from donjon.steward.logkey import load_log_signer
from donjon.tlog.checkpoint import Checkpoint, open_checkpoint, parse_vkey
from donjon.tlog.merkle import verify_consistency


def _ref_mth(leaves: list[bytes]) -> bytes:
    # RFC 9162 2.1.1, independently of donjon.tlog.
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _ref_mth(leaves[:k]) + _ref_mth(leaves[k:])).digest()


def _ref_nodes(leaves: list[bytes]) -> list[tuple[int, int, bytes]]:
    out, level = [], 0
    while 1 << level <= len(leaves):
        w = 1 << level
        out += [(level, i, _ref_mth(leaves[i * w : (i + 1) * w])) for i in range(len(leaves) // w)]
        level += 1
    return out


def _vkey(env):
    return parse_vkey((env.dir / "log-key.pub").read_text())


def _fill(steward, n: int) -> None:
    for i in range(n):
        steward.log.append(
            {"decision": "issued", "serial": f"{i + 1:04x}", "i": i}, "2026-01-01T00:00:00+00:00"
        )


def _audit(url: str, state: Path, *extra: str) -> int:
    return cli_main(["log", "audit", "--steward", url, "--state", str(state), *extra])


# --- endpoints ---


def test_checkpoint_key_and_inclusion_of_an_issued_certificate(env, kit):
    keep = kit.Keep(env.vendor)
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        leaf = x509.load_pem_x509_certificates(keep.attest(client, srv.url).content)[0]
        r = client.get(f"{srv.url}/log/checkpoint")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        checkpoint = open_checkpoint(r.content, _vkey(env))
        assert checkpoint.origin == "example.org/donjon-steward-log" and checkpoint.size == 1
        assert client.get(f"{srv.url}/log/key").text == (env.dir / "log-key.pub").read_text()
        serial = format(leaf.serial_number, "x")
        answer = client.get(f"{srv.url}/log/proof/inclusion", params={"serial": serial.upper()}).json()
    logged = check_inclusion(
        answer, _vkey(env), serial=serial, certificate_der=leaf.public_bytes(serialization.Encoding.DER)
    )
    assert logged.index == 0 and logged.entry.record["spiffe_id"] == "spiffe://example.org/sim/test/web"
    assert _ref_mth([base64.b64decode(answer["entry"])]) == checkpoint.root
    # The same answer does not vouch for another certificate, nor under another log key.
    with pytest.raises(AuditRefused, match="another certificate"):
        check_inclusion(answer, _vkey(env), serial=serial, certificate_der=b"not this one")
    other = kit.make_env(env.dir.parent / "other", env.vendor)
    with pytest.raises(AuditRefused, match="not signed by the log key"):
        check_inclusion(answer, _vkey(other), serial=serial, certificate_der=leaf.public_bytes(
            serialization.Encoding.DER))  # fmt: skip


def test_consistency_between_two_checkpoints(env, kit):
    steward = env.steward()
    _fill(steward, 13)
    with kit.ServerThread(steward) as srv, httpx.Client() as client:
        old = open_checkpoint(client.get(f"{srv.url}/log/checkpoint").content, _vkey(env))
        _fill(steward, 29)
        doc = client.get(f"{srv.url}/log/proof/consistency", params={"from": old.size}).json()
        new = open_checkpoint(doc["checkpoint"].encode(), _vkey(env))
        assert (doc["from"], doc["to"], new.size) == (13, 42, 42)
        verify_consistency(13, 42, old.root, new.root, [base64.b64decode(h) for h in doc["proof"]])
        same = client.get(f"{srv.url}/log/proof/consistency", params={"from": 42, "to": 42}).json()
        assert same["proof"] == []


@pytest.mark.parametrize(
    ("path", "params", "status", "check"),
    [
        ("/log/proof/inclusion", {}, 400, "log.serial"),
        ("/log/proof/inclusion", {"serial": "xyz"}, 400, "log.serial"),
        ("/log/proof/inclusion", {"serial": "1" * 41}, 400, "log.serial"),
        ("/log/proof/inclusion", {"serial": "-1"}, 400, "log.serial"),
        ("/log/proof/inclusion", [("serial", "01"), ("serial", "02")], 400, "log.query"),
        ("/log/proof/inclusion", {"serial": "01", "index": "0"}, 400, "log.query"),
        ("/log/proof/inclusion", {"serial": "0" * 300}, 400, "log.query"),
        ("/log/proof/inclusion", {"serial": "abcdef"}, 404, "log.not_found"),
        ("/log/proof/consistency", {}, 400, "log.range"),
        ("/log/proof/consistency", {"from": "0"}, 400, "log.range"),
        ("/log/proof/consistency", {"from": "01"}, 400, "log.range"),
        ("/log/proof/consistency", {"from": "abc"}, 400, "log.range"),
        ("/log/proof/consistency", {"from": "5", "to": "4"}, 400, "log.range"),
        ("/log/proof/consistency", {"from": "1", "to": "6"}, 400, "log.range"),
        ("/log/proof/consistency", {"from": "99999999999999999999"}, 400, "log.range"),
        ("/log/proof/consistency", {"from": "1", "to": "-1"}, 400, "log.range"),
        ("/log/checkpoint", {"x": "1"}, 400, "log.query"),
    ],
)
def test_hostile_query_parameters_get_a_named_4xx(env, kit, path, params, status, check):
    steward = env.steward()
    _fill(steward, 5)
    with kit.ServerThread(steward) as srv, httpx.Client() as client:
        r = client.get(f"{srv.url}{path}", params=params)
    assert r.status_code == status and r.json()["check"] == check, r.text


def test_a_repointed_serial_is_never_served_as_the_wrong_entry(env, kit):
    steward = env.steward()
    _fill(steward, 10)
    steward.close()
    with sqlite3.connect(env.dir / "log.db") as conn:
        conn.execute("UPDATE log_entries SET serial = NULL WHERE seq = 7")
        conn.execute("UPDATE log_entries SET serial = '0007' WHERE seq = 3")
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        r = client.get(f"{srv.url}/log/proof/inclusion", params={"serial": "0007"})
        # The column is checked against the hashed bytes: a server fault, not entry 3.
        assert r.status_code == 500 and r.json()["check"] == "log.corrupt"
        assert "0003" not in r.text and "0007" not in r.text


# --- the witness ---


def _clean_truncate(db: Path, keep: int) -> None:
    """Remove the last entries with every trace of them: nodes and checkpoints too."""
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM log_entries WHERE seq > ?", (keep,))
        conn.execute("DELETE FROM log_nodes WHERE (idx + 1) << level > ?", (keep,))
        conn.execute("DELETE FROM log_checkpoints WHERE size > ?", (keep,))


def _resign(env, conn: sqlite3.Connection) -> None:
    """A rewrite covered up by someone holding the log key: re-hash every node, sign the new root."""
    leaves = [bytes(r[0]) for r in conn.execute("SELECT entry FROM log_entries ORDER BY seq")]
    conn.execute("DELETE FROM log_nodes")
    conn.executemany("INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)", _ref_nodes(leaves))
    config = load_config(env.config)
    signer = load_log_signer(config.log_key, config.log_origin)
    note = signer.sign_checkpoint(Checkpoint(signer.name, len(leaves), _ref_mth(leaves)))
    conn.execute("DELETE FROM log_checkpoints")
    conn.execute("INSERT INTO log_checkpoints (size, note) VALUES (?, ?)", (len(leaves), note))


def _rewrite_first(env, db: Path) -> None:
    with sqlite3.connect(db) as conn:
        old = bytes(conn.execute("SELECT entry FROM log_entries WHERE seq = 1").fetchone()[0])
        conn.execute("UPDATE log_entries SET entry = ? WHERE seq = 1", (old.replace(b"issued", b"refused"),))
        _resign(env, conn)


def _duplicate_key(env, db: Path) -> None:
    with sqlite3.connect(db) as conn:
        old = bytes(conn.execute("SELECT entry FROM log_entries WHERE seq = 5").fetchone()[0])
        new = old.replace(b'{"record":{', b'{"record":{"decision":"refused",')
        conn.execute("UPDATE log_entries SET entry = ? WHERE seq = 5", (new,))
        _resign(env, conn)


def _reorder(env, db: Path) -> None:
    with sqlite3.connect(db) as conn:
        a, b = (
            bytes(r[0])
            for r in conn.execute("SELECT entry FROM log_entries WHERE seq IN (4, 5) ORDER BY seq")
        )
        # A clean reorder rewrites the positions inside the bytes too (else the rows say so).
        a, b = a.replace(b'"seq":4', b'"seq":5'), b.replace(b'"seq":5', b'"seq":4')
        conn.execute("UPDATE log_entries SET entry = ?, serial = '0005' WHERE seq = 4", (b,))
        conn.execute("UPDATE log_entries SET entry = ?, serial = '0004' WHERE seq = 5", (a,))
        _resign(env, conn)


WITNESS_MATRIX = [
    ("truncate-1", lambda env, db: _clean_truncate(db, 149), "log.rewritten"),  # same size again, other root
    ("truncate-100", lambda env, db: _clean_truncate(db, 50), "log.truncated"),
    ("rewrite-entry-1-rehash-resign", _rewrite_first, "log.rewritten"),
    ("duplicate-key-rehash-resign", _duplicate_key, "log.rewritten"),
    ("reordered-rows-rehash-resign", _reorder, "log.rewritten"),
]


@pytest.mark.parametrize(("name", "tamper", "check"), WITNESS_MATRIX, ids=[m[0] for m in WITNESS_MATRIX])
def test_witness_with_an_older_checkpoint_catches_it(env, kit, tmp_path, capsys, name, tamper, check):
    state = tmp_path / "witness.json"
    steward = env.steward()
    _fill(steward, 150)
    with kit.ServerThread(steward) as srv:
        assert _audit(srv.url, state, "--log-key", str(env.dir / "log-key.pub")) == 0
        assert "first checkpoint recorded" in capsys.readouterr().out
    seen = state.read_bytes()
    tamper(env, env.dir / "log.db")
    steward = env.steward()  # a Steward restarted on the tampered tables goes on logging
    _fill(steward, 1)
    with kit.ServerThread(steward) as srv:
        assert _audit(srv.url, state) == 1
        out = capsys.readouterr().out
        assert out.startswith(f"REFUSED: {check}"), out
        assert state.read_bytes() == seen  # the witness keeps what it saw
        assert _audit(srv.url, state, "--format", "json") == 1
        assert json.loads(capsys.readouterr().out)["check"] == check


def test_witness_follows_an_honest_log(env, kit, tmp_path, capsys):
    state = tmp_path / "witness.json"
    steward = env.steward()
    key = str(env.dir / "log-key.pub")
    with kit.ServerThread(steward) as srv:
        assert _audit(srv.url, state, "--log-key", key) == 0  # the empty tree
        for n in (1, 7, 64, 3):
            _fill(steward, n)
            assert _audit(srv.url, state) == 0
        assert _audit(srv.url, state) == 0  # nothing new
        out = capsys.readouterr().out
        assert "size 75" in out and "consistent with size 75 seen before" in out
        assert json.loads(state.read_text())["size"] == 75


def test_witness_exit_codes(env, kit, tmp_path, capsys):
    state = tmp_path / "witness.json"
    other = kit.make_env(tmp_path / "other", env.vendor)
    with kit.ServerThread(env.steward()) as srv:
        # No key: a witness never takes it from the log it audits.
        assert _audit(srv.url, state) == 2
        assert "--log-key is required" in capsys.readouterr().err
        # Another log's key: the checkpoint's signature does not verify.
        assert _audit(srv.url, state, "--log-key", str(other.dir / "log-key.pub")) == 1
        assert "checkpoint.signature" in capsys.readouterr().out and not state.exists()
        assert _audit(srv.url, state, "--log-key", str(env.dir / "log-key.pub")) == 0
        # A state file pinning one key and another key given: usage.
        assert _audit(srv.url, state, "--log-key", str(other.dir / "log-key.pub")) == 2
        assert _audit(srv.url, state, "--log-key", str(env.dir / "steward.toml")) == 2
        url = srv.url
    assert _audit(url, state) == 3  # the Steward is gone
    assert "cannot reach" in capsys.readouterr().err
    assert _audit("ftp://x", state) == 2
    state.write_text('{"log_key": "x", "checkpoint": "y"}')
    assert _audit(url, state) == 3
    assert "does not hold a verified checkpoint" in capsys.readouterr().err
    assert cli_main(["log", "audit"]) == 2
    assert cli_main(["log", "audit", "--help"]) == 0
    assert "examples:" in capsys.readouterr().out


def test_a_row_inserted_behind_the_stewards_back_is_not_served(env, kit):
    from donjon.steward.log import LogCorrupt

    steward = env.steward()
    _fill(steward, 3)
    with kit.ServerThread(steward) as srv, httpx.Client() as client:
        with sqlite3.connect(env.dir / "log.db") as conn:
            data = b'{"record":{"decision":"issued","serial":"beef"},"seq":4,"time":"t"}'
            conn.execute("INSERT INTO log_entries (seq, entry, serial) VALUES (4, ?, 'beef')", (data,))
        r = client.get(f"{srv.url}/log/proof/inclusion", params={"serial": "beef"})
        assert r.status_code == 500 and r.json()["check"] == "log.corrupt"
    # And a Steward started on those tables refuses to: they are not a tree it signed.
    with pytest.raises(LogCorrupt, match="lacks node"):
        env.steward()
