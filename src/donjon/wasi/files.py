"""The kinds of open file a guest fd can name, behind one interface (``OpenFile``).

Each kind implements the operations that make sense for it; every other operation keeps the base
class's answer (the errno wasmtime's preview 1 host gives for that operation on that kind of file).
A new kind is one more subclass (the listening and connected sockets are in sockets.py): host.py only talks
to ``OpenFile``.

Rights (witx ``$rights``) belong to the descriptor, so they live on the object; fd_renumber moves the
object, and with it its rights.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence

from . import abi
from .errno_map import wasi_error
from .errors import Errno

Buffers = Sequence[memoryview]
# (dev, ino, filetype, nlink, size, atim, mtim, ctim) — witx `$filestat`.
Filestat = tuple[int, int, int, int, int, int, int, int]


def filetype_of_mode(mode: int) -> int:
    """witx `$filetype` of a host ``st_mode``."""
    if stat.S_ISREG(mode):
        return abi.FILETYPE_REGULAR_FILE
    if stat.S_ISDIR(mode):
        return abi.FILETYPE_DIRECTORY
    if stat.S_ISLNK(mode):
        return abi.FILETYPE_SYMBOLIC_LINK
    if stat.S_ISCHR(mode):
        return abi.FILETYPE_CHARACTER_DEVICE
    if stat.S_ISBLK(mode):
        return abi.FILETYPE_BLOCK_DEVICE
    if stat.S_ISSOCK(mode):
        return abi.FILETYPE_SOCKET_STREAM
    return abi.FILETYPE_UNKNOWN


def filestat_of(st: os.stat_result) -> Filestat:
    return (
        st.st_dev,
        st.st_ino,
        filetype_of_mode(st.st_mode),
        st.st_nlink,
        st.st_size,
        st.st_atime_ns,
        st.st_mtime_ns,
        st.st_ctime_ns,
    )


class OpenFile:
    """One open guest file description. Subclasses override what their kind supports."""

    filetype: int = abi.FILETYPE_UNKNOWN
    is_socket: bool = False  # sock_* on anything else is ENOTSOCK
    preopen_name: str | None = None  # the guest path of a pre-opened directory (fd_prestat_get)
    rights_base: int = 0
    rights_inheriting: int = 0
    fdflags: int = 0
    closed: bool = False

    # --- byte streams -------------------------------------------------------------------------
    def read(self, bufs: Buffers) -> int:
        raise Errno(abi.EBADF)

    def write(self, bufs: Buffers) -> int:
        raise Errno(abi.EBADF)

    def pread(self, bufs: Buffers, offset: int) -> int:
        raise Errno(abi.ESPIPE)

    def pwrite(self, bufs: Buffers, offset: int) -> int:
        raise Errno(abi.ESPIPE)

    def seek(self, offset: int, whence: int) -> int:
        raise Errno(abi.ESPIPE)

    def tell(self) -> int:
        raise Errno(abi.ESPIPE)

    # --- metadata -----------------------------------------------------------------------------
    def set_fdflags(self, flags: int) -> None:
        raise Errno(abi.EBADF)

    def filestat(self) -> Filestat:
        return (0, 0, self.filetype, 0, 0, 0, 0, 0)

    def set_size(self, size: int) -> None:
        raise Errno(abi.EBADF)

    def set_times(self, atim: int | None, mtim: int | None, atim_now: bool, mtim_now: bool) -> None:
        raise Errno(abi.EBADF)

    def advise(self, offset: int, length: int, advice: int) -> None:
        raise Errno(abi.EBADF)

    def allocate(self, offset: int, length: int) -> None:
        raise Errno(abi.EBADF)

    def sync(self) -> None:
        raise Errno(abi.EBADF)

    def datasync(self) -> None:
        raise Errno(abi.EBADF)

    # --- directories --------------------------------------------------------------------------
    def dir_fd(self) -> int:
        """The host directory fd that ``path_*`` calls resolve against (only directories have one)."""
        raise Errno(abi.ENOTDIR)

    def readdir(self, *, fresh: bool) -> list[tuple[int, int, bytes]]:
        """All entries as (d_ino, d_type, name), including "." and ".."; ``fresh``: list again."""
        raise Errno(abi.ENOTDIR)

    def forget_listing(self) -> None:
        """Drop the listing ``readdir`` kept (the next call lists the directory again)."""
        return None

    # --- readiness (poll_oneoff) --------------------------------------------------------------
    def poll_fileno(self) -> int | None:
        """A host fd ``select`` can wait on, or None when the file is always ready."""
        return None

    # --- sockets (sockets.py implements them; every other kind is ENOTSOCK) ----------------------
    def sock_accept(self, flags: int) -> OpenFile:
        raise Errno(abi.ENOTSOCK)

    def sock_recv(self, bufs: Buffers, flags: int) -> tuple[int, int]:
        raise Errno(abi.ENOTSOCK)

    def sock_send(self, bufs: Buffers, flags: int) -> int:
        raise Errno(abi.ENOTSOCK)

    def sock_shutdown(self, how: int) -> None:
        raise Errno(abi.ENOTSOCK)

    # --- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Release host resources; closing twice is harmless."""
        self.closed = True


