"""The ``[limits]`` table: how much of the host a workload may take, and for how long.

A guest is hostile to its host like any other input (STYLE.md 11): without bounds one guest grew to
3.5 GiB of host memory through ``memory.grow`` (wasm32), 5.5 GiB with a 64-bit memory and 6 GiB with
three memories, enough to make a small Keep's kernel kill it. The bounds are enforced by wasmtime's
store limiter and engine settings (``donjon.runtime.limits``); this module only says what they are.

The values are part of the canonical config, so of the workload digest: a Steward that pins a digest
pins the limits too, and a host operator cannot raise them without changing the workload's identity.
That is also why every default here is a constant and not derived from the host (its RAM, say): the
same config must have the same digest everywhere. docs/run.md "[limits]" is the reference.

Pure: a TOML value in, a :class:`Limits` or the error the caller's ``fail`` raises out.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from donjon.config.errors import ConfigError, InvalidValue, UnknownKey, type_name

__all__ = [
    "DEFAULT_MEMORY",
    "DEFAULT_TABLE_ELEMENTS",
    "LIMIT_KEYS",
    "MAX_DEADLINE_MS",
    "MAX_MEMORY",
    "WASM_PAGE",
    "Limits",
    "format_size",
    "parse_limits",
]

#: A WebAssembly page (WebAssembly Core Specification 2.0, section 2.5.5 "Memories": 64 KiB units).
WASM_PAGE = 64 * 1024

#: 1 GiB for all of a guest's linear memories together. A Keep is a small confidential VM (2 GiB is a
#: common smallest size): 1 GiB of guest plus Donjon itself (about 40 MB: Python, wasmtime, the
#: compiled module) leaves the kernel and page cache room; it is a quarter of what wasm32 can address,
#: far more than the programs Donjon runs need (resvg renders a 1024x768 PNG within 8 MiB). A workload
#: that needs more says so in its config, and that is then part of its identity.
DEFAULT_MEMORY = 1 << 30
#: 2^20 elements for all tables together: about 8 MiB of host memory at wasmtime's 8 bytes per
#: element. LLVM's indirect-function table holds one entry per address-taken function, a few thousand
#: in large programs.
DEFAULT_TABLE_ELEMENTS = 1 << 20
#: 16 TiB: more RAM than any host has, and a reservation (see donjon.runtime.limits) that fits in
#: the 128 TiB of a 47-bit user address space; only to keep numbers sane.
MAX_MEMORY = 1 << 44
#: wasm32 and table64 alike: a table index is at most 2^32 - 1 in any toolchain's output.
_MAX_TABLE_ELEMENTS = 1 << 32
#: Counts of tables, memories and instances; wasmtime's own default allows 10,000 of each.
_MAX_COUNT = 1000
#: A year. A deadline is for bounding a job, not a service; a service has none.
MAX_DEADLINE_MS = 366 * 24 * 3600 * 1000

LIMIT_KEYS = (
    "memory",
    "memories",
    "memory64",
    "multi_memory",
    "tables",
    "table_elements",
    "instances",
    "deadline",
)

_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_SIZE = re.compile(r"\s*([0-9][0-9_]*)\s*([A-Za-z]*)\s*")

#: The validator's ``fail(kind, path, reason)``, which raises a ``ConfigError`` naming key and line.
Fail = Callable[[type[ConfigError], tuple[str | int, ...], str], NoReturn]


@dataclass(frozen=True)
class Limits:
    """A workload's resource bounds, every default filled in (``Limits()`` is the default).

    ``memory`` and ``table_elements`` bound the *sum* over all of the guest's linear memories and
    tables: wasmtime's limiter bounds each one, so each gets an equal share (``memory_share``,
    ``table_share``) of at most ``memories`` (``tables``) of them. ``deadline_ms`` is ``None`` for
    no deadline.
    """

    memory: int = DEFAULT_MEMORY
    memories: int = 1
    memory64: bool = False
    multi_memory: bool = False
    tables: int = 1
    table_elements: int = DEFAULT_TABLE_ELEMENTS
    instances: int = 1
    deadline_ms: int | None = None

    @property
    def memory_share(self) -> int:
        """The most bytes any one linear memory may hold, so that all of them fit in ``memory``."""
        return self.memory // self.memories

    @property
    def table_share(self) -> int:
        """The most elements any one table may hold, so that all of them fit in ``table_elements``."""
        return self.table_elements // self.tables

    def canonical(self) -> dict[str, Any]:
        """The JSON form in the canonical config: integers in bytes and milliseconds, no units."""
        return {
            "memory": self.memory,
            "memories": self.memories,
            "memory64": self.memory64,
            "multi_memory": self.multi_memory,
            "tables": self.tables,
            "table_elements": self.table_elements,
            "instances": self.instances,
            "deadline_ms": self.deadline_ms,
        }


def format_size(size: int) -> str:
    """``size`` bytes as the largest binary unit that divides it exactly: ``"256 MiB"``, ``"1000 B"``."""
    for unit, factor in reversed(_UNITS.items()):
        if size and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"


def parse_limits(value: object, fail: Fail) -> Limits:
    """Validate the ``limits`` table; every error goes through ``fail`` with the key's path."""
    here: tuple[str | int, ...] = ("limits",)
    if not isinstance(value, dict):
        fail(InvalidValue, here, f"must be a table ([limits]), got {type_name(value)}")
    for key in value:
        if key not in LIMIT_KEYS:
            close = difflib.get_close_matches(key, LIMIT_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            fail(
                UnknownKey, (*here, key), f"unknown key in [limits] ({hint}allowed: {', '.join(LIMIT_KEYS)})"
            )
    defaults = Limits()
    memory64 = _flag(value, "memory64", fail, defaults.memory64)
    multi_memory = _flag(value, "multi_memory", fail, defaults.multi_memory)
    memories = _count(value, "memories", fail, defaults.memories)
    if memories > 1 and not multi_memory:
        fail(
            InvalidValue,
            (*here, "memories"),
            f"is {memories}, but more than one memory needs multi_memory = true",
        )
    if multi_memory and memories < 2:
        fail(
            InvalidValue,
            (*here, "multi_memory"),
            "needs memories = N (N >= 2: how many memories the guest may have; they share limits.memory)",
        )
    memory = _size(value, "memory", fail, defaults.memory)
    if memory < memories * WASM_PAGE:
        fail(
            InvalidValue,
            (*here, "memory"),
            f"is {format_size(memory)}: less than one 64 KiB page"
            + (f" for each of the {memories} memories" if memories > 1 else ""),
        )
    tables = _count(value, "tables", fail, defaults.tables)
    table_elements = _integer(value, "table_elements", fail, defaults.table_elements, 0, _MAX_TABLE_ELEMENTS)
    instances = _count(value, "instances", fail, defaults.instances)
    deadline_ms = _deadline(value, fail) if "deadline" in value else None
    return Limits(
        memory=memory,
        memories=memories,
        memory64=memory64,
        multi_memory=multi_memory,
        tables=tables,
        table_elements=table_elements,
        instances=instances,
        deadline_ms=deadline_ms,
    )


def _flag(table: Mapping[str, object], key: str, fail: Fail, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        fail(InvalidValue, ("limits", key), f"must be true or false, got {type_name(value)}")
    return value


def _integer(table: Mapping[str, object], key: str, fail: Fail, default: int, low: int, high: int) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        fail(InvalidValue, ("limits", key), f"must be an integer, got {type_name(value)}")
    if not low <= value <= high:
        fail(InvalidValue, ("limits", key), f"must be between {low} and {high}, got {value}")
    return value


def _count(table: Mapping[str, object], key: str, fail: Fail, default: int) -> int:
    return _integer(table, key, fail, default, 1, _MAX_COUNT)


def _size(table: Mapping[str, object], key: str, fail: Fail, default: int) -> int:
    """Bytes: an integer, or a string of digits and a binary unit (``"256 MiB"``)."""
    path: tuple[str | int, ...] = ("limits", key)
    value = table.get(key, default)
    if isinstance(value, str):
        match = _SIZE.fullmatch(value) if len(value) <= 64 else None
        unit = match.group(2) if match else ""
        if match is None or (unit and unit not in _UNITS):
            hint = ""
            if unit.upper() in ("KB", "MB", "GB", "TB", "K", "M", "G", "T"):
                # "MB" means 10^6 to some and 2^20 to others; a limit must not depend on the reader.
                hint = (
                    f" ({unit!r} is ambiguous: write {unit[0].upper()}iB, 2^10 steps, or a number of bytes)"
                )
            fail(
                InvalidValue,
                path,
                f'must be a number of bytes or a size such as "256 MiB" (units: {", ".join(_UNITS)}), '
                f"got {value[:64]!r}{hint}",
            )
        size = int(match.group(1).replace("_", "")) * _UNITS[unit or "B"]
    elif isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        what = type_name(value)
        fail(InvalidValue, path, f'must be a number of bytes or a size such as "256 MiB", got {what}')
    if not 0 <= size <= MAX_MEMORY:
        fail(InvalidValue, path, f"must be at most {format_size(MAX_MEMORY)}, got {size} bytes")
    return size


def _deadline(table: Mapping[str, object], fail: Fail) -> int:
    """Seconds (an integer or a float with at most millisecond precision) as milliseconds."""
    path: tuple[str | int, ...] = ("limits", "deadline")
    value = table["deadline"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(InvalidValue, path, f"must be a number of seconds, got {type_name(value)}")
    if not math.isfinite(value) or value <= 0:
        fail(InvalidValue, path, f"must be a positive number of seconds, got {value}")
    if value * 1000 > MAX_DEADLINE_MS:  # before rounding: 1e305 s must not overflow to infinity
        fail(InvalidValue, path, f"must be at most {MAX_DEADLINE_MS // 1000} seconds (366 days), got {value}")
    millis = round(value * 1000)
    if millis < 1:
        fail(InvalidValue, path, f"must be at least 0.001 seconds (a millisecond), got {value}")
    if abs(millis - value * 1000) > 1e-9 * millis:  # float error only (0.1 s is 100.00000000000001 ms)
        # The canonical form is whole milliseconds: 1.5 and 1.5000001 must not be two identities
        # that run alike.
        fail(InvalidValue, path, f"has more than millisecond precision: {value}")
    return millis
