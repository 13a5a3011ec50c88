"""The wasmtime engine Donjon compiles with, and a fingerprint of it for the module cache.

A serialised module is only valid for the same wasmtime build and the same engine
settings (wasmtime also checks this on deserialisation; the fingerprint makes the
cache key reflect it so an upgrade misses instead of failing).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import wasmtime

__all__ = ["EngineSettings", "wasmtime_build_id"]


@dataclass(frozen=True)
class EngineSettings:
    """The engine configuration: Cranelift at ``opt_level="speed"`` (wasmtime's default), and the
    WebAssembly proposals that let a guest take more host memory off unless a workload's
    ``[limits]`` turns them on (``donjon.runtime.limits.engine_settings``).

    * ``wasm_memory64`` and ``wasm_multi_memory``: on by default in wasmtime; off here.
    * GC (``wasm_gc``) is always off: its heap is one more allocation beside the linear memories,
      outside the ``memories`` count, and no WASI preview 1 toolchain emits it.
    * ``epoch_interruption``: on only for a workload with a deadline, since it adds a check to every
      loop and function entry (measured in benchmarks/RESULTS.md).
    * ``memory_reservation``: ``None`` keeps wasmtime's (4 GiB of address space per memory on 64-bit
      hosts). A memory growing past its reservation is moved and copied, and the copy commits host
      memory even for pages the guest never touched; a 64-bit memory allowed more than 4 GiB gets a
      reservation as large as its bound, so it never moves.
    """

    cranelift_opt_level: str = "speed"
    wasm_memory64: bool = False
    wasm_multi_memory: bool = False
    epoch_interruption: bool = False
    memory_reservation: int | None = None

    def make_engine(self) -> wasmtime.Engine:
        import wasmtime

        config = wasmtime.Config()
        config.cranelift_opt_level = self.cranelift_opt_level
        config.wasm_memory64 = self.wasm_memory64
        config.wasm_multi_memory = self.wasm_multi_memory
        config.wasm_gc = False
        config.epoch_interruption = self.epoch_interruption
        if self.memory_reservation is not None:
            config.memory_reservation = self.memory_reservation
        return wasmtime.Engine(config)

    def fingerprint(self) -> str:
        """Everything that makes a compiled artifact valid: wasmtime build, machine, settings.

        Every setting is in: a module compiled with memory64 on must never be loaded into an engine
        with it off (wasmtime checks the features too; the key makes it a clean miss).
        """
        settings = (
            f"cranelift_opt_level={self.cranelift_opt_level},memory64={int(self.wasm_memory64)},"
            f"multi_memory={int(self.wasm_multi_memory)},gc=0,epoch={int(self.epoch_interruption)},"
            f"reservation={self.memory_reservation or 'default'}"
        )
        return f"{wasmtime_build_id()};machine={os.uname().machine};{settings}"


def wasmtime_build_id() -> str:
    """The installed wasmtime package version and its native library's identity (size, mtime).

    ``importlib.metadata`` costs ~25 ms at start-up; the dist-info directory's name and a
    ``stat`` of the library give the same answer for a few microseconds.
    """
    from wasmtime import _ffi

    library = _ffi.filename
    site = library.parent.parent.parent
    versions = sorted(
        name for name in os.listdir(site) if name.startswith("wasmtime-") and name.endswith(".dist-info")
    )
    info = os.stat(library)
    return f"{','.join(versions) or 'wasmtime-unknown'};lib={info.st_size}:{info.st_mtime_ns}"
