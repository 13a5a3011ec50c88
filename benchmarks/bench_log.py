"""The decision log: append throughput of the transparency log beside the hash chain it replaced,
and what a 100,000-entry log costs (appends, proofs, a full verify).

Reproduce:

    .venv/bin/python benchmarks/bench_log.py [--baseline main] [--appends 2000] [--postgres DSN]

The baseline is the hash-chained log of ``--baseline`` (a git revision), extracted with
``git archive`` into a temporary directory; each side runs in its own process with the same
records (~1 KB, like an issued decision with its claims):

- **sequential**: one thread, one append per commit (each waits for its fsync);
- **concurrent**: 32 threads appending at once (group commit shares the transactions).

Reported: appends/s and the appending process's CPU time per append, and the ratio new/old.
Then, on the new log only: a log of 100,000 entries is built, and a single append, an
inclusion proof, a consistency proof and ``log verify`` are timed at that size beside the
same at 1,000 entries (an append must not grow with the log: the frontier is kept, nothing
is re-hashed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def record(i: int) -> dict[str, Any]:
    return {
        "decision": "issued",
        "path": "native",
        "serial": f"{i:040x}",
        "spiffe_id": "spiffe://bench.test/sim/bench",
        "dns_names": ["web.example.org"],
        "not_after": "2026-01-01T04:00:00+00:00",
        "rule": "workload[0]",
        "simulated": True,
        "certificate_sha256": f"{i:064x}",
        "csr_key": "ab" * 32,
        "csr_sha256": "cd" * 32,
        "evidence_kind": "snp-report",
        "evidence_sha256": "ef" * 32,
        "policy_digest": "01" * 32,
        "workload_digest": "23" * 32,
        "nonce_time": "2026-01-01T00:00:00+00:00",
        "fresh": True,
        "collateral": "steward",
        "claims": {
            "tee": "sev-snp",
            "measurement": "45" * 48,
            "tcb_status": "UpToDate",
            "report_data": "67" * 64,
            "tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
            "debug": False,
            "simulated": True,
        },
    }


# --- one side, in its own process ---


def _open(kind: str, backend: str, where: str) -> Any:
    if kind == "old":
        if backend == "sqlite":
            from donjon.steward.sqlite_log import SqliteLog

            return SqliteLog(where)
        from donjon.steward.postgres_log import PostgresLog

        return PostgresLog(where)
    from donjon.steward.logkey import create_log_key, load_log_signer

    key = Path(tempfile.gettempdir()) / f"bench-log-key-{os.getpid()}.pem"
    if not key.exists():
        create_log_key(key, "bench.test/log")
    signer = load_log_signer(key, "bench.test/log")
    if backend == "sqlite":
        from donjon.steward.sqlite_log import SqliteLog as NewSqlite

        return NewSqlite(where, signer)
    from donjon.steward.postgres_log import PostgresLog as NewPostgres

    return NewPostgres(where, signer)


def worker(kind: str, backend: str, where: str, appends: int) -> dict[str, float]:
    store = _open(kind, backend, where)
    records = [record(i) for i in range(appends * 2)]
    for r in records[:20]:  # warm-up
        store.append(r, "2026-01-01T00:00:00+00:00")
    cpu, wall = time.process_time(), time.perf_counter()
    for r in records[20:appends]:
        store.append(r, "2026-01-01T00:00:00+00:00")
    n = appends - 20
    seq_rate = n / (time.perf_counter() - wall)
    seq_cpu = (time.process_time() - cpu) / n * 1e6
    threads = 32
    per = appends // threads
    chunks = [records[appends + t * per : appends + (t + 1) * per] for t in range(threads)]

    def run(chunk: list[dict[str, Any]]) -> None:
        for r in chunk:
            store.append(r, "2026-01-01T00:00:00+00:00")

    ts = [threading.Thread(target=run, args=(c,)) for c in chunks]
    cpu, wall = time.process_time(), time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    n = per * threads
    con_rate = n / (time.perf_counter() - wall)
    con_cpu = (time.process_time() - cpu) / n * 1e6
    store.close()
    return {"seq_rate": seq_rate, "seq_cpu_us": seq_cpu, "con_rate": con_rate, "con_cpu_us": con_cpu}


def large(entries: int) -> dict[str, float]:
    """The new log at 1,000 and at ``entries`` entries: append, proofs, verify."""
    from donjon.tlog.checkpoint import open_checkpoint
    from donjon.tlog.entry import canonical_json

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = _open("new", "sqlite", str(Path(tmp) / "log.db"))
        verifier = store.verifier
        size = 0
        for target in (1000, entries):
            # Build in batches of 1,000 through the store's own commit path (as group commit would).
            while size < target:
                batch = [
                    (canonical_json(record(i)), record(i), "t") for i in range(size, min(size + 1000, target))
                ]
                store._commit_batch_on(store._conn(), batch)
                size += len(batch)
            label = "1k" if target == 1000 else "big"
            t = time.perf_counter()
            for i in range(50):
                store.append(record(size + i), "t")
            size += 50
            out[f"append_ms_{label}"] = (time.perf_counter() - t) / 50 * 1000
            checkpoint = open_checkpoint(store.checkpoint(), verifier)
            t = time.perf_counter()
            for i in range(200):
                store.inclusion_proof((i * 7919) % checkpoint.size, checkpoint.size)
            out[f"inclusion_ms_{label}"] = (time.perf_counter() - t) / 200 * 1000
            t = time.perf_counter()
            for i in range(200):
                store.consistency_proof(1 + (i * 7919) % (checkpoint.size - 1), checkpoint.size)
            out[f"consistency_ms_{label}"] = (time.perf_counter() - t) / 200 * 1000
            t = time.perf_counter()
            result = store.verify(verifier)
            out[f"verify_s_{label}"] = time.perf_counter() - t
            out[f"size_{label}"] = result.size
        store.close()
        out["db_mb"] = (Path(tmp) / "log.db").stat().st_size / 1e6
    return out


# --- the driver ---


def _run_side(kind: str, src: Path, backend: str, where: str, appends: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            kind,
            "--backend",
            backend,
            "--where",
            where,
            "--appends",
            str(appends),
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _pg_database(dsn: str, name: str) -> str:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return dsn.rsplit("/", 1)[0] + "/" + name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--baseline", default="main", help="git revision holding the hash-chained log (default main)"
    )
    ap.add_argument("--appends", type=int, default=2000, help="appends per measurement")
    ap.add_argument("--entries", type=int, default=100_000, help="size of the large log")
    ap.add_argument("--postgres", default=os.environ.get("DONJON_TEST_POSTGRES_DSN"), help="PostgreSQL DSN")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds per side (best is kept)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--backend", default="sqlite", help=argparse.SUPPRESS)
    ap.add_argument("--where", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.backend, args.where, args.appends)))
        return 0
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        base.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
        sides = {"old": base / "src", "new": ROOT / "src"}
        backends = ["sqlite"] + (["postgres"] if args.postgres else [])
        for backend in backends:
            best: dict[str, dict[str, float]] = {}
            for r in range(args.rounds):
                for kind in ("old", "new"):
                    if backend == "sqlite":
                        where = str(Path(tmp) / f"{kind}-{r}.db")
                    else:
                        where = _pg_database(args.postgres, f"bench_log_{kind}_{r}_{os.getpid()}")
                    got = _run_side(kind, sides[kind], backend, where, args.appends)
                    prev = best.get(kind)
                    if (
                        prev is None
                        or got["seq_rate"] + got["con_rate"] > prev["seq_rate"] + prev["con_rate"]
                    ):
                        best[kind] = got
            rows.append((backend, best["old"], best["new"]))
        big = large(args.entries)
    print(f"Decision log appends: hash chain ({rev}) vs transparency log, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; best of {args.rounds} interleaved rounds")  # fmt: skip
    print(
        f"{'log':<9}{'mode':<12}{'old /s':>9}{'new /s':>9}{'new/old':>9}{'old µs CPU':>12}{'new µs CPU':>12}"
    )
    for backend, old, new in rows:
        for mode, rate, cpu in (
            ("sequential", "seq_rate", "seq_cpu_us"),
            ("32 threads", "con_rate", "con_cpu_us"),
        ):
            print(f"{backend:<9}{mode:<12}{old[rate]:>9.0f}{new[rate]:>9.0f}{new[rate] / old[rate]:>9.2f}"
                  f"{old[cpu]:>12.0f}{new[cpu]:>12.0f}")  # fmt: skip
    print(f"\nTransparency log (SQLite) at {int(big['size_1k'])} and {int(big['size_big'])} entries "
          f"({big['db_mb']:.0f} MB):")  # fmt: skip
    print(f"{'':<28}{'1k':>10}{'large':>10}{'ratio':>8}")
    for label, key in (
        ("append (ms, one commit)", "append_ms"),
        ("inclusion proof (ms)", "inclusion_ms"),
        ("consistency proof (ms)", "consistency_ms"),
        ("log verify (s)", "verify_s"),
    ):
        a, b = big[f"{key}_1k"], big[f"{key}_big"]
        print(f"{label:<28}{a:>10.3f}{b:>10.3f}{b / a:>8.2f}")
    print("command: .venv/bin/python benchmarks/bench_log.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
