"""The Keep runtime: backends, the compiled-module cache, and running a workload.

Light to import: wasmtime and the WASI host are imported only when a module is run.
"""

from __future__ import annotations

from donjon.runtime.backend import DEFAULT_BACKEND, Backend, NilBackend, select_backend
from donjon.runtime.cache import CacheOutcome, ModuleCache, cache_key, default_cache_dir
from donjon.runtime.engine import EngineSettings
from donjon.runtime.errors import (
    BackendRefused,
    BackendUnavailable,
    CacheUnavailable,
    InvalidModule,
    MissingFile,
    RunError,
    SocketUnavailable,
    Unsupported,
)
from donjon.runtime.keep import RunReport, Workload, guest_spec, load_module, read_module, run_workload

__all__ = [
    "DEFAULT_BACKEND",
    "Backend",
    "BackendRefused",
    "BackendUnavailable",
    "CacheOutcome",
    "CacheUnavailable",
    "EngineSettings",
    "InvalidModule",
    "MissingFile",
    "ModuleCache",
    "NilBackend",
    "RunError",
    "RunReport",
    "SocketUnavailable",
    "Unsupported",
    "Workload",
    "cache_key",
    "default_cache_dir",
    "guest_spec",
    "load_module",
    "read_module",
    "run_workload",
    "select_backend",
]
