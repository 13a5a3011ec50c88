"""Workload config: ``Donjon.toml``, a superset of ``Enarx.toml``; and the workload digest.

Pure (no I/O): :func:`parse_config` takes the file's bytes, :func:`workload_digest` the
module's bytes. Reading files is the caller's job (``donjon.runtime``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from donjon.config.digest import WORKLOAD_DIGEST_LABEL, canonical_config, module_digest, workload_digest
from donjon.config.errors import (
    ConfigError,
    ConfigSyntaxError,
    ConfigWarning,
    DuplicateName,
    InvalidValue,
    MissingKey,
    UnknownKey,
)
from donjon.config.limits import Limits
from donjon.config.model import (
    BACKEND_NAMES,
    DEFAULT_FILES,
    ConnectEntry,
    DirEntry,
    FileEntry,
    ListenEntry,
    StdioEntry,
    WorkloadConfig,
    default_port,
)

if TYPE_CHECKING:
    from donjon.config.parse import MAX_CONFIG_BYTES, ParsedConfig, parse_config


def __getattr__(name: str) -> Any:
    # The parser (tomllib, urllib) loads on first use: ``donjon run`` without a config
    # never needs it, and start-up time is measured (benchmarks/bench_run.py).
    if name in ("MAX_CONFIG_BYTES", "ParsedConfig", "parse_config"):
        from donjon.config import parse

        return getattr(parse, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_FILES",
    "MAX_CONFIG_BYTES",
    "WORKLOAD_DIGEST_LABEL",
    "ConfigError",
    "ConfigSyntaxError",
    "ConfigWarning",
    "ConnectEntry",
    "DirEntry",
    "DuplicateName",
    "FileEntry",
    "InvalidValue",
    "Limits",
    "ListenEntry",
    "MissingKey",
    "ParsedConfig",
    "StdioEntry",
    "UnknownKey",
    "WorkloadConfig",
    "canonical_config",
    "default_port",
    "module_digest",
    "parse_config",
    "workload_digest",
]
