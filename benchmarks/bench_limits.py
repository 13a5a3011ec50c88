#!/usr/bin/env python3
"""What ``[limits]`` costs a guest (issue 9, finding 8): each bound against no bound, side by side.

Reproduce (from the repository root):

    python benchmarks/bench_limits.py            # about a minute
    python benchmarks/bench_limits.py --quick    # fewer repetitions, fewer rounds

Rows (the same guest, compiled once per engine, run in-process by ``donjon.wasi.run_module``
with stdout to /dev/null; compilation excluded):

- compute, deadline: examples/compute on an engine with epoch interruption and a store with a
  far deadline (``[limits] deadline``), against the engine without it. Epoch checks sit in every
  loop back-edge and function entry; compute's loop makes no call, the worst case.
- compute, store limits: the store limiter installed (``limit_store``, the default limits)
  against a store without one. The limiter is consulted only when memory or tables grow.
- compute, Donjon's engine: memory64, multi-memory and GC off (Donjon's default) against
  wasmtime's default engine (all on), what ``donjon run`` used before ``[limits]``.
- memory.grow x 16,383: a guest growing its memory one page at a time to 1 GiB, with the
  limiter (at 1 GiB) against without: the limiter's cost per successful grow.

Each cell is the median of N runs, both sides interleaved so drift hits both alike; the verdict is
on CPU time (user + sys of this process).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime

from donjon.config import Limits, WorkloadConfig
from donjon.runtime import EngineSettings
from donjon.runtime.keep import guest_spec
from donjon.runtime.limits import Deadline, engine_settings, limit_store
from donjon.wasi import run_module

ROOT = Path(__file__).resolve().parent.parent

# Grows memory 0 by one page until memory.grow answers -1 or it holds 16,384 pages (1 GiB).
GROW = """
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (block $done (loop $grow
      (br_if $done (i32.ge_u (memory.size) (i32.const 16384)))
      (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
      (br $grow)))))
"""


def cpu_and_wall(fn: Callable[[], None]) -> tuple[float, float]:
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - start_cpu, time.perf_counter() - start_wall


class Guest:
    """One module compiled on one engine, run to completion with the argv ``donjon run`` gives."""

    def __init__(self, settings: EngineSettings, wasm: bytes, args: tuple[str, ...]) -> None:
        self.engine = settings.make_engine()
        self.module = wasmtime.Module(self.engine, wasm)
        self.spec_config = WorkloadConfig(args=args)
        self.null = os.open(os.devnull, os.O_RDWR)

    def run(self, *, limits: Limits | None = None, deadline: float | None = None) -> None:
        store = wasmtime.Store(self.engine)
        if limits is not None:
            limit_store(store, limits)
        spec = guest_spec(self.spec_config, ROOT, (self.null, self.null, 2))
        if deadline is None:
            code = run_module(store, self.module, spec)
        else:
            with Deadline(store, deadline):
                code = run_module(store, self.module, spec)
        assert code == 0, code


def row(name: str, runs: int, ours: Callable[[], None], reference: Callable[[], None], note: str) -> str:
    samples: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    for i in range(runs):
        order = ((0, ours), (1, reference)) if i % 2 == 0 else ((1, reference), (0, ours))
        for side, fn in order:
            samples[side].append(cpu_and_wall(fn))
    cpu = [statistics.median(c for c, _ in samples[side]) for side in (0, 1)]
    wall = [statistics.median(w for _, w in samples[side]) for side in (0, 1)]
    return (
        f"| {name} | {cpu[0]:.3f} | {cpu[1]:.3f} | {cpu[0] / cpu[1]:.3f} | {wall[0] / wall[1]:.3f} | {note} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and rounds")
    opts = parser.parse_args()
    runs = 3 if opts.quick else 7
    rounds = 100_000_000 if opts.quick else 400_000_000
    compute = (ROOT / "examples" / "compute" / "compute.wasm").read_bytes()
    args = (str(rounds),)

    plain = Guest(EngineSettings(), compute, args)
    epoch = Guest(engine_settings(Limits(deadline_ms=3_600_000)), compute, args)

    class WasmtimeDefaults(EngineSettings):
        def make_engine(self) -> wasmtime.Engine:
            config = wasmtime.Config()
            config.cranelift_opt_level = self.cranelift_opt_level
            return wasmtime.Engine(config)

    wasmtime_default = Guest(WasmtimeDefaults(), compute, args)
    grow_wasm = wasmtime.wat2wasm(GROW)
    grow = Guest(EngineSettings(), grow_wasm, ())
    defaults = Limits()
    at_1gib = Limits(memory=(1 << 30) + 65536)

    lines = [
        "| benchmark | with (CPU s) | without (CPU s) | CPU ratio | wall ratio | what |",
        "|---|---:|---:|---:|---:|---|",
        row(
            "compute, deadline",
            runs,
            lambda: epoch.run(limits=defaults, deadline=3600.0),
            lambda: plain.run(limits=defaults),
            f"{rounds:,} rounds; epoch checks on, deadline 1 h",
        ),
        row(
            "compute, store limits",
            runs,
            lambda: plain.run(limits=defaults),
            lambda: plain.run(),
            "the default [limits] installed vs no limiter",
        ),
        row(
            "compute, Donjon's engine",
            runs,
            lambda: plain.run(limits=defaults),
            lambda: wasmtime_default.run(),
            "memory64/multi-memory/GC off + limits vs wasmtime's defaults, no limits",
        ),
        row(
            "memory.grow x 16,383",
            runs,
            lambda: grow.run(limits=at_1gib),
            lambda: grow.run(),
            "one page at a time to 1 GiB, limiter vs none",
        ),
    ]
    print(f"wasmtime-py {wasmtime_version()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print("\n".join(lines))
    print("\nratio = with / without; medians of interleaved runs")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"reproduce: python benchmarks/bench_limits.py{' --quick' if opts.quick else ''}")
    return 0


def wasmtime_version() -> str:
    site = Path(wasmtime.__file__).resolve().parent.parent
    found = sorted(p.name for p in site.glob("wasmtime-*.dist-info"))
    return found[0].removeprefix("wasmtime-").removesuffix(".dist-info") if found else "unknown"


if __name__ == "__main__":
    sys.exit(main())
