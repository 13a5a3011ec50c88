"""A guest harness for the WASI host tests: a wasm module whose exports call each WASI import.

``Guest.call(name, *args)`` runs a tiny wasm function that forwards its arguments to the imported
WASI function, so every call crosses the real wasm -> host boundary (the unchecked trampolines,
the bounds checks) exactly as a compiled program's would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import wasmtime

from donjon.wasi import GuestSpec
from donjon.wasi.ffi import memory_from_export, store_context
from donjon.wasi.host import MODULE, NO_RESULT, SIGNATURES, WasiHost, define


def harness_wat(pages: int = 1, max_pages: int | None = None) -> str:
    imports, exports = [], []
    for name, params in SIGNATURES.items():
        types = " ".join("i32" if p == "i" else "i64" for p in params)
        result = "" if name in NO_RESULT else "(result i32)"
        imports.append(f'(import "{MODULE}" "{name}" (func ${name} (param {types}) {result}))')
        gets = " ".join(f"(local.get {i})" for i in range(len(params)))
        exports.append(f'(func (export "{name}") (param {types}) {result} (call ${name} {gets}))')
    limit = f" {max_pages}" if max_pages is not None else ""
    grow = '(func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))'
    return (
        "(module\n"
        + "\n".join(imports)
        + f'\n(memory (export "memory") {pages}{limit})\n'
        + ("\n".join(exports) + "\n" + grow + ")")
    )


class Guest:
    def __init__(self, engine: wasmtime.Engine, module: wasmtime.Module, spec: GuestSpec) -> None:
        self.store = wasmtime.Store(engine)
        self.host = WasiHost(spec, store_context(self.store))
        linker = wasmtime.Linker(engine)
        self._keep = define(linker, self.host)
        self.instance = linker.instantiate(self.store, module)
        exports = self.instance.exports(self.store)
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self.memory = memory
        self.host.memory.bind(memory_from_export(self.store, memory))
        self._exports = exports

    def call(self, name: str, *args: int) -> int:
        func = self._exports[name]
        assert isinstance(func, wasmtime.Func)
        result = func(self.store, *args)
        return int(result) if result is not None else 0

    def write(self, ptr: int, data: bytes) -> None:
        if data:  # wasmtime-py refuses even an empty write at the end of memory
            self.memory.write(self.store, data, ptr)

    def read(self, ptr: int, length: int) -> bytes:
        return bytes(self.memory.read(self.store, ptr, ptr + length))

    def u32(self, ptr: int) -> int:
        return int.from_bytes(self.read(ptr, 4), "little")

    def u64(self, ptr: int) -> int:
        return int.from_bytes(self.read(ptr, 8), "little")

    def size(self) -> int:
        return int(self.memory.data_len(self.store))

    def grow(self, pages: int) -> int:
        return self.call("grow", pages)

    def path(self, ptr: int, text: str) -> tuple[int, int]:
        data = text.encode()
        self.write(ptr, data)
        return ptr, len(data)

    def close(self) -> None:
        self.host.close()


@pytest.fixture(scope="session")
def engine() -> wasmtime.Engine:
    return wasmtime.Engine()


@pytest.fixture(scope="session")
def harness_module(engine: wasmtime.Engine) -> wasmtime.Module:
    return wasmtime.Module(engine, wasmtime.wat2wasm(harness_wat(1, 4)))


@pytest.fixture
def make_guest(engine: wasmtime.Engine, harness_module: wasmtime.Module) -> Iterator[Callable[..., Guest]]:
    guests: list[Guest] = []

    def make(spec: GuestSpec, module: wasmtime.Module | None = None) -> Guest:
        guest = Guest(engine, module or harness_module, spec)
        guests.append(guest)
        return guest

    yield make
    for g in guests:
        g.close()
