"""The guest's file descriptor table: small integers -> ``OpenFile`` objects.

New descriptors take the lowest free number (POSIX, which wasi-libc and wasmtime follow). The table is
bounded (``MAX_FDS``) so a guest cannot exhaust host descriptors by opening files in a loop.
"""

from __future__ import annotations

import contextlib

from . import abi
from .errors import Errno
from .files import OpenFile

MAX_FDS = 1024


class FdTable:
    __slots__ = ("_files",)

    def __init__(self) -> None:
        self._files: list[OpenFile | None] = []

    def get(self, fd: int, rights: int = 0) -> OpenFile:
        """The file at ``fd``; EBADF if none, ENOTCAPABLE if it lacks any of ``rights``."""
        files = self._files
        if fd >= len(files):
            raise Errno(abi.EBADF)
        f = files[fd]
        if f is None:
            raise Errno(abi.EBADF)
        if rights & ~f.rights_base:
            raise Errno(abi.ENOTCAPABLE)
        return f

    def insert(self, file: OpenFile) -> int:
        files = self._files
        for fd, f in enumerate(files):
            if f is None:
                files[fd] = file
                return fd
        if len(files) >= MAX_FDS:
            raise Errno(abi.ENFILE)
        files.append(file)
        return len(files) - 1

    def remove(self, fd: int) -> OpenFile:
        f = self.get(fd)
        self._files[fd] = None
        while self._files and self._files[-1] is None:
            self._files.pop()
        return f

    def renumber(self, fd: int, to: int) -> None:
        """Move ``fd`` onto ``to``, closing what ``to`` held (witx ``fd_renumber``; both must be open)."""
        f = self.get(fd)
        old = self.get(to)
        if fd == to:
            return
        self._files[to] = f
        self._files[fd] = None
        while self._files and self._files[-1] is None:
            self._files.pop()
        old.close()

    def items(self) -> list[tuple[int, OpenFile]]:
        return [(fd, f) for fd, f in enumerate(self._files) if f is not None]

    def close_all(self) -> None:
        """Close every file (also after a trap); errors on close are ignored, closing twice is harmless."""
        files, self._files = self._files, []
        for f in files:
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
