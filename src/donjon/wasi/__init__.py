"""Donjon's WASI preview 1 host (``wasi_snapshot_preview1``), on wasmtime's raw API.

Public API (notes/wasi-api.md): ``run_module``, ``GuestSpec``, ``Stdio``, ``PreopenDir``, ``GuestFile``
and the errors ``WasiError``, ``GuestTrap``, ``GuestLinkError`` (plus ``InvalidGuestSpec`` and
``PreopenError``, both ``WasiError``s, for a spec the host refuses).

    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, "main.wasm")
    spec = GuestSpec(
        args=["main.wasm"],
        env=[("FD_COUNT", "4")],  # the whole environment: nothing is inherited
        files=[Stdio("stdin"), Stdio("stdout"), Stdio("stderr"), PreopenDir(Path("/srv/data"), "/data")],
    )
    exit_code = run_module(wasmtime.Store(engine), module, spec)

Modules: ``abi`` (witx constants and layouts), ``ffi`` (the only user of wasmtime's internal ffi),
``memory`` (bounds-checked guest memory), ``files`` (one class per kind of open file), ``fdtable``,
``paths`` (resolution confined to a directory fd), ``sockets`` (listening and connected socket fds over
already opened host sockets: ``ListenSocket`` / ``ConnectedSocket`` in the spec), ``poll``
(``poll_oneoff``), ``host`` (the 46 functions and their trampolines), ``run`` (``run_module``).
"""

from .errors import GuestLinkError, GuestTrap, InvalidGuestSpec, PreopenError, WasiError
from .memfs import MemoryEntry
from .run import run_module
from .spec import (
    ConnectedSocket,
    GuestFile,
    GuestSpec,
    HostListener,
    HostStream,
    ListenSocket,
    MemoryDir,
    PreopenDir,
    Stdio,
)

__all__ = [
    "ConnectedSocket",
    "GuestFile",
    "GuestLinkError",
    "GuestSpec",
    "GuestTrap",
    "HostListener",
    "HostStream",
    "InvalidGuestSpec",
    "ListenSocket",
    "MemoryDir",
    "MemoryEntry",
    "PreopenDir",
    "PreopenError",
    "Stdio",
    "WasiError",
    "run_module",
]
