"""``[limits]`` enforced on real guests: memory.grow answers -1 at the bound, the host's memory stays
bounded, 64-bit and multiple memories are refused unless the config allows them, oversized modules
are refused before they run, and a deadline stops a guest that never ends (issue 9, finding 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import wasmtime

from donjon.cli import main
from donjon.cli.run import EXIT_DEADLINE
from donjon.config import Limits
from donjon.runtime import EngineSettings, cache_key
from donjon.runtime.limits import engine_settings

EXIT_USAGE = 2
MIB = 1 << 20


def module(tmp_path: Path, name: str, wat: str) -> str:
    """A binary module (as a toolchain would ship it) from WebAssembly text."""
    path = tmp_path / f"{name}.wasm"
    path.write_bytes(wasmtime.wat2wasm(textwrap.dedent(wat)))
    return str(path)


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "Donjon.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


# Starting at 16 MiB, grows memory 0 16 MiB at a time, without touching it, until memory.grow answers -1 or
# MAX_PAGES is reached; exits with the memory's final size in 16 MiB units (at most 255).
GROW_UNTOUCHED = """
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") {index} 256)
  (func (export "_start")
    (local $n {index})
    (block $done
      (loop $grow
        (br_if $done (i32.eqz ({index}.lt_u (memory.size) ({index}.const {max_pages}))))
        (br_if $done ({index}.eq (memory.grow ({index}.const 256)) ({index}.const -1)))
        (br $grow)))
    (local.set $n ({index}.div_u (memory.size) ({index}.const 256)))
    (call $exit (select (i32.const 255) (i32.wrap_{index}_{wrap} (local.get $n))
                        ({index}.gt_u (local.get $n) ({index}.const 255))))))
"""


def grow_untouched(tmp_path: Path, *, memory64: bool = False, max_pages: int = 1 << 20) -> str:
    if memory64:
        wat = GROW_UNTOUCHED.format(index="i64", max_pages=max_pages, wrap="")
        wat = wat.replace("i32.wrap_i64_", "i32.wrap_i64")
    else:
        wat = GROW_UNTOUCHED.format(index="i32", max_pages=max_pages, wrap="")
        wat = wat.replace("(i32.wrap_i32_ (local.get $n))", "(local.get $n)")
    return module(tmp_path, "grow64" if memory64 else "grow32", wat)


def test_memory_grow_fails_at_the_default_limit(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Unbounded before: 4 GiB (wasm32's maximum) here; now 1 GiB, the default, 64 x 16 MiB."""
    assert main(["run", grow_untouched(tmp_path)]) == 64
    capfd.readouterr()


def test_memory64_guest_is_bounded_when_the_config_allows_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A 64-bit memory is held to limits.memory like a 32-bit one (it stopped only at the guest's
    own cap of 512 MiB before). wasmtime moves a growing 64-bit memory and copies it, so even
    untouched pages become host memory: without the cap this guest took all the host had."""
    guest = grow_untouched(tmp_path, memory64=True, max_pages=8192)  # 512 MiB
    conf = config(tmp_path, '[limits]\nmemory64 = true\nmemory = "64 MiB"\n')
    assert main(["run", "--config", conf, guest]) == 4
    capfd.readouterr()


def test_memory64_module_is_refused_by_default(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    guest = grow_untouched(tmp_path, memory64=True, max_pages=8192)
    assert main(["run", guest]) == EXIT_USAGE
    err = capfd.readouterr().err
    assert "memory64 must be enabled" in err
    assert "set memory64 = true in [limits]" in err
    assert err.startswith("donjon: ") and "Traceback" not in err


THREE_MEMORIES = """
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory $a (export "memory") 16)
  (memory $b 16)
  (memory $c 16)
  ;; Each memory grows 1 MiB at a time until memory.grow answers -1 or it holds 64 MiB.
  (func $fill_a (result i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (memory.size $a) (i32.const 1024)))
      (br_if $done (i32.eq (memory.grow $a (i32.const 16)) (i32.const -1)))
      (br $l)))
    (memory.size $a))
  (func $fill_b (result i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (memory.size $b) (i32.const 1024)))
      (br_if $done (i32.eq (memory.grow $b (i32.const 16)) (i32.const -1)))
      (br $l)))
    (memory.size $b))
  (func $fill_c (result i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (memory.size $c) (i32.const 1024)))
      (br_if $done (i32.eq (memory.grow $c (i32.const 16)) (i32.const -1)))
      (br $l)))
    (memory.size $c))
  ;; Exit code: the three memories' total size in MiB.
  (func (export "_start")
    (call $exit (i32.div_u (i32.add (i32.add (call $fill_a) (call $fill_b)) (call $fill_c))
                           (i32.const 16)))))