class NullFile(OpenFile):
    """``/dev/null``-like: reads see end of file, writes are accepted and dropped."""

    filetype = abi.FILETYPE_CHARACTER_DEVICE
    rights_base = abi.RIGHTS_TTY
    rights_inheriting = 0

    def read(self, bufs: Buffers) -> int:
        return 0

    def write(self, bufs: Buffers) -> int:
        return sum(len(b) for b in bufs)

    def set_fdflags(self, flags: int) -> None:
        self.fdflags = flags

    def set_times(self, atim: int | None, mtim: int | None, atim_now: bool, mtim_now: bool) -> None:
        return None


class StdioFile(OpenFile):
    """One of the guest's stdin/stdout/stderr, backed by a host fd the host does not own (not closed)."""

    rights_inheriting = 0

    def __init__(self, host_fd: int, readable: bool) -> None:
        self.host_fd = host_fd
        self.readable = readable
        try:
            isatty = os.isatty(host_fd)
        except OSError:
            isatty = False
        # wasmtime reports a terminal as a character device and anything else behind stdio as unknown.
        self.filetype = abi.FILETYPE_CHARACTER_DEVICE if isatty else abi.FILETYPE_UNKNOWN
        rights = abi.RIGHT_FD_FDSTAT_SET_FLAGS | abi.RIGHT_FD_FILESTAT_GET | abi.RIGHT_POLL_FD_READWRITE
        rights |= abi.RIGHT_FD_READ if readable else abi.RIGHT_FD_WRITE
        self.rights_base = rights

    def read(self, bufs: Buffers) -> int:
        if not self.readable:
            raise Errno(abi.EBADF)
        try:
            return os.readv(self.host_fd, bufs)
        except OSError as e:
            raise wasi_error(e) from None

    def write(self, bufs: Buffers) -> int:
        if self.readable:
            raise Errno(abi.EBADF)
        try:
            if len(bufs) == 1:
                return os.write(self.host_fd, bufs[0])
            return os.writev(self.host_fd, bufs)
        except OSError as e:
            raise wasi_error(e) from None

    def set_fdflags(self, flags: int) -> None:
        self.fdflags = flags

    def poll_fileno(self) -> int | None:
        return self.host_fd


