"""Enforcing a workload's ``[limits]`` (``donjon.config.limits``) with wasmtime.

Three mechanisms, each wasmtime's own:

* **Engine features** (:func:`engine_settings`): 64-bit and multiple memories exist only when the
  config turns them on; otherwise such a module fails to compile (validation), before anything runs.
* **The store limiter** (:func:`limit_store`, wasmtime's ``StoreLimits`` through
  ``wasmtime_store_limiter``): every linear memory may hold at most ``memory_share`` bytes and every
  table ``table_share`` elements, and the store may create at most ``memories`` memories, ``tables``
  tables and ``instances`` instances. Past the bound, ``memory.grow`` and ``table.grow`` return -1 to
  the guest (WebAssembly Core Specification 2.0, 4.4.7 "memory.grow": failure is allowed), and an
  instantiation that needs more (a large initial memory, one memory too many) fails before the guest
  runs. The limiter is asked *before* wasmtime commits memory, so the host never holds the excess.
* **A deadline** (:class:`Deadline`): the engine compiles epoch checks into loops and function
  entries (``Config.epoch_interruption``); the store traps once the engine's epoch reaches its
  deadline of one tick, and a timer thread advances the epoch when the time is up. The trap is
  ``wasm trap: interrupt``, which :func:`donjon.runtime.run_workload` turns into
  :class:`~donjon.runtime.errors.DeadlineExceeded`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from donjon.config.limits import WASM_PAGE, Limits, format_size
from donjon.runtime.engine import EngineSettings

if TYPE_CHECKING:
    import wasmtime

__all__ = [
    "describe_limits",
    "engine_settings",
    "limit_exceeded",
    "limit_store",
    "refused_feature",
]

#: wasmtime's ``Config::memory_reservation`` on 64-bit hosts: what a wasm32 memory can address.
_DEFAULT_RESERVATION = 4 << 30

# wasmtime's messages when the limiter refuses an instantiation (wasmtime crates/wasmtime/src/runtime/
# limits.rs and vm/instance/allocator.rs): "memory minimum size of N pages exceeds memory limits",
# "table minimum size of N elements exceeds table limits", "resource limit exceeded: memory count too
# high at N" (also "table count", "instance count").
_LIMIT_MARKERS = ("exceeds memory limits", "exceeds table limits", "resource limit exceeded")


def engine_settings(limits: Limits, base: EngineSettings | None = None) -> EngineSettings:
    """``base`` (default: Donjon's) with the proposals and epoch checks that ``limits`` asks for.

    A memory share beyond wasmtime's 4 GiB reservation (only a 64-bit memory can have one) gets a
    reservation of its whole size: address space only, and the memory then never moves, so the host
    never holds an old and a new copy of it, nor commits untouched pages by copying them.
    """
    share = limits.memory_share
    reservation = None
    if share > _DEFAULT_RESERVATION:
        reservation = -(-share // WASM_PAGE) * WASM_PAGE
    return replace(
        base or EngineSettings(),
        wasm_memory64=limits.memory64,
        wasm_multi_memory=limits.multi_memory,
        epoch_interruption=limits.deadline_ms is not None,
        memory_reservation=reservation,
    )


def limit_store(store: wasmtime.Store, limits: Limits) -> None:
    """Install ``limits`` in ``store``'s limiter; call before anything is instantiated in it."""
    store.set_limits(
        memory_size=limits.memory_share,
        table_elements=limits.table_share,
        instances=limits.instances,
        tables=limits.tables,
        memories=limits.memories,
    )


def describe_limits(limits: Limits) -> str:
    """The bounds in the config's own terms, for messages: ``limits.memory = 1 GiB (1 memory), ...``."""
    plural = "memory" if limits.memories == 1 else "memories"
    text = f"limits.memory = {format_size(limits.memory)} ({limits.memories} {plural}"
    if limits.memories > 1:
        text += f", {format_size(limits.memory_share)} each"
    text += f"), limits.tables = {limits.tables}, limits.table_elements = {limits.table_elements}"
    return text + f", limits.instances = {limits.instances}"


def limit_exceeded(message: str) -> bool:
    """Whether an instantiation error is the store limiter's refusal."""
    return any(marker in message for marker in _LIMIT_MARKERS)


def refused_feature(message: str) -> str:
    """A hint for a compile error caused by a proposal ``[limits]`` keeps off, else ``""``.

    wasmtime's validator (wasmparser) says "memory64 must be enabled for 64-bit memories" and
    "multiple memories" for the two proposals, and "... without the gc feature" for GC types.
    """
    if "memory64" in message:
        return " (64-bit memories are off: set memory64 = true in [limits] to allow them)"
    if "multiple memories" in message:
        return " (multiple memories are off: set multi_memory = true and memories = N in [limits])"
    if "gc feature" in message:
        return " (the WebAssembly GC proposal is not supported: its heap is outside [limits])"
    return ""
