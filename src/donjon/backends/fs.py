"""The file interface the device-backed backends use: configfs-tsm and Gramine's ``/dev/attestation``.

Both kernels' interfaces are *pseudo-files*: writing ``inblob`` or
``user_report_data`` changes what reading ``outblob`` or ``quote`` returns. A
plain directory cannot do that, so the backends speak to a small
:class:`PseudoFs` interface instead of ``os`` directly. :class:`OsPseudoFs` is
the real one, on ``os.*`` under a root directory; the tests run the very same
backend code over an in-process emulation of the kernel's semantics (STYLE.md
10: a fake that implements the real interface, never a mock that skips the
code under test).

Paths are relative to the root, ``/``-separated, and may not climb out of it.
Errors are ``OSError`` with the kernel's ``errno``, exactly as ``os`` raises
them; the backends turn them into messages.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["OsPseudoFs", "PseudoFs", "check_relative"]


@runtime_checkable
class PseudoFs(Protocol):
    """What a backend needs of a pseudo-filesystem rooted somewhere."""

    @property
    def root(self) -> str:
        """The root, for messages (``/sys/kernel/config/tsm/report``)."""
        ...

    def exists(self, path: str = "") -> bool: ...

    def is_dir(self, path: str = "") -> bool: ...

    def mkdir(self, path: str) -> None: ...

    def rmdir(self, path: str) -> None: ...

    def write_file(self, path: str, data: bytes) -> None:
        """Write ``data`` in one ``write(2)`` (configfs binary attributes take one buffer)."""
        ...

    def read_file(self, path: str, limit: int) -> bytes:
        """Read the whole file; more than ``limit`` bytes raises ``OSError(EFBIG)``."""
        ...


def check_relative(path: str) -> str:
    """Refuse absolute paths and ``..``: a backend never leaves its root."""
    if path.startswith("/") or any(part in ("..", ".") for part in path.split("/") if part):
        raise ValueError(f"pseudo-filesystem path must be relative and plain, got {path!r}")
    return path


class OsPseudoFs:
    """:class:`PseudoFs` on the real filesystem, under ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root)

    @property
    def root(self) -> str:
        return str(self._root)

    def _path(self, path: str) -> Path:
        check_relative(path)
        return self._root / path if path else self._root

    def exists(self, path: str = "") -> bool:
        return self._path(path).exists()

    def is_dir(self, path: str = "") -> bool:
        return self._path(path).is_dir()

    def mkdir(self, path: str) -> None:
        os.mkdir(self._path(path), 0o700)

    def rmdir(self, path: str) -> None:
        os.rmdir(self._path(path))

    def write_file(self, path: str, data: bytes) -> None:
        # No O_CREAT and no O_TRUNC: configfs attributes exist or the write is
        # wrong, and truncating a pseudo-file means nothing.
        fd = os.open(self._path(path), os.O_WRONLY | os.O_CLOEXEC)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(errno.EIO, f"short write to {path}: {written} of {len(data)} bytes")

    def read_file(self, path: str, limit: int) -> bytes:
        fd = os.open(self._path(path), os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks: list[bytes] = []
            total = 0
            while True:
                chunk = os.read(fd, min(65536, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise OSError(errno.EFBIG, f"{path} is larger than {limit} bytes")
        finally:
            os.close(fd)
        return b"".join(chunks)