class RegularFile(OpenFile):
    """A regular file opened below a pre-open; owns its host fd."""

    filetype = abi.FILETYPE_REGULAR_FILE

    def __init__(self, host_fd: int, rights_base: int, rights_inheriting: int, fdflags: int) -> None:
        self.host_fd = host_fd
        self.rights_base = rights_base
        self.rights_inheriting = rights_inheriting
        self.fdflags = fdflags

    def read(self, bufs: Buffers) -> int:
        try:
            return os.readv(self.host_fd, bufs)
        except OSError as e:
            raise wasi_error(e) from None

    def write(self, bufs: Buffers) -> int:
        try:
            if len(bufs) == 1:
                return os.write(self.host_fd, bufs[0])
            return os.writev(self.host_fd, bufs)
        except OSError as e:
            raise wasi_error(e) from None

    def pread(self, bufs: Buffers, offset: int) -> int:
        try:
            return os.preadv(self.host_fd, bufs, offset)
        except OverflowError:
            raise Errno(abi.EINVAL) from None
        except OSError as e:
            raise wasi_error(e) from None

    def pwrite(self, bufs: Buffers, offset: int) -> int:
        try:
            return os.pwritev(self.host_fd, bufs, offset)
        except OverflowError:
            raise Errno(abi.EINVAL) from None
        except OSError as e:
            raise wasi_error(e) from None

    def seek(self, offset: int, whence: int) -> int:
        try:
            return os.lseek(self.host_fd, offset, whence)
        except OverflowError:
            raise Errno(abi.EINVAL) from None
        except OSError as e:
            raise wasi_error(e) from None

    def tell(self) -> int:
        return self.seek(0, os.SEEK_CUR)

    def set_fdflags(self, flags: int) -> None:
        try:
            current = _fcntl_getfl(self.host_fd)
            new = current & ~(os.O_APPEND | os.O_NONBLOCK)
            if flags & abi.FDFLAGS_APPEND:
                new |= os.O_APPEND
            if flags & abi.FDFLAGS_NONBLOCK:
                new |= os.O_NONBLOCK
            _fcntl_setfl(self.host_fd, new)
        except OSError as e:
            raise wasi_error(e) from None
        self.fdflags = flags

    def filestat(self) -> Filestat:
        try:
            return filestat_of(os.fstat(self.host_fd))
        except OSError as e:
            raise wasi_error(e) from None

    def set_size(self, size: int) -> None:
        try:
            os.ftruncate(self.host_fd, size)
        except OverflowError:
            raise Errno(abi.EINVAL) from None
        except OSError as e:
            raise wasi_error(e) from None

    def set_times(self, atim: int | None, mtim: int | None, atim_now: bool, mtim_now: bool) -> None:
        try:
            os.utime(self.host_fd, ns=_utime_ns(os.fstat(self.host_fd), atim, mtim, atim_now, mtim_now))
        except OSError as e:
            raise wasi_error(e) from None

    def advise(self, offset: int, length: int, advice: int) -> None:
        try:
            os.posix_fadvise(self.host_fd, offset, length, _ADVICE[advice])
        except OverflowError:
            raise Errno(abi.EINVAL) from None
        except OSError as e:
            raise wasi_error(e) from None

    def allocate(self, offset: int, length: int) -> None:
        # wasmtime (preview 1 over preview 2) no longer supports fd_allocate: ENOTSUP.
        raise Errno(abi.ENOTSUP)

    def sync(self) -> None:
        try:
            os.fsync(self.host_fd)
        except OSError as e:
            raise wasi_error(e) from None

    def datasync(self) -> None:
        try:
            os.fdatasync(self.host_fd)
        except OSError as e:
            raise wasi_error(e) from None

    def poll_fileno(self) -> int | None:
        return None  # regular files are always ready

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.host_fd)


