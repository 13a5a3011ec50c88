"""A read-only directory held in the host's memory: what a Keep serves its guest secrets from.

``GuestSpec.files`` may hold a :class:`~donjon.wasi.spec.MemoryDir`: a pre-opened directory
whose entries are byte strings the host keeps in memory (never a host file), listed by a
callable so that the host can replace them while the guest runs (a rotated secret). Opening a
file takes the value current at that moment; an open file keeps the bytes it opened (as an
open file keeps a replaced file's contents on POSIX), so a guest notices a new value by opening
the file again, or by ``stat``: the modification time is the value's.

Flat: one level of regular files, no subdirectories. Read-only: no right that modifies the
tree is ever granted, and creating, truncating or appending is ``EPERM`` (wasmtime's answer
in a read-only pre-open).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import abi
from .errors import Errno
from .files import Buffers, Filestat, OpenFile

__all__ = ["MEMORY_DIR_RIGHTS", "MEMORY_FILE_RIGHTS", "MemoryDirectoryFile", "MemoryEntry", "MemoryFile"]

#: What a guest may do with the directory: list it, open and stat below it.
MEMORY_DIR_RIGHTS = (
    abi.RIGHT_PATH_OPEN
    | abi.RIGHT_FD_READDIR
    | abi.RIGHT_PATH_FILESTAT_GET
    | abi.RIGHT_FD_FILESTAT_GET
    | abi.RIGHT_FD_FDSTAT_SET_FLAGS
)
#: ... and with a file opened in it: read, seek, stat, poll.
MEMORY_FILE_RIGHTS = (
    abi.RIGHT_FD_READ
    | abi.RIGHT_FD_SEEK
    | abi.RIGHT_FD_TELL
    | abi.RIGHT_FD_FILESTAT_GET
    | abi.RIGHT_FD_FDSTAT_SET_FLAGS
    | abi.RIGHT_POLL_FD_READWRITE
    | abi.RIGHT_FD_ADVISE
)

# Device number of every in-memory file: none of the host's (Linux never hands out 0:0 for a disk).
_DEV = 0
_DIR_INO = 1


@dataclass(frozen=True)
class MemoryEntry:
    """One file: its bytes and their modification time (ns since the epoch)."""

    data: bytes
    mtime_ns: int

    def __repr__(self) -> str:  # the bytes are a secret: never in a repr, a log line or a trap message
        return f"MemoryEntry({len(self.data)} bytes, mtime_ns={self.mtime_ns})"


Listing = Callable[[], Mapping[str, MemoryEntry]]


def _inode(names: list[str], name: str) -> int:
    return _DIR_INO + 1 + names.index(name)


class MemoryFile(OpenFile):
    """A regular file's bytes, as they were when it was opened."""

    filetype = abi.FILETYPE_REGULAR_FILE

    def __init__(self, entry: MemoryEntry, ino: int, rights_base: int, fdflags: int) -> None:
        self._data: bytes | None = entry.data
        self._mtime = entry.mtime_ns
        self._ino = ino
        self._pos = 0
        self.rights_base = rights_base & MEMORY_FILE_RIGHTS
        self.rights_inheriting = 0
        self.fdflags = fdflags

    def _bytes(self) -> bytes:
        if self._data is None:
            raise Errno(abi.EBADF)
        return self._data

    def _copy(self, bufs: Buffers, offset: int) -> int:
        data = self._bytes()
        done = 0
        for buf in bufs:
            chunk = data[offset + done : offset + done + len(buf)]
            buf[: len(chunk)] = chunk
            done += len(chunk)
            if len(chunk) < len(buf):
                break
        return done

    def read(self, bufs: Buffers) -> int:
        n = self._copy(bufs, self._pos)
        self._pos += n
        return n

    def pread(self, bufs: Buffers, offset: int) -> int:
        return self._copy(bufs, offset)

    def write(self, bufs: Buffers) -> int:
        raise Errno(abi.EBADF)

    def seek(self, offset: int, whence: int) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._bytes())}[whence]
        if base + offset < 0:
            raise Errno(abi.EINVAL)
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def set_fdflags(self, flags: int) -> None:
        if flags & abi.FDFLAGS_APPEND:
            raise Errno(abi.EPERM)
        self.fdflags = flags

    def filestat(self) -> Filestat:
        size = len(self._bytes())
        return (_DEV, self._ino, abi.FILETYPE_REGULAR_FILE, 1, size, self._mtime, self._mtime, self._mtime)

    def advise(self, offset: int, length: int, advice: int) -> None:
        return None

    def close(self) -> None:
        self.closed = True
        self._data = None  # drop the reference; the bytes go when the last holder lets go


