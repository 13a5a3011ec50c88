"""``run_module``: instantiate a module with Donjon's WASI host and run its ``_start``."""

from __future__ import annotations

import weakref
from typing import Any

import wasmtime

from . import ffi
from .errors import GuestLinkError, GuestTrap
from .host import MODULE, SIGNATURES, WasiHost, define
from .spec import GuestSpec

# The C callbacks must outlive every instance wasmtime made from them: tie them to the store.
_KEEPALIVE: weakref.WeakKeyDictionary[wasmtime.Store, list[Any]] = weakref.WeakKeyDictionary()


def _imported_functions(module: wasmtime.Module) -> list[str]:
    """The WASI functions ``module`` imports; anything else it imports is a ``GuestLinkError``."""
    names = []
    for imp in module.imports:
        if imp.module != MODULE or imp.name not in SIGNATURES:
            raise GuestLinkError(
                f"module imports {imp.module}.{imp.name}, which Donjon does not provide",
                import_name=f"{imp.module}.{imp.name}",
            )
        names.append(imp.name)
    return list(dict.fromkeys(names))  # a module may import one function twice


def run_module(store: wasmtime.Store, module: wasmtime.Module, spec: GuestSpec) -> int:
    """Instantiate ``module`` with Donjon's ``wasi_snapshot_preview1`` imports, call ``_start``.

    Returns the exit code: 0 when ``_start`` returns, the ``proc_exit`` code otherwise. Raises
    ``GuestLinkError`` (missing import or no ``_start``), ``GuestTrap`` (the guest trapped) or
    ``WasiError`` (a pre-open cannot be opened). Every fd the host opened for the guest is closed
    before returning, also on a trap.
    """
    imported = _imported_functions(module)
    host = WasiHost(spec, ffi.store_context(store))
    try:
        linker = wasmtime.Linker(store.engine)
        _KEEPALIVE.setdefault(store, []).extend(define(linker, host, imported))
        # Instantiation runs the module's start function, if any: it may trap or exit too.
        try:
            instance = linker.instantiate(store, module)
        except wasmtime.Trap as trap:
            return _finish_trap(host, ffi.trap_details(trap))
        except wasmtime.WasmtimeError as error:
            if host.exit_code is not None or host.fatal is not None:
                return _finish_trap(host, str(error))
            raise GuestLinkError(f"cannot instantiate module: {error}") from error
        start = instance.exports(store).get("_start")
        if not isinstance(start, wasmtime.Func):
            raise GuestLinkError("module has no _start function")
        start_type = start.type(store)
        if start_type.params or start_type.results:
            raise GuestLinkError("_start must take no parameters and return nothing")
        host.memory.bind(_exported_memory(store, instance))
        try:
            start(store)
        except wasmtime.Trap as trap:
            return _finish_trap(host, ffi.trap_details(trap))
        except wasmtime.WasmtimeError as error:
            # Not a trap (e.g. a resource limit wasmtime reports as an error): the guest stopped.
            return _finish_trap(host, str(error))
        if host.fatal is not None:
            raise host.fatal
        return 0
    finally:
        host.close()


def _finish_trap(host: WasiHost, message: str) -> int:
    if host.fatal is not None:
        raise host.fatal
    if host.exit_code is not None:
        return host.exit_code
    raise GuestTrap(message)


def _exported_memory(store: wasmtime.Store, instance: wasmtime.Instance) -> ffi.MemoryRef | None:
    memory = instance.exports(store).get("memory")
    if isinstance(memory, wasmtime.Memory):
        return ffi.memory_from_export(store, memory)
    return None
