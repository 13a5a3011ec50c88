"""Exceptions of donjon.wasi: the public ones (``WasiError`` and below) and the host's internal ones.

The internal ones never leave a host function: ``Errno`` becomes the function's WASI errno result and
``ProcExit`` becomes a wasmtime trap that ``run_module`` recognises and turns into an exit code.
"""

from __future__ import annotations


class WasiError(Exception):
    """Root of donjon.wasi's public errors."""


class GuestTrap(WasiError):
    """The guest trapped (``unreachable``, out-of-bounds access, a host-side failure...).

    ``str()`` is wasmtime's message including the wasm backtrace; ``message`` holds the same text.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class GuestLinkError(WasiError):
    """The module cannot be instantiated: an import Donjon does not provide, or no ``_start``."""

    def __init__(self, message: str, *, import_name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.import_name = import_name


class InvalidGuestSpec(WasiError):
    """A ``GuestSpec`` the host refuses to build a guest from (``field`` names the culprit)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class PreopenError(WasiError):
    """A pre-opened directory cannot be opened on the host."""

    def __init__(self, host_path: str, reason: str) -> None:
        super().__init__(f"cannot open pre-opened directory {host_path}: {reason}")
        self.host_path = host_path
        self.reason = reason


class Errno(Exception):
    """A WASI errno a host function returns to the guest (internal: never escapes the host)."""

    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class ProcExit(Exception):
    """``proc_exit`` was called: unwinds the guest with ``code`` (internal)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code
