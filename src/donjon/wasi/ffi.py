"""Every use of wasmtime-py's internal ffi lives here (pinned to wasmtime 50, see pyproject.toml).

wasmtime-py's public host-function path (``Func`` / ``Linker.define_func``) boxes every argument into a
``Val`` and costs ~10 µs per call. The C API's *unchecked* path (``wasmtime_linker_define_func_unchecked``,
wasmtime.h ``wasmtime_func_unchecked_callback_t``) hands the callback one ``wasmtime_val_raw_t`` array
holding the parameters, into which the results are written, and lets the callback return a
``wasm_trap_t*`` (0 for success). With every C argument declared as a plain integer the ctypes
trampoline costs well under a microsecond.

Function objects are fetched with ``dll[name]`` (a fresh ``_FuncPtr`` each time) so that declaring
faster argument types here never changes the ones wasmtime-py itself relies on.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _ffi as _wffi  # internal: the loaded libwasmtime and its struct layouts

_dll: Any = _wffi.dll

# wasmtime.h: typedef wasm_trap_t *(*wasmtime_func_unchecked_callback_t)(
#     void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args_and_results, size_t num);
# Declared with integer arguments: the callback receives addresses, not ctypes pointer objects.
UNCHECKED_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t
)
_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

# wasmtime_val_raw_t is a 16-byte union (it holds a v128); parameter i lives at args + 16 * i.
VAL_RAW_SIZE = ctypes.sizeof(_wffi.wasmtime_val_raw_t)

# A buffer spanning the process's address space, so that ``struct.unpack_from(RAW, args)`` decodes a
# callback's whole ``wasmtime_val_raw_t`` array in one step (a ctypes ``from_address`` per argument
# costs several times more). Only addresses wasmtime hands to a callback are ever read or written
# through it; guest memory goes through memory.GuestMemory's bounds-checked views instead.
RAW = memoryview((ctypes.c_ubyte * sys.maxsize).from_address(0))


def _fn(name: str, restype: Any, *argtypes: Any) -> Any:
    f = _dll[name]
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_vp = ctypes.c_void_p
_sz = ctypes.c_size_t

# Declared as returning size_t, not a pointer: always an int (0 for NULL), never None.
memory_data: Callable[[int, int], int] = _fn("wasmtime_memory_data", _sz, _vp, _vp)
memory_data_size: Callable[[int, int], int] = _fn("wasmtime_memory_data_size", _sz, _vp, _vp)
_trap_new = _fn("wasmtime_trap_new", _vp, ctypes.c_char_p, _sz)
_linker_define_func_unchecked = _fn(
    "wasmtime_linker_define_func_unchecked",
    _vp,
    _vp,
    ctypes.c_char_p,
    _sz,
    ctypes.c_char_p,
    _sz,
    _vp,
    _vp,
    _vp,
    _vp,
)
_caller_export_get = _fn("wasmtime_caller_export_get", ctypes.c_bool, _vp, ctypes.c_char_p, _sz, _vp)
_error_message = _fn("wasmtime_error_message", None, _vp, _vp)
_error_delete = _fn("wasmtime_error_delete", None, _vp)
_byte_vec_delete = _fn("wasm_byte_vec_delete", None, _vp)

_WASMTIME_EXTERN_MEMORY = 3  # wasmtime/extern.h: WASMTIME_EXTERN_MEMORY


def trap_new(message: str) -> int:
    """A new ``wasm_trap_t*`` as an integer; ownership passes to wasmtime when a callback returns it."""
    data = message.encode("utf-8", "replace")
    return int(_trap_new(data, len(data)) or 0)


def _take_error(err: int) -> str:
    vec = _wffi.wasm_byte_vec_t()
    _error_message(err, ctypes.addressof(vec))
    text = ctypes.string_at(vec.data, vec.size).decode("utf-8", "replace") if vec.size else ""
    _byte_vec_delete(ctypes.addressof(vec))
    _error_delete(err)
    return text


def define_unchecked(
    linker: wasmtime.Linker, module: str, name: str, ty: wasmtime.FuncType, callback: Any
) -> None:
    """Define ``module.name`` of type ``ty`` in ``linker`` as an unchecked host function.

    ``callback`` must be an ``UNCHECKED_CALLBACK`` object; the caller keeps it alive for as long as the
    linker and every store instantiated through it exist (wasmtime only stores the C pointer).
    Raises ``wasmtime.WasmtimeError`` when wasmtime refuses the definition.
    """
    mod_b = module.encode()
    name_b = name.encode()
    err = _linker_define_func_unchecked(
        ctypes.cast(linker.ptr(), _vp).value,
        mod_b,
        len(mod_b),
        name_b,
        len(name_b),
        ctypes.cast(ty.ptr(), _vp).value,
        ctypes.cast(callback, _vp).value,
        None,
        None,
    )
    if err:
        raise wasmtime.WasmtimeError(_take_error(err))


def store_context(store: wasmtime.Store) -> int:
    """The address of the store's ``wasmtime_context_t``, valid as long as the store lives."""
    return int(ctypes.cast(store._context(), _vp).value or 0)


class MemoryRef:
    """A ``wasmtime_memory_t`` held at a stable address, plus its store context, for fast lookups."""

    __slots__ = ("_struct", "address", "context")

    def __init__(self, context: int, struct: Any) -> None:
        self._struct = struct  # keeps the wasmtime_memory_t alive at a fixed address
        self.context = context
        self.address = ctypes.addressof(struct)


def memory_from_export(store: wasmtime.Store, memory: wasmtime.Memory) -> MemoryRef:
    """A ``MemoryRef`` for an exported ``wasmtime.Memory``."""
    struct = _wffi.wasmtime_memory_t()
    ctypes.memmove(ctypes.addressof(struct), ctypes.addressof(memory._memory), ctypes.sizeof(struct))
    return MemoryRef(store_context(store), struct)


def memory_from_caller(caller: int, context: int) -> MemoryRef | None:
    """The calling instance's exported ``memory``, looked up through the caller (None if it has none).

    ``context`` is the store's context address (``store_context``), which outlives the caller.
    """
    ext = _wffi.wasmtime_extern_t()
    if not _caller_export_get(caller, b"memory", 6, ctypes.addressof(ext)):
        return None
    if int(ext.kind) != _WASMTIME_EXTERN_MEMORY:
        return None
    struct = _wffi.wasmtime_memory_t()
    ctypes.memmove(ctypes.addressof(struct), ctypes.addressof(ext.of.memory), ctypes.sizeof(struct))
    return MemoryRef(context, struct)


def trap_details(trap: wasmtime.Trap) -> str:
    """A trap's message, which includes wasmtime's wasm backtrace."""
    return str(trap)
