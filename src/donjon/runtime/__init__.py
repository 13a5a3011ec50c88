"""The Keep runtime: the compiled-module cache, and running a workload on a backend.

Backends are ``donjon.backends`` (``Backend`` and ``NilBackend`` are re-exported here).

Light to import: wasmtime and the WASI host are imported only when a module is run.
"""

from __future__ import annotations

from donjon.backends.base import Backend
from donjon.backends.nil import NilBackend
from donjon.runtime.cache import CacheOutcome, ModuleCache, cache_key, default_cache_dir
from donjon.runtime.engine import EngineSettings
from donjon.runtime.errors import (
    BackendRefused,
    BackendUnavailable,
    CacheUnavailable,
    DeadlineExceeded,
    InvalidModule,
    LimitExceeded,
    MissingFile,
    RunError,
    SocketUnavailable,
    Unsupported,
)
from donjon.runtime.keep import RunReport, Workload, guest_spec, load_module, read_module, run_workload

__all__ = [
    "Backend",
    "BackendRefused",
    "BackendUnavailable",
    "CacheOutcome",
    "CacheUnavailable",
    "DeadlineExceeded",
    "EngineSettings",
    "InvalidModule",
    "LimitExceeded",
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
]