class DirectoryFile(OpenFile):
    """A directory (a pre-open or one opened below it); owns its host ``O_DIRECTORY`` fd.

    ``writable`` is inherited from the pre-open it descends from: below a read-only pre-open no fd ever
    carries a right that modifies the tree, whatever the guest asks for.
    """

    filetype = abi.FILETYPE_DIRECTORY

    def __init__(
        self,
        host_fd: int,
        rights_base: int,
        rights_inheriting: int,
        *,
        writable: bool,
        preopen_name: str | None = None,
        root: tuple[int, int] | None = None,
    ) -> None:
        self.host_fd = host_fd
        self.rights_base = rights_base
        self.rights_inheriting = rights_inheriting
        self.writable = writable
        self.preopen_name = preopen_name
        self._root = root  # (st_dev, st_ino) of the pre-open this directory descends from
        self._listing: list[tuple[int, int, bytes]] | None = None

    def root(self) -> tuple[int, int] | None:
        """(st_dev, st_ino) of the pre-open this directory was opened below (or is)."""
        if self._root is None and self.preopen_name is not None:
            with contextlib.suppress(OSError):
                st = os.fstat(self.host_fd)
                self._root = (st.st_dev, st.st_ino)
        return self._root

    def dir_fd(self) -> int:
        return self.host_fd

    def set_fdflags(self, flags: int) -> None:
        self.fdflags = flags

    def filestat(self) -> Filestat:
        try:
            return filestat_of(os.fstat(self.host_fd))
        except OSError as e:
            raise wasi_error(e) from None

    def set_times(self, atim: int | None, mtim: int | None, atim_now: bool, mtim_now: bool) -> None:
        try:
            os.utime(self.host_fd, ns=_utime_ns(os.fstat(self.host_fd), atim, mtim, atim_now, mtim_now))
        except OSError as e:
            raise wasi_error(e) from None

    def read(self, bufs: Buffers) -> int:
        raise Errno(abi.EBADF)

    def write(self, bufs: Buffers) -> int:
        raise Errno(abi.EBADF)

    def pread(self, bufs: Buffers, offset: int) -> int:
        raise Errno(abi.EBADF)

    def pwrite(self, bufs: Buffers, offset: int) -> int:
        raise Errno(abi.EBADF)

    def seek(self, offset: int, whence: int) -> int:
        raise Errno(abi.EBADF)

    def tell(self) -> int:
        raise Errno(abi.EBADF)

    def advise(self, offset: int, length: int, advice: int) -> None:
        raise Errno(abi.EBADF)

    def allocate(self, offset: int, length: int) -> None:
        raise Errno(abi.EBADF)

    def set_size(self, size: int) -> None:
        raise Errno(abi.EBADF)

    def sync(self) -> None:
        try:
            os.fsync(self.host_fd)
        except OSError as e:
            raise wasi_error(e) from None

    def datasync(self) -> None:
        try:
            os.fdatasync(self.host_fd)
        except OSError as e:
            raise wasi_error(e) from None

    def readdir(self, *, fresh: bool) -> list[tuple[int, int, bytes]]:
        if fresh or self._listing is None:
            self._listing = self._list()
        return self._listing

    def forget_listing(self) -> None:
        self._listing = None

    def _list(self) -> list[tuple[int, int, bytes]]:
        try:
            own = os.fstat(self.host_fd)
            # ".." of a pre-open is outside the sandbox: report it as the pre-open itself, also
            # on a second fd of the pre-open's directory (opened as "." below it).
            parent_ino = own.st_ino
            if self.preopen_name is None and (own.st_dev, own.st_ino) != self.root():
                with contextlib.suppress(OSError):
                    parent_ino = os.stat("..", dir_fd=self.host_fd).st_ino
            entries: list[tuple[int, int, bytes]] = [
                (own.st_ino, abi.FILETYPE_DIRECTORY, b"."),
                (parent_ino, abi.FILETYPE_DIRECTORY, b".."),
            ]
            # os.scandir(fd) works on a duplicate of the fd, so our own offset is untouched.
            with os.scandir(self.host_fd) as it:
                for entry in it:
                    name = os.fsencode(entry.name)
                    try:
                        st = entry.stat(follow_symlinks=False)
                        ftype = filetype_of_mode(st.st_mode)
                    except OSError:
                        ftype = abi.FILETYPE_UNKNOWN
                    entries.append((entry.inode(), ftype, name))
            return entries
        except OSError as e:
            raise wasi_error(e) from None

    def close(self) -> None:
        self._listing = None
        if not self.closed:
            self.closed = True
            os.close(self.host_fd)


def _utime_ns(
    st: os.stat_result, atim: int | None, mtim: int | None, atim_now: bool, mtim_now: bool
) -> tuple[int, int]:
    import time

    now = time.time_ns() if (atim_now or mtim_now) else 0
    a = now if atim_now else (atim if atim is not None else st.st_atime_ns)
    m = now if mtim_now else (mtim if mtim is not None else st.st_mtime_ns)
    return (a, m)


def _fcntl_getfl(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL)


def _fcntl_setfl(fd: int, flags: int) -> None:
    import fcntl

    fcntl.fcntl(fd, fcntl.F_SETFL, flags)


_ADVICE = {
    abi.ADVICE_NORMAL: os.POSIX_FADV_NORMAL,
    abi.ADVICE_SEQUENTIAL: os.POSIX_FADV_SEQUENTIAL,
    abi.ADVICE_RANDOM: os.POSIX_FADV_RANDOM,
    abi.ADVICE_WILLNEED: os.POSIX_FADV_WILLNEED,
    abi.ADVICE_DONTNEED: os.POSIX_FADV_DONTNEED,
    abi.ADVICE_NOREUSE: os.POSIX_FADV_NOREUSE,
}
