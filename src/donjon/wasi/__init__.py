"""Donjon's WASI preview 1 host (``wasi_snapshot_preview1``), on wasmtime's raw API.

Public API (notes/wasi-api.md): ``run_module``, ``GuestSpec``, ``Stdio``, ``PreopenDir``, ``GuestFile``
and the errors ``WasiError``, ``GuestTrap``, ``GuestLinkError`` (plus ``InvalidGuestSpec`` and
``PreopenError``, both ``WasiError``s, for a spec the host refuses).
"""

from .errors import GuestLinkError, GuestTrap, InvalidGuestSpec, PreopenError, WasiError
from .run import run_module
from .spec import GuestFile, GuestSpec, PreopenDir, Stdio

__all__ = [
    "GuestFile",
    "GuestLinkError",
    "GuestSpec",
    "GuestTrap",
    "InvalidGuestSpec",
    "PreopenDir",
    "PreopenError",
    "Stdio",
    "WasiError",
    "run_module",
]
