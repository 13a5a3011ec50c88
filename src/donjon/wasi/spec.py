"""What the guest is given: the value types of the public contract (see notes/wasi-api.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Stdio:
    """A stdio-like fd: the host's stdin/stdout/stderr (from ``GuestSpec.stdio_fds``) or a null device."""

    kind: Literal["stdin", "stdout", "stderr", "null"]


@dataclass(frozen=True)
class PreopenDir:
    """A pre-opened directory, reported by ``fd_prestat_get``.

    ``host_path`` is absolute and already resolved by the caller; ``guest_path`` is the name the guest
    sees (e.g. ``"/"``). Read-only unless ``writable``: no write, create, unlink or rename rights.
    """

    host_path: Path
    guest_path: str
    writable: bool = False


GuestFile = Stdio | PreopenDir


@dataclass(frozen=True)
class GuestSpec:
    """Everything the guest gets; nothing else of the host is visible to it."""

    args: Sequence[str]  # argv including argv[0]
    env: Sequence[tuple[str, str]]  # the guest's WHOLE environment (nothing inherited)
    files: Sequence[GuestFile]  # entry i is fd i
    stdio_fds: tuple[int, int, int] = (0, 1, 2)  # host fds backing stdin/stdout/stderr
