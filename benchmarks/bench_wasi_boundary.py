"""Cost of crossing the wasm -> WASI host boundary: Donjon's host vs wasmtime's built-in WASI.

Each case is a small WAT module that loops N calls of one WASI function; both hosts run the same
module on the same engine, side by side, in one process. A run is timed whole (host setup,
instantiation, ``_start``), as a user experiences it. Reported: microseconds per call (best of
``--repeat`` runs) and the ratio Donjon / wasmtime (below 1.0 = Donjon faster).

Reproduce:  /work/venv/bin/python benchmarks/bench_wasi_boundary.py [--calls N] [--repeat R]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime

from donjon.wasi import GuestSpec, PreopenDir, Stdio, run_module

W = "wasi_snapshot_preview1"
PATH_OPEN = (
    f'(import "{W}" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))'
)


def _loop(n: int, body: str) -> str:
    return f"""(local $i i32)
      (loop $l {body}
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const {n}))))"""


def wat_clock(n: int) -> str:
    return f"""(module
      (import "{W}" "clock_time_get" (func $c (param i32 i64 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start") {_loop(n, "(drop (call $c (i32.const 1) (i64.const 0) (i32.const 16)))")}))"""


def wat_random(n: int) -> str:
    return f"""(module
      (import "{W}" "random_get" (func $r (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start") {_loop(n, "(drop (call $r (i32.const 64) (i32.const 16)))")}))"""


def wat_write_file(n: int) -> str:
    # path_open(3, 0, "bench.out", CREAT|TRUNC, FD_WRITE, 0, 0, &fd@8);
    # then n x fd_write(fd, iov@0, 1, &nwritten@12), 16 bytes each.
    body = "(drop (call $w (i32.load (i32.const 8)) (i32.const 0) (i32.const 1) (i32.const 12)))"
    return f"""(module
      {PATH_OPEN}
      (import "{W}" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "\\40\\00\\00\\00\\10\\00\\00\\00")
      (data (i32.const 32) "bench.out")
      (data (i32.const 64) "0123456789abcdef")
      (func (export "_start") (local $i i32)
        (if (call $open (i32.const 3) (i32.const 0) (i32.const 32) (i32.const 9) (i32.const 9)
                        (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 8))
          (then unreachable))
        (loop $l {body}
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const {n}))))))"""


def wat_read_file() -> str:
    # path_open(3, 0, "bench.in", 0, FD_READ, ...); fd_read 4 KiB chunks until 0 bytes.
    return f"""(module
      {PATH_OPEN}
      (import "{W}" "fd_read" (func $r (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "\\00\\10\\00\\00\\00\\10\\00\\00")
      (data (i32.const 32) "bench.in")
      (func (export "_start")
        (if (call $open (i32.const 3) (i32.const 0) (i32.const 32) (i32.const 8) (i32.const 0)
                        (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 8))
          (then unreachable))
        (loop $l
          (if (call $r (i32.load (i32.const 8)) (i32.const 0) (i32.const 1) (i32.const 12))
            (then unreachable))
          (br_if $l (i32.ne (i32.load (i32.const 12)) (i32.const 0))))))"""


def wat_compute(n: int) -> str:
    # A pure compute loop (no WASI calls): both hosts must run it at wasmtime's speed.
    return f"""(module
      (memory (export "memory") 1)
      (func (export "_start") (local $i i32) (local $x i64)
        (loop $l
          (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005))
                                 (i64.const 1442695040888963407)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const {n}))))
        (i64.store (i32.const 0) (local.get $x))))"""


def run_donjon(engine: wasmtime.Engine, module: wasmtime.Module, root: Path) -> float:
    spec = GuestSpec(
        args=["bench"],
        env=[],
        files=[Stdio("stdin"), Stdio("stdout"), Stdio("stderr"), PreopenDir(root, "/", writable=True)],
    )
    store = wasmtime.Store(engine)
    start = time.perf_counter()
    code = run_module(store, module, spec)
    elapsed = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"donjon run failed with exit code {code}")
    return elapsed


def run_builtin(engine: wasmtime.Engine, module: wasmtime.Module, root: Path) -> float:
    # Timed like run_module: host setup, instantiation and _start.
    start = time.perf_counter()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    config = wasmtime.WasiConfig()
    config.argv = ["bench"]
    config.preopen_dir(str(root), "/")
    store.set_wasi(config)
    instance = linker.instantiate(store, module)
    start_func = instance.exports(store)["_start"]
    assert isinstance(start_func, wasmtime.Func)
    start_func(store)
    return time.perf_counter() - start


def best(fn: Callable[[], float], repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=200_000, help="calls per trivial-call run")
    parser.add_argument("--writes", type=int, default=100_000, help="fd_write calls to a file")
    parser.add_argument("--read-mib", type=int, default=64, help="size of the file read in 4 KiB chunks")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    engine = wasmtime.Engine()
    n = args.calls
    chunks = args.read_mib * 256
    cases: list[tuple[str, str, int, str]] = [
        ("clock_time_get", wat_clock(n), n, "us/call"),
        ("random_get(16)", wat_random(n), n, "us/call"),
        ("fd_write 16 B to a file", wat_write_file(args.writes), args.writes, "us/call"),
        (f"fd_read {args.read_mib} MiB in 4 KiB", wat_read_file(), chunks + 1, "us/call"),
        ("compute loop (no calls)", wat_compute(50_000_000), 1, "ms total"),
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="donjon-bench-") as tmp:
        root = Path(tmp)
        with open(root / "bench.in", "wb") as f:
            f.write(os.urandom(1 << 20) * args.read_mib)
        for label, wat, count, unit in cases:
            module = wasmtime.Module(engine, wasmtime.wat2wasm(wat))
            scale = 1e3 if unit == "ms total" else 1e6 / count
            ours = best(lambda m=module: run_donjon(engine, m, root), args.repeat) * scale  # type: ignore[misc]
            theirs = best(lambda m=module: run_builtin(engine, m, root), args.repeat) * scale  # type: ignore[misc]
            rows.append((label, unit, ours, theirs))

    version = importlib.metadata.version("wasmtime")
    print(f"WASI boundary cost: Donjon host vs wasmtime built-in WASI (wasmtime-py {version},")
    print(f"Python {sys.version.split()[0]}, best of {args.repeat})")
    print()
    print(f"{'case':<28} {'unit':<9} {'donjon':>10} {'wasmtime':>10} {'ratio':>7}")
    print("-" * 68)
    for label, unit, ours, theirs in rows:
        print(f"{label:<28} {unit:<9} {ours:>10.3f} {theirs:>10.3f} {ours / theirs:>7.2f}")
    print()
    print("ratio = donjon / wasmtime (below 1.00: Donjon is faster)")
    command = "/work/venv/bin/python benchmarks/bench_wasi_boundary.py"
    options = f"--calls {n} --writes {args.writes} --read-mib {args.read_mib} --repeat {args.repeat}"
    print(f"reproduce: {command} {options}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