class MemoryDirectoryFile(OpenFile):
    """The directory itself (the pre-open, or a second fd of it opened as ``.``)."""

    filetype = abi.FILETYPE_DIRECTORY

    def __init__(self, listing: Listing, preopen_name: str | None = None) -> None:
        self._listing = listing
        self.preopen_name = preopen_name
        self.rights_base = MEMORY_DIR_RIGHTS
        self.rights_inheriting = MEMORY_DIR_RIGHTS | MEMORY_FILE_RIGHTS
        self._kept: list[tuple[int, int, bytes]] | None = None

    def _entries(self) -> tuple[list[str], Mapping[str, MemoryEntry]]:
        current = self._listing()
        return sorted(current), current

    def set_fdflags(self, flags: int) -> None:
        self.fdflags = flags

    def filestat(self) -> Filestat:
        current = self._listing()
        mtime = max((e.mtime_ns for e in current.values()), default=0)
        return (_DEV, _DIR_INO, abi.FILETYPE_DIRECTORY, 2, 0, mtime, mtime, mtime)

    def readdir(self, *, fresh: bool) -> list[tuple[int, int, bytes]]:
        if fresh or self._kept is None:
            names, _ = self._entries()
            self._kept = [
                (_DIR_INO, abi.FILETYPE_DIRECTORY, b"."),
                (_DIR_INO, abi.FILETYPE_DIRECTORY, b".."),
                *((_inode(names, n), abi.FILETYPE_REGULAR_FILE, n.encode()) for n in names),
            ]
        return self._kept

    def forget_listing(self) -> None:
        self._kept = None

    def _lookup(self, path: str) -> str | None:
        """The entry ``path`` names, ``None`` for the directory itself; ENOENT, EPERM, ENOTDIR."""
        if not path:
            raise Errno(abi.ENOENT)
        if "\x00" in path:
            raise Errno(abi.EILSEQ)
        if path.startswith("/"):
            raise Errno(abi.EPERM)
        parts = [p for p in path.split("/") if p and p != "."]
        if any(p == ".." for p in parts):
            # ".." of a pre-open is outside the sandbox; a flat directory has no other "..".
            raise Errno(abi.EPERM)
        if not parts:
            return None
        if len(parts) > 1:
            raise Errno(abi.ENOTDIR if parts[0] in self._listing() else abi.ENOENT)
        return parts[0]

    def stat_path(self, path: str) -> Filestat:
        name = self._lookup(path)
        if name is None:
            return self.filestat()
        names, current = self._entries()
        entry = current.get(name)
        if entry is None:
            raise Errno(abi.ENOENT)
        if path.endswith("/"):
            raise Errno(abi.ENOTDIR)
        mtime = entry.mtime_ns
        return (_DEV, _inode(names, name), abi.FILETYPE_REGULAR_FILE, 1, len(entry.data), mtime, mtime, mtime)

    def open_path(self, path: str, oflags: int, rights_base: int, fdflags: int) -> OpenFile:
        if fdflags & abi.FDFLAGS_APPEND or oflags & abi.OFLAGS_TRUNC:
            raise Errno(abi.EPERM)
        name = self._lookup(path)
        if name is None:
            if oflags & (abi.OFLAGS_CREAT | abi.OFLAGS_EXCL):
                raise Errno(abi.EEXIST if oflags & abi.OFLAGS_EXCL else abi.EISDIR)
            return MemoryDirectoryFile(self._listing)
        names, current = self._entries()
        entry = current.get(name)
        if entry is None:
            raise Errno(abi.EPERM if oflags & abi.OFLAGS_CREAT else abi.ENOENT)
        if oflags & abi.OFLAGS_EXCL and oflags & abi.OFLAGS_CREAT:
            raise Errno(abi.EEXIST)
        if oflags & abi.OFLAGS_DIRECTORY or path.endswith("/"):
            raise Errno(abi.ENOTDIR)
        return MemoryFile(entry, _inode(names, name), rights_base, fdflags)
