"""Bounds-checked access to the guest's linear memory.

The memory can grow (and, depending on the engine's configuration, move) whenever the guest runs, so the
host re-reads its base address at the start of every host call (``refresh``). Wasm memories never
shrink, so the length last seen is a lower bound of the current length: an access inside it needs no
further query; an access past it re-reads the length once before failing with ``EFAULT``.

Every pointer and length comes from the guest and is an unsigned 32-bit value, so ``ptr + length``
cannot be negative; anything past the end of memory raises ``Errno(EFAULT)`` — never an IndexError.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Sequence

from . import abi, ffi
from .errors import Errno


class GuestMemory:
    """The calling instance's exported ``memory`` (none bound: every non-empty access is EFAULT)."""

    __slots__ = ("_address", "_base", "_context", "_ref", "_size", "_view")

    def __init__(self) -> None:
        self._ref: ffi.MemoryRef | None = None
        self._context = 0
        self._address = 0
        self._base = 0
        self._size = 0
        self._view = memoryview(bytearray())

    @property
    def bound(self) -> bool:
        return self._ref is not None

    def bind(self, ref: ffi.MemoryRef | None) -> None:
        self._ref = ref
        if ref is not None:
            self._context = ref.context
            self._address = ref.address
        self._base = -1
        self.refresh()

    def refresh(self) -> None:
        """Re-read the base address (once per host call); rebuild the view if it moved."""
        ref = self._ref
        if ref is None:
            return
        base = ffi.memory_data(ref.context, ref.address)
        if base != self._base:
            self._remap(base)

    def _remap(self, base: int) -> None:
        ref = self._ref
        assert ref is not None
        size = ffi.memory_data_size(ref.context, ref.address)
        self._base = base
        self._size = size
        if size == 0 or base == 0:
            self._view = memoryview(bytearray())
            self._size = 0
        else:
            self._view = memoryview((ctypes.c_ubyte * size).from_address(base)).cast("B")

    def _check(self, ptr: int, length: int) -> None:
        end = ptr + length
        if end > self._size:
            # The guest may have grown its memory since we last looked.
            if self._ref is not None:
                self._remap(ffi.memory_data(self._context, self._address))
            if end > self._size:
                raise Errno(abi.EFAULT)

    @property
    def size(self) -> int:
        return self._size

    # --- raw bytes -----------------------------------------------------------------------------
    def view(self, ptr: int, length: int) -> memoryview:
        """A writable view of ``length`` guest bytes at ``ptr`` (valid until the host call returns)."""
        if ptr + length > self._size:
            self._check(ptr, length)
        return self._view[ptr : ptr + length]

    def read(self, ptr: int, length: int) -> bytes:
        if ptr + length > self._size:
            self._check(ptr, length)
        return self._view[ptr : ptr + length].tobytes()

    def write(self, ptr: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if ptr + n > self._size:
            self._check(ptr, n)
        self._view[ptr : ptr + n] = data

    def read_str(self, ptr: int, length: int) -> str:
        """A UTF-8 string (WASI `$string`); invalid UTF-8 is ``EILSEQ``."""
        data = self.read(ptr, length)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise Errno(abi.EILSEQ) from None

    # --- fixed-size values ------------------------------------------------------------------------
    def pack(self, fmt: struct.Struct, ptr: int, *values: int) -> None:
        if ptr + fmt.size > self._size:
            self._check(ptr, fmt.size)
        fmt.pack_into(self._view, ptr, *values)

    def unpack(self, fmt: struct.Struct, ptr: int) -> tuple[int, ...]:
        if ptr + fmt.size > self._size:
            self._check(ptr, fmt.size)
        return fmt.unpack_from(self._view, ptr)

    def set_u32(self, ptr: int, value: int) -> None:
        if ptr + 4 > self._size:
            self._check(ptr, 4)
        _U32_PACK(self._view, ptr, value)

    def set_u64(self, ptr: int, value: int) -> None:
        if ptr + 8 > self._size:
            self._check(ptr, 8)
        _U64_PACK(self._view, ptr, value)

    def u32(self, ptr: int) -> int:
        if ptr + 4 > self._size:
            self._check(ptr, 4)
        return int(_U32_UNPACK(self._view, ptr)[0])

    # --- scatter/gather --------------------------------------------------------------------------
    def iovecs(self, ptr: int, count: int) -> list[memoryview]:
        """The guest buffers an `$iovec_array` names, each bounds-checked."""
        if count == 1:
            buf, n = self.unpack(abi.IOVEC, ptr)
            return [self.view(buf, n)]
        size = count * 8
        if ptr + size > self._size:
            self._check(ptr, size)
        raw = self._view[ptr : ptr + size]
        out: list[memoryview] = []
        for buf, n in abi.IOVEC.iter_unpack(raw):
            out.append(self.view(buf, n))
        return out

    def write_strings(self, ptrs_ptr: int, buf_ptr: int, items: Sequence[bytes]) -> None:
        """Lay out NUL-terminated ``items`` at ``buf_ptr`` and their addresses at ``ptrs_ptr`` (args_get)."""
        total = sum(len(i) for i in items)
        self._check_both(ptrs_ptr, 4 * len(items), buf_ptr, total)
        offset = buf_ptr
        for index, item in enumerate(items):
            _U32_PACK(self._view, ptrs_ptr + 4 * index, offset)
            self._view[offset : offset + len(item)] = item
            offset += len(item)

    def _check_both(self, a: int, alen: int, b: int, blen: int) -> None:
        if a + alen > self._size:
            self._check(a, alen)
        if b + blen > self._size:
            self._check(b, blen)


_U32_PACK = abi.U32.pack_into
_U64_PACK = abi.U64.pack_into
_U32_UNPACK = abi.U32.unpack_from
