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
    """The engine configuration. The defaults are wasmtime's (Cranelift, ``opt_level="speed"``)."""

    cranelift_opt_level: str = "speed"

    def make_engine(self) -> wasmtime.Engine:
        import wasmtime

        config = wasmtime.Config()
        config.cranelift_opt_level = self.cranelift_opt_level
        return wasmtime.Engine(config)

    def fingerprint(self) -> str:
        """Everything that makes a compiled artifact valid: wasmtime build, machine, settings."""
        settings = f"cranelift_opt_level={self.cranelift_opt_level}"
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