"""


def test_multi_memory_module_is_refused_by_default(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", module(tmp_path, "three", THREE_MEMORIES)]) == EXIT_USAGE
    err = capfd.readouterr().err
    assert "multiple memories" in err and "set multi_memory = true and memories = N in [limits]" in err


def test_three_memories_share_limits_memory(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """limits.memory bounds the three memories together: 96 MiB is 32 MiB each (each would have
    stopped at the guest's own cap of 64 MiB, 192 MiB in all, before)."""
    conf = config(tmp_path, '[limits]\nmulti_memory = true\nmemories = 3\nmemory = "96 MiB"\n')
    assert main(["run", "--config", conf, module(tmp_path, "three", THREE_MEMORIES)]) == 96
    capfd.readouterr()


def test_more_memories_than_the_limit_are_refused(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    conf = config(tmp_path, "[limits]\nmulti_memory = true\nmemories = 2\n")
    assert main(["run", "--config", conf, module(tmp_path, "three", THREE_MEMORIES)]) == EXIT_USAGE
    err = capfd.readouterr().err
    assert "the module needs more than [limits] allows: resource limit exceeded: memory count too high" in err
    assert "limits.memory = 1 GiB (2 memories, 512 MiB each)" in err


def test_huge_initial_memory_is_refused_at_instantiation(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """2 GiB of initial memory, twice the default: refused before the guest runs (it ran before)."""
    guest = module(
        tmp_path,
        "huge",
        '(module (memory (export "memory") 32768)'
        ' (func (export "_start") (i32.store (i32.const 0) (i32.const 1))))',
    )
    assert main(["run", guest]) == EXIT_USAGE
    err = capfd.readouterr().err
    assert "memory minimum size of 32768 pages exceeds memory limits" in err
    assert "limits.memory = 1 GiB" in err and "Traceback" not in err


def test_tiny_limit_refuses_a_module_whose_initial_memory_exceeds_it(
    examples: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """hello.wasm starts with 257 pages (16 MiB + 64 KiB): more than a 1 MiB limit."""
    conf = config(tmp_path, '[limits]\nmemory = "1 MiB"\n')
    assert main(["run", "--config", conf, str(examples / "hello" / "hello.wasm")]) == EXIT_USAGE
    out, err = capfd.readouterr()
    assert out == ""  # the guest never ran
    assert "memory minimum size of 257 pages exceeds memory limits (limits.memory = 1 MiB (1 memory)" in err


def test_tables_are_bounded(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    grow_table = """
    (module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (table $t 1 funcref)
      ;; table.grow answers -1 past limits.table_elements: exit with the table's final size.
      (func (export "_start")
        (block $done (loop $l
          (br_if $done (i32.eq (table.grow $t (ref.null func) (i32.const 10)) (i32.const -1)))
          (br_if $l (i32.lt_u (table.size $t) (i32.const 200)))))
        (call $exit (table.size $t))))
    """
    conf = config(tmp_path, "[limits]\ntable_elements = 51\n")
    assert main(["run", "--config", conf, module(tmp_path, "table", grow_table)]) == 51
    two_tables = '(module (table 1 funcref) (table 1 funcref) (func (export "_start")))'
    assert main(["run", module(tmp_path, "tables", two_tables)]) == EXIT_USAGE
    assert "table count too high" in capfd.readouterr().err


SPIN = '(module (memory (export "memory") 1) (func (export "_start") (loop br 0)))'


def test_deadline_stops_an_infinite_loop_in_time(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    guest = module(
        tmp_path, "spin", '(module (memory (export "memory") 1) (func (export "_start") (loop br 0)))'
    )
    conf = config(tmp_path, "[limits]\ndeadline = 0.5\n")
    started = time.monotonic()
    assert main(["run", "--config", conf, guest]) == EXIT_DEADLINE == 124
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 10  # the loop never ends by itself; generous for a loaded machine
    err = capfd.readouterr().err
    assert "donjon: guest stopped: it ran past its deadline of 0.5 s (limits.deadline)" in err
    assert not [t for t in threading.enumerate() if t.name == "donjon-deadline"]


# poll_oneoff with one relative clock subscription of an hour: a guest asleep in a host call, where
# no epoch check runs. witx `subscription`: userdata u64 @0, tag u8 @8 (0 = clock), clock id u32 @16
# (1 = monotonic), timeout u64 @24 (ns), precision u64 @32, flags u16 @40; 48 bytes.
SLEEP_AN_HOUR = """
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3600000000000))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))
"""


def test_deadline_stops_a_guest_blocked_in_a_host_call(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    conf = config(tmp_path, "[limits]\ndeadline = 0.3\n")
    handler = signal.getsignal(signal.SIGALRM)
    started = time.monotonic()
    assert main(["run", "--config", conf, module(tmp_path, "sleep", SLEEP_AN_HOUR)]) == EXIT_DEADLINE
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 10  # the deadline, the 1 s grace for the epoch, then SIGALRM
    assert "ran past its deadline of 0.3 s" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGALRM) is handler  # the SIGALRM handler is put back


def test_a_guest_that_finishes_in_time_is_unaffected(examples: Path, tmp_path: Path) -> None:
    conf = config(tmp_path, 'args = ["1000"]\n[limits]\ndeadline = 60\n')
    assert main(["run", "--config", conf, str(examples / "compute" / "compute.wasm")]) == 0
    # The timer is cancelled when the guest ends: no thread waits out the 60 s.
    assert not [t for t in threading.enumerate() if t.name == "donjon-deadline"]


def test_cache_key_follows_the_engine_features() -> None:
    """A module compiled with memory64 (or multi-memory, or epoch checks) on is never reused by an
    engine with them off: the engine fingerprint, so the cache key, differs."""
    default = engine_settings(Limits())
    assert default == EngineSettings()
    variants = [
        engine_settings(Limits(memory64=True)),
        engine_settings(Limits(multi_memory=True, memories=2)),
        engine_settings(Limits(deadline_ms=1000)),
    ]
    keys = {cache_key(b"\x01" * 32, s.fingerprint()) for s in [default, *variants]}
    assert len(keys) == 4
    # Store limits are not compiled in: a different memory bound reuses the compiled module.
    assert engine_settings(Limits(memory=MIB * 64)) == default
    assert engine_settings(Limits(memory=4 << 30, memory64=True)).memory_reservation is None


def test_a_large_64_bit_memory_is_reserved_whole_so_it_never_moves() -> None:
    """Growing past its reservation, wasmtime moves a memory and copies it, committing untouched
    pages (the 5.5 GiB of finding 8); a share above the default 4 GiB is reserved in full."""
    settings = engine_settings(Limits(memory=(6 << 30) + 1000, memory64=True))
    assert settings.memory_reservation == (6 << 30) + 65536  # whole pages
    assert "reservation=6442516480" in settings.fingerprint()
    # The engine takes it (address space only; nothing is committed).
    wasmtime.Module(settings.make_engine(), wasmtime.wat2wasm("(module (memory i64 1))"))


def test_memory64_module_cached_with_memory64_on_is_refused_without_it(
    tmp_path: Path, isolated_cache: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    guest = grow_untouched(tmp_path, memory64=True, max_pages=512)
    conf = config(tmp_path, "[limits]\nmemory64 = true\n")
    assert main(["run", "-v", "--config", conf, guest]) == 2  # 512 pages = 2 x 16 MiB
    assert "module cache: miss" in capfd.readouterr().err
    assert list(isolated_cache.glob("*.cwasm"))  # the compiled module is in the cache
    assert main(["run", "-v", guest]) == EXIT_USAGE
    err = capfd.readouterr().err
    assert "memory64 must be enabled" in err and "module cache: hit" not in err


def _vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/PID/status")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_host_memory_stays_bounded_while_the_guest_touches_all_it_can(examples: Path, tmp_path: Path) -> None:
    """grow.wasm writes every page it gets, so the host commits it; with a 64 MiB limit it gets
    64 MiB (16 of them its initial memory) and the Keep's peak RSS stays below that plus Donjon's
    own. Without the limit it took all 512 MiB of its own cap (4 GiB without the cap)."""
    conf = config(
        tmp_path,
        """\
        args = ["512"]
        env = { GROW_WAIT = "1" }
        [limits]
        memory = "64 MiB"
        """,
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "donjon", "run", "--config", conf, str(examples / "grow" / "grow.wasm")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        line = child.stdout.readline()  # the guest holds its memory until stdin closes
        peak_kib = _vm_hwm_kib(child.pid)
        child.stdin.close()
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert line == "grew 47 MiB, memory.grow failed\n"
    # Donjon itself (Python, wasmtime, the compiled module) peaks well under 128 MiB here.
    assert peak_kib < (64 + 128) * 1024, f"peak RSS {peak_kib} KiB"


def test_quick_run_flags_set_the_limits(
    examples: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    grow = str(examples / "grow" / "grow.wasm")
    assert main(["run", "--max-memory", "32 MiB", grow, "512"]) == 0
    assert capfd.readouterr().out == "grew 15 MiB, memory.grow failed\n"  # 16 MiB + 1 page initially
    spin = module(
        tmp_path, "spin", '(module (memory (export "memory") 1) (func (export "_start") (loop br 0)))'
    )
    assert main(["run", "--deadline=0.2", spin]) == EXIT_DEADLINE
    capfd.readouterr()
    # They are the quick run's [limits]: part of its digest, spelled any way.
    assert main(["run", "--print-digest", grow]) == 0
    default = capfd.readouterr().out
    assert main(["run", "--print-digest", "--max-memory", "1073741824", grow]) == 0
    assert capfd.readouterr().out == default
    assert main(["run", "--print-digest", "--max-memory", "512 MiB", grow]) == 0
    assert capfd.readouterr().out != default


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--max-memory", "64 MB"], "--max-memory must be a number of bytes"),
        (
            ["--max-memory", "1000"],
            "--max-memory is 1000 B: less than one 64 KiB page",
        ),
        (["--deadline", "soon"], "--deadline 'soon': expected seconds"),
        (["--deadline", "0"], "--deadline must be a positive number of seconds"),
        (["--config", "Donjon.toml", "--deadline", "1"], "put limits in its [limits] table"),
    ],
)
def test_bad_limit_flags_are_usage_errors(
    examples: Path, argv: list[str], says: str, capfd: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *argv, str(examples / "hello" / "hello.wasm")]) == EXIT_USAGE
    err = capfd.readouterr().err
    assert err.startswith("donjon run: error: ") and says in err


def test_gc_module_is_refused(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The GC proposal's heap lies outside [limits] memories (wasmtime enables GC by default)."""
    gc = """
    (module
      (type $cell (struct (field i64)))
      (memory (export "memory") 1)
      (func (export "_start") (drop (struct.new $cell (i64.const 1)))))
    """
    assert main(["run", module(tmp_path, "gc", gc)]) == EXIT_USAGE
    err = capfd.readouterr().err
    assert "without the gc feature" in err and "the WebAssembly GC proposal is not supported" in err
