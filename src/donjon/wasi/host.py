"""The 46 functions of ``wasi_snapshot_preview1``, and their binding to a wasmtime linker.

Signatures and semantics: WebAssembly/WASI ``legacy/preview1/witx/wasi_snapshot_preview1.witx``;
errno choices follow wasmtime's preview 1 host where the witx leaves them open.

Each WASI function is a method taking the raw integer arguments (u32 pointers and sizes, u64 values)
and returning None; failures raise ``Errno``. ``define`` wraps each method in an unchecked wasmtime
callback (see ffi.py) generated for its signature: it decodes the arguments from the
``wasmtime_val_raw_t`` array, re-reads the guest memory's base address, calls the method and writes
the errno result. No Python exception leaves a callback: ``Errno`` becomes the result, ``ProcExit``
becomes a trap that ``run_module`` turns into an exit code, anything else becomes ``EIO`` (recorded in
``host.internal_errors`` for diagnosis) — except interpreter-level exits (KeyboardInterrupt...), which
stop the guest with a trap and are re-raised once the guest has unwound.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import wasmtime

from . import abi, ffi
from .errno_map import wasi_error
from .errors import Errno, InvalidGuestSpec, PreopenError, ProcExit
from .fdtable import MAX_FDS, FdTable
from .files import DirectoryFile, NullFile, OpenFile, RegularFile, StdioFile, filestat_of, filetype_of_mode
from .memfs import MemoryDirectoryFile
from .memory import GuestMemory
from .paths import MAX_PATH, Resolved, resolve
from .sockets import Lingering, ListenSocketFile, StreamSocketFile
from .spec import ConnectedSocket, GuestFile, GuestSpec, ListenSocket, MemoryDir, PreopenDir, Stdio

MODULE = "wasi_snapshot_preview1"

# Parameter kinds per function, in witx order: "i" = i32 (read as u32), "I" = i64 (read as u64).
# Every function returns an errno (i32) except proc_exit, which returns nothing.
SIGNATURES: dict[str, str] = {
    "args_get": "ii",
    "args_sizes_get": "ii",
    "environ_get": "ii",
    "environ_sizes_get": "ii",
    "clock_res_get": "ii",
    "clock_time_get": "iIi",
    "fd_advise": "iIIi",
    "fd_allocate": "iII",
    "fd_close": "i",
    "fd_datasync": "i",
    "fd_fdstat_get": "ii",
    "fd_fdstat_set_flags": "ii",
    "fd_fdstat_set_rights": "iII",
    "fd_filestat_get": "ii",
    "fd_filestat_set_size": "iI",
    "fd_filestat_set_times": "iIIi",
    "fd_pread": "iiiIi",
    "fd_prestat_get": "ii",
    "fd_prestat_dir_name": "iii",
    "fd_pwrite": "iiiIi",
    "fd_read": "iiii",
    "fd_readdir": "iiiIi",
    "fd_renumber": "ii",
    "fd_seek": "iIii",
    "fd_sync": "i",
    "fd_tell": "ii",
    "fd_write": "iiii",
    "path_create_directory": "iii",
    "path_filestat_get": "iiiii",
    "path_filestat_set_times": "iiiiIIi",
    "path_link": "iiiiiii",
    "path_open": "iiiiiIIii",
    "path_readlink": "iiiiii",
    "path_remove_directory": "iii",
    "path_rename": "iiiiii",
    "path_symlink": "iiiii",
    "path_unlink_file": "iii",
    "poll_oneoff": "iiii",
    "proc_exit": "i",
    "proc_raise": "i",
    "sched_yield": "",
    "random_get": "ii",
    "sock_accept": "iii",
    "sock_recv": "iiiiii",
    "sock_send": "iiiii",
    "sock_shutdown": "ii",
}
NO_RESULT = frozenset({"proc_exit"})
# Functions that never touch guest memory skip the per-call memory refresh.
NO_MEMORY = frozenset(
    {
        "fd_advise",
        "fd_allocate",
        "fd_close",
        "fd_datasync",
        "fd_fdstat_set_flags",
        "fd_fdstat_set_rights",
        "fd_filestat_set_size",
        "fd_filestat_set_times",
        "fd_renumber",
        "fd_sync",
        "proc_exit",
        "proc_raise",
        "sched_yield",
        "sock_shutdown",
    }
)

MAX_IOVS = 1024  # IOV_MAX: longer iovec arrays are EINVAL, as on Linux
MAX_KEPT_LISTINGS = 16  # fd_readdir listings kept for cookies, across all of a guest's fds
MAX_RANDOM_CHUNK = 1 << 16
_I64_SIGN = 1 << 63


_CLOCKS: dict[int, Callable[[], int]] = {
    abi.CLOCK_REALTIME: time.time_ns,
    abi.CLOCK_MONOTONIC: time.monotonic_ns,
    abi.CLOCK_PROCESS_CPUTIME_ID: time.process_time_ns,
    abi.CLOCK_THREAD_CPUTIME_ID: time.thread_time_ns,
}
_CLOCK_IDS = {
    abi.CLOCK_REALTIME: time.CLOCK_REALTIME,
    abi.CLOCK_MONOTONIC: time.CLOCK_MONOTONIC,
    abi.CLOCK_PROCESS_CPUTIME_ID: time.CLOCK_PROCESS_CPUTIME_ID,
    abi.CLOCK_THREAD_CPUTIME_ID: time.CLOCK_THREAD_CPUTIME_ID,
}


_STDIO_INDEX = {"stdin": 0, "stdout": 1, "stderr": 2}
MAX_STRINGS_BYTES = 1 << 20  # args or env, NUL-terminated, in total (Linux's ARG_MAX is 2 MiB for both)


def _env_entry(key: str, value: str) -> str:
    if not key or "=" in key:
        raise InvalidGuestSpec("env", f"bad variable name {key!r}")
    return f"{key}={value}"


def _strings(field: str, items: list[str]) -> list[bytes]:
    """NUL-terminated UTF-8 strings for args_get/environ_get; NUL inside or too much in total is refused."""
    out = []
    for item in items:
        data = item.encode("utf-8")
        if b"\0" in data:
            raise InvalidGuestSpec(field, f"NUL byte in {item!r}")
        out.append(data + b"\0")
    if sum(len(b) for b in out) > MAX_STRINGS_BYTES:
        raise InvalidGuestSpec(field, f"more than {MAX_STRINGS_BYTES} bytes")
    return out


def _signed64(value: int) -> int:
    return value - (1 << 64) if value & _I64_SIGN else value


class WasiHost:
    """One guest's WASI state: its memory, fd table, args and environment."""

    def __init__(self, spec: GuestSpec, store_context: int) -> None:
        self.memory = GuestMemory()
        self.store_context = store_context
        self.fds = FdTable()
        self.exit_code: int | None = None
        self.fatal: BaseException | None = None
        self.internal_errors: list[BaseException] = []
        self.lingering = Lingering()  # closed sockets still flushing their last bytes
        self._listed: list[OpenFile] = []  # the directories holding an fd_readdir listing, oldest first
        self.args = _strings("args", list(spec.args))
        self.env = _strings("env", [_env_entry(k, v) for k, v in spec.env])
        if len(spec.files) > MAX_FDS:
            raise InvalidGuestSpec("files", f"more than {MAX_FDS} files")
        try:
            for entry in spec.files:
                self.fds.insert(self._open_entry(entry, spec.stdio_fds))
        except BaseException:
            self.fds.close_all()
            raise

    def _open_entry(self, entry: GuestFile, stdio_fds: tuple[int, int, int]) -> OpenFile:
        if isinstance(entry, ListenSocket):
            return ListenSocketFile(entry.listener, self.lingering)
        if isinstance(entry, ConnectedSocket):
            return StreamSocketFile(entry.stream, self.lingering)
        if isinstance(entry, Stdio):
            if entry.kind == "null":
                return NullFile()
            if entry.kind not in _STDIO_INDEX:
                raise InvalidGuestSpec("files", f"unknown stdio kind {entry.kind!r}")
            index = _STDIO_INDEX[entry.kind]
            return StdioFile(stdio_fds[index], readable=index == 0)
        if isinstance(entry, MemoryDir):
            if not entry.guest_path or "\0" in entry.guest_path:
                raise InvalidGuestSpec("files", f"bad pre-open guest path {entry.guest_path!r}")
            return MemoryDirectoryFile(entry.listing, preopen_name=entry.guest_path)
        if isinstance(entry, PreopenDir):
            host_path = Path(entry.host_path)
            if not host_path.is_absolute():
                raise InvalidGuestSpec("files", f"pre-open host path {host_path} is not absolute")
            if not entry.guest_path or "\0" in entry.guest_path:
                raise InvalidGuestSpec("files", f"bad pre-open guest path {entry.guest_path!r}")
            try:
                fd = os.open(host_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as e:
                raise PreopenError(str(host_path), e.strerror or str(e)) from e
            rights = abi.RIGHTS_DIRECTORY
            inheriting = abi.RIGHTS_DIRECTORY | abi.RIGHTS_REGULAR_FILE
            if not entry.writable:
                rights &= ~abi.RIGHTS_WRITING
                inheriting &= ~abi.RIGHTS_WRITING
            return DirectoryFile(
                fd, rights, inheriting, writable=entry.writable, preopen_name=entry.guest_path
            )
        raise InvalidGuestSpec("files", f"unknown guest file kind {type(entry).__name__}")

    def close(self) -> None:
        self.fds.close_all()
        self.lingering.drain()

    # =========================================================================================
    # args / environ
    # =========================================================================================
    def args_sizes_get(self, argc_ptr: int, size_ptr: int) -> None:
        self.memory.set_u32(argc_ptr, len(self.args))
        self.memory.set_u32(size_ptr, sum(len(a) for a in self.args))

    def args_get(self, argv_ptr: int, buf_ptr: int) -> None:
        self.memory.write_strings(argv_ptr, buf_ptr, self.args)

    def environ_sizes_get(self, count_ptr: int, size_ptr: int) -> None:
        self.memory.set_u32(count_ptr, len(self.env))
        self.memory.set_u32(size_ptr, sum(len(e) for e in self.env))

    def environ_get(self, environ_ptr: int, buf_ptr: int) -> None:
        self.memory.write_strings(environ_ptr, buf_ptr, self.env)

    # =========================================================================================
    # clocks, random, scheduling, process
    # =========================================================================================
    def clock_res_get(self, clock_id: int, res_ptr: int) -> None:
        cid = _CLOCK_IDS.get(clock_id)
        if cid is None:
            raise Errno(abi.EINVAL)
        res = max(1, int(time.clock_getres(cid) * 1e9))
        self.memory.set_u64(res_ptr, res)

    def clock_time_get(self, clock_id: int, precision: int, time_ptr: int) -> None:
        clock = _CLOCKS.get(clock_id)
        if clock is None:
            raise Errno(abi.EINVAL)
        self.memory.set_u64(time_ptr, clock())

    def random_get(self, buf: int, length: int) -> None:
        # witx: "fill a buffer with random bytes" — from the OS CSPRNG (getrandom(2)), in bounded
        # chunks so a 4 GiB request never needs a second 4 GiB buffer on the host.
        if length <= MAX_RANDOM_CHUNK:
            self.memory.write(buf, os.urandom(length))
            return
        view = self.memory.view(buf, length)
        for start in range(0, length, MAX_RANDOM_CHUNK):
            end = min(length, start + MAX_RANDOM_CHUNK)
            view[start:end] = os.urandom(end - start)

    def sched_yield(self) -> None:
        os.sched_yield()

    def proc_exit(self, code: int) -> None:
        raise ProcExit(code)

    def proc_raise(self, signal: int) -> None:
        # Signals are not part of Donjon's sandbox (nor of wasmtime's preview 1 host).
        raise Errno(abi.ENOSYS)

    # =========================================================================================
    # fd_* on any descriptor
    # =========================================================================================
    def fd_close(self, fd: int) -> None:
        f = self.fds.remove(fd)
        try:
            f.close()
        except OSError as e:
            raise wasi_error(e) from None

    def fd_renumber(self, fd: int, to: int) -> None:
        try:
            self.fds.renumber(fd, to)
        except OSError as e:
            raise wasi_error(e) from None

    def fd_fdstat_get(self, fd: int, ptr: int) -> None:
        f = self.fds.get(fd)
        self.memory.pack(abi.FDSTAT, ptr, f.filetype, f.fdflags, f.rights_base, f.rights_inheriting)

    def fd_fdstat_set_flags(self, fd: int, flags: int) -> None:
        f = self.fds.get(fd, abi.RIGHT_FD_FDSTAT_SET_FLAGS)
        if flags & ~abi.FDFLAGS_ALL:
            raise Errno(abi.EINVAL)
        f.set_fdflags(flags)

    def fd_fdstat_set_rights(self, fd: int, base: int, inheriting: int) -> None:
        f = self.fds.get(fd)
        # Rights can only be dropped (witx: "can only remove rights").
        if base & ~f.rights_base or inheriting & ~f.rights_inheriting:
            raise Errno(abi.ENOTCAPABLE)
        f.rights_base = base
        f.rights_inheriting = inheriting

    def fd_filestat_get(self, fd: int, ptr: int) -> None:
        f = self.fds.get(fd, abi.RIGHT_FD_FILESTAT_GET)
        self.memory.pack(abi.FILESTAT, ptr, *f.filestat())

    def fd_filestat_set_size(self, fd: int, size: int) -> None:
        f = self.fds.get(fd, abi.RIGHT_FD_FILESTAT_SET_SIZE)
        if size & _I64_SIGN:
            raise Errno(abi.EINVAL)
        f.set_size(size)

    def fd_filestat_set_times(self, fd: int, atim: int, mtim: int, flags: int) -> None:
        f = self.fds.get(fd, abi.RIGHT_FD_FILESTAT_SET_TIMES)
        a, m, anow, mnow = _times(atim, mtim, flags)
        f.set_times(a, m, anow, mnow)

    def fd_advise(self, fd: int, offset: int, length: int, advice: int) -> None:
        f = self.fds.get(fd, abi.RIGHT_FD_ADVISE)
        if advice > abi.ADVICE_NOREUSE:
            raise Errno(abi.EINVAL)
        if (offset | length) & _I64_SIGN:
            raise Errno(abi.EINVAL)
        f.advise(offset, length, advice)

    def fd_allocate(self, fd: int, offset: int, length: int) -> None:
        f = self.fds.get(fd, abi.RIGHT_FD_ALLOCATE)
        f.allocate(offset, length)

    def fd_datasync(self, fd: int) -> None:
        self.fds.get(fd, abi.RIGHT_FD_DATASYNC).datasync()

    def fd_sync(self, fd: int) -> None:
        self.fds.get(fd, abi.RIGHT_FD_SYNC).sync()

    def fd_prestat_get(self, fd: int, ptr: int) -> None:
        name = self.fds.get(fd).preopen_name
        if name is None:
            raise Errno(abi.EBADF)
        self.memory.pack(abi.PRESTAT, ptr, abi.PREOPENTYPE_DIR, len(name.encode()))

    def fd_prestat_dir_name(self, fd: int, path: int, path_len: int) -> None:
        name = self.fds.get(fd).preopen_name
        if name is None:
            raise Errno(abi.EBADF)
        data = name.encode()
        if path_len < len(data):
            raise Errno(abi.ENAMETOOLONG)
        self.memory.write(path, data)

    # =========================================================================================
    # reading and writing
    # =========================================================================================
    def _iovs(self, iovs: int, count: int) -> list[memoryview]:
        if count > MAX_IOVS:
            raise Errno(abi.EINVAL)
        return self.memory.iovecs(iovs, count)

    def fd_read(self, fd: int, iovs: int, iovs_len: int, nread_ptr: int) -> None:
        f = self.fds.get(fd, abi.RIGHT_FD_READ)
        n = f.read(self._iovs(iovs, iovs_len))
        self.memory.set_u32(nread_ptr, n)

    def fd_write(self, fd: int, iovs: int, iovs_len: int, nwritten_ptr: int) -> None:
        f = self.fds.get(fd, abi.RIGHT_FD_WRITE)
        n = f.write(self._iovs(iovs, iovs_len))
        self.memory.set_u32(nwritten_ptr, n)

    def fd_pread(self, fd: int, iovs: int, iovs_len: int, offset: int, nread_ptr: int) -> None:
        f = self.fds.get(fd, abi.RIGHT_FD_READ | abi.RIGHT_FD_SEEK)
        if offset & _I64_SIGN:
            raise Errno(abi.EINVAL)
        n = f.pread(self._iovs(iovs, iovs_len), offset)
        self.memory.set_u32(nread_ptr, n)

    def fd_pwrite(self, fd: int, iovs: int, iovs_len: int, offset: int, nwritten_ptr: int) -> None:
        f = self.fds.get(fd, abi.RIGHT_FD_WRITE | abi.RIGHT_FD_SEEK)
        if offset & _I64_SIGN:
            raise Errno(abi.EINVAL)
        n = f.pwrite(self._iovs(iovs, iovs_len), offset)
        self.memory.set_u32(nwritten_ptr, n)

    def fd_seek(self, fd: int, offset: int, whence: int, newoffset_ptr: int) -> None:
        delta = _signed64(offset)
        need = abi.RIGHT_FD_TELL if (delta == 0 and whence == abi.WHENCE_CUR) else abi.RIGHT_FD_SEEK
        f = self.fds.get(fd)
        if need & ~f.rights_base and abi.RIGHT_FD_SEEK & ~f.rights_base:
            raise Errno(abi.ENOTCAPABLE)
        if whence > abi.WHENCE_END:
            raise Errno(abi.EINVAL)
        # WASI whence values equal POSIX SEEK_SET/SEEK_CUR/SEEK_END.
        pos = f.seek(delta, whence)
        self.memory.set_u64(newoffset_ptr, pos)

    def fd_tell(self, fd: int, ptr: int) -> None:
        f = self.fds.get(fd, abi.RIGHT_FD_TELL)
        self.memory.set_u64(ptr, f.tell())

    def fd_readdir(self, fd: int, buf: int, buf_len: int, cookie: int, bufused_ptr: int) -> None:
        f = self.fds.get(fd, abi.RIGHT_FD_READDIR)
        view = self.memory.view(buf, buf_len)
        # The cookie is the index of the next entry (d_next of the previous one). Cookie 0 starts a
        # new listing; later cookies continue the one taken then, so entries never shift under it.
        entries = f.readdir(fresh=cookie == 0)
        # Listings are kept for the MAX_KEPT_LISTINGS directories listed last (a tree walk resumes
        # its parents): with one per fd, a guest could hold (1024 fds x a large directory's entries)
        # of host memory. A dropped listing is taken again and continued at the cookie (POSIX leaves
        # entries added or removed meanwhile unspecified).
        listed = self._listed
        if f in listed:
            listed.remove(f)
        listed.append(f)
        if len(listed) > MAX_KEPT_LISTINGS:
            listed.pop(0).forget_listing()
        used = 0
        # Entries that do not fit are cut at buf_len: wasi-libc then retries with a larger buffer.
        for index in range(cookie, len(entries)):
            if used >= buf_len:
                break
            ino, ftype, name = entries[index]
            record = abi.DIRENT.pack(index + 1, ino, len(name), ftype) + name
            take = min(len(record), buf_len - used)
            view[used : used + take] = record[:take]
            used += take
        self.memory.set_u32(bufused_ptr, used)

    # =========================================================================================
    # path_*: resolved below a directory fd (see paths.py)
    # =========================================================================================
    def _dir(self, fd: int, right: int) -> DirectoryFile:
        f = self.fds.get(fd)
        if isinstance(f, MemoryDirectoryFile):
            # path_open and path_filestat_get serve an in-memory directory themselves; everything
            # else would change it, or follow links it does not have.
            raise Errno(abi.EPERM if right & abi.RIGHTS_WRITING else abi.ENOTCAPABLE)
        if not isinstance(f, DirectoryFile):
            raise Errno(abi.ENOTDIR)
        if right & ~f.rights_base:
            # A read-only tree refuses modification (EPERM, as wasmtime); a dropped right is ENOTCAPABLE.
            if right & abi.RIGHTS_WRITING and not f.writable:
                raise Errno(abi.EPERM)
            raise Errno(abi.ENOTCAPABLE)
        return f

    def _read_path(self, ptr: int, length: int) -> str:
        if length > MAX_PATH:
            raise Errno(abi.ENAMETOOLONG)  # before copying anything out of guest memory
        return self.memory.read_str(ptr, length)

    def _path(self, fd: int, right: int, ptr: int, length: int, follow: bool) -> Resolved:
        d = self._dir(fd, right)
        return resolve(d.host_fd, self._read_path(ptr, length), follow=follow)

    def path_create_directory(self, fd: int, path: int, path_len: int) -> None:
        with self._path(fd, abi.RIGHT_PATH_CREATE_DIRECTORY, path, path_len, False) as r:
            try:
                os.mkdir(r.name, 0o777, dir_fd=r.dir_fd)
            except OSError as e:
                raise wasi_error(e) from None

    def path_filestat_get(self, fd: int, flags: int, path: int, path_len: int, buf: int) -> None:
        memory = self.fds.get(fd)
        if isinstance(memory, MemoryDirectoryFile):
            self.fds.get(fd, abi.RIGHT_PATH_FILESTAT_GET)
            self.memory.pack(abi.FILESTAT, buf, *memory.stat_path(self._read_path(path, path_len)))
            return
        follow = bool(flags & abi.LOOKUPFLAGS_SYMLINK_FOLLOW)
        with self._path(fd, abi.RIGHT_PATH_FILESTAT_GET, path, path_len, follow) as r:
            try:
                st = os.stat(r.name, dir_fd=r.dir_fd, follow_symlinks=False)
            except OSError as e:
                raise wasi_error(e) from None
            if r.must_be_dir and _not_dir(st):
                raise Errno(abi.ENOTDIR)
        self.memory.pack(abi.FILESTAT, buf, *filestat_of(st))

    def path_filestat_set_times(
        self, fd: int, flags: int, path: int, path_len: int, atim: int, mtim: int, fst: int
    ) -> None:
        a, m, anow, mnow = _times(atim, mtim, fst)
        follow = bool(flags & abi.LOOKUPFLAGS_SYMLINK_FOLLOW)
        with self._path(fd, abi.RIGHT_PATH_FILESTAT_SET_TIMES, path, path_len, follow) as r:
            try:
                st = os.stat(r.name, dir_fd=r.dir_fd, follow_symlinks=False)
                now = time.time_ns()
                times = (
                    now if anow else (a if a is not None else st.st_atime_ns),
                    now if mnow else (m if m is not None else st.st_mtime_ns),
                )
                os.utime(r.name, ns=times, dir_fd=r.dir_fd, follow_symlinks=False)
            except OSError as e:
                raise wasi_error(e) from None

    def path_link(
        self,
        old_fd: int,
        old_flags: int,
        old_path: int,
        old_len: int,
        new_fd: int,
        new_path: int,
        new_len: int,
    ) -> None:
        follow = bool(old_flags & abi.LOOKUPFLAGS_SYMLINK_FOLLOW)
        with (
            self._path(old_fd, abi.RIGHT_PATH_LINK_SOURCE, old_path, old_len, follow) as src,
            self._path(new_fd, abi.RIGHT_PATH_LINK_TARGET, new_path, new_len, False) as dst,
        ):
            if dst.must_be_dir or src.must_be_dir:
                # "link/" names a directory: a hard link to a non-directory can never be one.
                st = _lstat_or_none(src)
                if st is None or _not_dir(st):
                    raise Errno(abi.ENOENT if dst.must_be_dir else abi.ENOTDIR)
            try:
                os.link(
                    src.name, dst.name, src_dir_fd=src.dir_fd, dst_dir_fd=dst.dir_fd, follow_symlinks=False
                )
            except OSError as e:
                raise wasi_error(e) from None

    def path_open(
        self,
        fd: int,
        dirflags: int,
        path: int,
        path_len: int,
        oflags: int,
        rights_base: int,
        rights_inheriting: int,
        fdflags: int,
        opened_ptr: int,
    ) -> None:
        memory = self.fds.get(fd)
        if isinstance(memory, MemoryDirectoryFile):
            self.fds.get(fd, abi.RIGHT_PATH_OPEN)
            if oflags & ~abi.OFLAGS_ALL or fdflags & ~abi.FDFLAGS_ALL:
                raise Errno(abi.EINVAL)
            opened = memory.open_path(
                self._read_path(path, path_len), oflags, rights_base & memory.rights_inheriting, fdflags
            )
            new_fd = self.fds.insert(opened)
            try:
                self.memory.set_u32(opened_ptr, new_fd)
            except Errno:
                self.fds.remove(new_fd).close()
                raise
            return
        d = self._dir(fd, abi.RIGHT_PATH_OPEN)
        if oflags & ~abi.OFLAGS_ALL or fdflags & ~abi.FDFLAGS_ALL:
            raise Errno(abi.EINVAL)
        if oflags & abi.OFLAGS_CREAT:
            self._dir(fd, abi.RIGHT_PATH_CREATE_FILE)
        if oflags & abi.OFLAGS_TRUNC:
            self._dir(fd, abi.RIGHT_PATH_FILESTAT_SET_SIZE)
        if not d.writable:
            # Below a read-only pre-open nothing is created, truncated or written (wasmtime: EPERM).
            if fdflags & abi.FDFLAGS_APPEND:
                raise Errno(abi.EPERM)
            rights_base &= ~abi.RIGHTS_WRITING
            rights_inheriting &= ~abi.RIGHTS_WRITING
        # witx `path_open`: the new fd's rights come from the directory's inheriting rights, so a
        # right the guest dropped (fd_fdstat_set_rights) cannot be regained by opening "." again.
        # wasi-libc asks for every right: the request is narrowed, not refused.
        rights_base &= d.rights_inheriting
        rights_inheriting &= d.rights_inheriting
        guest_path = self._read_path(path, path_len)
        follow = bool(dirflags & abi.LOOKUPFLAGS_SYMLINK_FOLLOW)
        # As wasmtime: the requested rights decide the host open mode; no read/write right = read-only.
        readable = bool(rights_base & (abi.RIGHT_FD_READ | abi.RIGHT_FD_READDIR))
        writable = bool(rights_base & _WRITE_MODE_RIGHTS)
        mode = (os.O_RDWR if readable else os.O_WRONLY) if writable else os.O_RDONLY
        flags = mode | _open_flags(oflags, fdflags)
        with resolve(d.host_fd, guest_path, follow=follow) as r:
            if r.must_be_dir:
                if flags & os.O_CREAT:
                    raise Errno(abi.EISDIR) if _lstat_or_none(r) is None else Errno(abi.EEXIST)
                flags |= os.O_DIRECTORY
            try:
                # Opened non-blocking so a FIFO left in the tree cannot hang the host in open(2).
                host_fd = os.open(r.name, flags | os.O_NONBLOCK, 0o666, dir_fd=r.dir_fd)
            except OSError as e:
                raise wasi_error(e) from None
        try:
            st = os.fstat(host_fd)
            if not fdflags & abi.FDFLAGS_NONBLOCK:
                os.set_blocking(host_fd, True)
            new: OpenFile
            if _isdir(st):
                base = rights_base & abi.RIGHTS_DIRECTORY
                new = DirectoryFile(host_fd, base, rights_inheriting, writable=d.writable, root=d.root())
            else:
                new = RegularFile(host_fd, rights_base & abi.RIGHTS_REGULAR_FILE, rights_inheriting, fdflags)
                new.filetype = filetype_of_mode(st.st_mode)
            new_fd = self.fds.insert(new)
        except BaseException:
            os.close(host_fd)
            raise
        try:
            self.memory.set_u32(opened_ptr, new_fd)
        except Errno:
            self.fds.remove(new_fd).close()
            raise

    def path_readlink(self, fd: int, path: int, path_len: int, buf: int, buf_len: int, used_ptr: int) -> None:
        with self._path(fd, abi.RIGHT_PATH_READLINK, path, path_len, False) as r:
            try:
                target = os.fsencode(os.readlink(r.name, dir_fd=r.dir_fd))
            except OSError as e:
                raise wasi_error(e) from None
        data = target[:buf_len]
        self.memory.write(buf, data)
        self.memory.set_u32(used_ptr, len(data))

    def path_remove_directory(self, fd: int, path: int, path_len: int) -> None:
        with self._path(fd, abi.RIGHT_PATH_REMOVE_DIRECTORY, path, path_len, False) as r:
            try:
                os.rmdir(r.name, dir_fd=r.dir_fd)
            except OSError as e:
                raise wasi_error(e) from None

    def path_rename(self, fd: int, old: int, old_len: int, new_fd: int, new: int, new_len: int) -> None:
        with (
            self._path(fd, abi.RIGHT_PATH_RENAME_SOURCE, old, old_len, False) as src,
            self._path(new_fd, abi.RIGHT_PATH_RENAME_TARGET, new, new_len, False) as dst,
        ):
            if src.must_be_dir or dst.must_be_dir:
                st = _lstat_or_none(src)
                if st is None:
                    raise Errno(abi.ENOENT)
                if _not_dir(st):
                    raise Errno(abi.ENOTDIR)
            try:
                os.rename(src.name, dst.name, src_dir_fd=src.dir_fd, dst_dir_fd=dst.dir_fd)
            except OSError as e:
                raise wasi_error(e) from None

    def path_symlink(self, old: int, old_len: int, fd: int, new: int, new_len: int) -> None:
        target = self._read_path(old, old_len)
        if "\x00" in target:
            raise Errno(abi.EILSEQ)
        if target.startswith("/"):
            # An absolute target could only ever point outside the sandbox (wasmtime: EPERM).
            raise Errno(abi.EPERM)
        with self._path(fd, abi.RIGHT_PATH_SYMLINK, new, new_len, False) as r:
            if r.must_be_dir:
                raise Errno(abi.ENOENT) if _lstat_or_none(r) is None else Errno(abi.EEXIST)
            try:
                os.symlink(target, r.name, dir_fd=r.dir_fd)
            except OSError as e:
                raise wasi_error(e) from None

    def path_unlink_file(self, fd: int, path: int, path_len: int) -> None:
        with self._path(fd, abi.RIGHT_PATH_UNLINK_FILE, path, path_len, False) as r:
            if r.must_be_dir:
                st = _lstat_or_none(r)
                if st is None:
                    raise Errno(abi.ENOENT)
                raise Errno(abi.EISDIR if not _not_dir(st) else abi.ENOTDIR)
            try:
                os.unlink(r.name, dir_fd=r.dir_fd)
            except OSError as e:
                raise wasi_error(e) from None

    # =========================================================================================
    # poll_oneoff
    # =========================================================================================
    def poll_oneoff(self, in_ptr: int, out_ptr: int, nsubs: int, nevents_ptr: int) -> None:
        from .poll import poll_oneoff

        poll_oneoff(self, in_ptr, out_ptr, nsubs, nevents_ptr)

    # =========================================================================================
    # sockets: the socket kinds (sockets.py) implement these; every other file is ENOTSOCK.
    # =========================================================================================
    def _socket(self, fd: int) -> OpenFile:
        f = self.fds.get(fd)
        if not f.is_socket:
            raise Errno(abi.ENOTSOCK)
        return f

    def sock_accept(self, fd: int, flags: int, ro_fd_ptr: int) -> None:
        f = self._socket(fd)
        self.memory.view(ro_fd_ptr, 4)  # EFAULT before taking a connection, not after
        new = f.sock_accept(flags)
        try:
            new_fd = self.fds.insert(new)
        except Errno:
            new.close()  # ENFILE: the connection is closed, not leaked
            raise
        self.memory.set_u32(ro_fd_ptr, new_fd)

    def sock_recv(
        self, fd: int, ri_data: int, ri_len: int, ri_flags: int, ro_len_ptr: int, ro_flags_ptr: int
    ) -> None:
        f = self._socket(fd)
        n, flags = f.sock_recv(self._iovs(ri_data, ri_len), ri_flags)
        self.memory.set_u32(ro_len_ptr, n)
        self.memory.pack(_U16, ro_flags_ptr, flags)

    def sock_send(self, fd: int, si_data: int, si_len: int, si_flags: int, so_len_ptr: int) -> None:
        f = self._socket(fd)
        n = f.sock_send(self._iovs(si_data, si_len), si_flags)
        self.memory.set_u32(so_len_ptr, n)

    def sock_shutdown(self, fd: int, how: int) -> None:
        self._socket(fd).sock_shutdown(how)

    # =========================================================================================
    # binding to wasmtime
    # =========================================================================================
    def bind_memory_from_caller(self, caller: int) -> None:
        """Called before instantiation finishes (a start function calling WASI): find the memory."""
        self.memory.bind(ffi.memory_from_caller(caller, self.store_context))

    def on_exit(self, code: int) -> int:
        self.exit_code = code
        return ffi.trap_new(f"proc_exit({code})")

    def on_internal_error(self, error: BaseException) -> int:
        """An unexpected host exception: recorded; the guest sees EIO."""
        if len(self.internal_errors) < 16:
            self.internal_errors.append(error)
        return abi.EIO

    def on_fatal(self, error: BaseException) -> int:
        self.fatal = error
        return ffi.trap_new(f"host interrupted: {type(error).__name__}")


_U16 = struct.Struct("<H")

# Rights whose presence makes path_open open the host file for writing.
_WRITE_MODE_RIGHTS = (
    abi.RIGHT_FD_WRITE | abi.RIGHT_FD_ALLOCATE | abi.RIGHT_FD_FILESTAT_SET_SIZE | abi.RIGHT_FD_DATASYNC
)


def _open_flags(oflags: int, fdflags: int) -> int:
    """Host open(2) flags for witx `$oflags` and `$fdflags`; the last component is never followed."""
    flags = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
    for wasi_flag, host_flag in (
        (abi.OFLAGS_CREAT, os.O_CREAT),
        (abi.OFLAGS_EXCL, os.O_EXCL),
        (abi.OFLAGS_TRUNC, os.O_TRUNC),
        (abi.OFLAGS_DIRECTORY, os.O_DIRECTORY),
    ):
        if oflags & wasi_flag:
            flags |= host_flag
    for wasi_flag, host_flag in (
        (abi.FDFLAGS_APPEND, os.O_APPEND),
        (abi.FDFLAGS_NONBLOCK, os.O_NONBLOCK),
        (abi.FDFLAGS_DSYNC, os.O_DSYNC),
        (abi.FDFLAGS_RSYNC, os.O_SYNC),
        (abi.FDFLAGS_SYNC, os.O_SYNC),
    ):
        if fdflags & wasi_flag:
            flags |= host_flag
    return flags


def _not_dir(st: os.stat_result) -> bool:
    return not _isdir(st)


def _isdir(st: os.stat_result) -> bool:
    return (st.st_mode & 0o170000) == 0o040000


def _lstat_or_none(r: Resolved) -> os.stat_result | None:
    try:
        return os.stat(r.name, dir_fd=r.dir_fd, follow_symlinks=False)
    except OSError:
        return None


def _times(atim: int, mtim: int, flags: int) -> tuple[int | None, int | None, bool, bool]:
    """Validate witx `$fstflags`: a time and its `_now` variant together, or unknown bits, are EINVAL."""
    if flags & ~abi.FSTFLAGS_ALL:
        raise Errno(abi.EINVAL)
    if flags & abi.FSTFLAGS_ATIM and flags & abi.FSTFLAGS_ATIM_NOW:
        raise Errno(abi.EINVAL)
    if flags & abi.FSTFLAGS_MTIM and flags & abi.FSTFLAGS_MTIM_NOW:
        raise Errno(abi.EINVAL)
    a = atim if flags & abi.FSTFLAGS_ATIM else None
    m = mtim if flags & abi.FSTFLAGS_MTIM else None
    return a, m, bool(flags & abi.FSTFLAGS_ATIM_NOW), bool(flags & abi.FSTFLAGS_MTIM_NOW)


# ==============================================================================================
# Trampolines: generated per signature, so each call does only the work its arguments need.
# ==============================================================================================
# The trampoline source, specialised per (touches memory?, parameter count, returns errno?) and
# compiled once per process; each host then gets its own closure over its method and memory.
_TEMPLATE = """
def make(method, host, memory, unpack):
    def callback(env, caller, args, nargs):
        try:
{refresh}{decode}            method({params})
            {result_ok}
        except Errno as e:
            {result_err}
        except OverflowError:
            # A guest number too large for the host call it feeds (a time, an offset): invalid.
            {result_inval}
        except ProcExit as e:
            return host.on_exit(e.code & 0xFFFFFFFF)
        except Exception as e:
            {result_eio}
        except BaseException as e:
            return host.on_fatal(e)
        return 0
    return callback
"""

# Re-read the memory's base address (one C call); rebuild the view only when it moved.
_REFRESH = """            if memory._ref is None:
                host.bind_memory_from_caller(caller)
            else:
                base = memory_data(memory._context, memory._address)
                if base != memory._base:
                    memory._remap(base)
"""

_RESULT = struct.Struct("<I")
_FACTORIES: dict[tuple[bool, int, bool], Callable[..., Callable[..., int]]] = {}
_UNPACKERS: dict[str, Callable[..., tuple[int, ...]]] = {}


def _param_format(params: str) -> str:
    """struct format decoding the parameters from the val_raw array (16 bytes per slot)."""
    parts = ["I12x" if kind == "i" else "Q8x" for kind in params]
    return "<" + "".join(parts)


def _factory(refresh: bool, nparams: int, has_result: bool) -> Callable[..., Callable[..., int]]:
    key = (refresh, nparams, has_result)
    factory = _FACTORIES.get(key)
    if factory is None:
        names = [f"a{i}" for i in range(nparams)]
        source = _TEMPLATE.format(
            refresh=_REFRESH if refresh else "",
            decode=f"            {', '.join(names)}, = unpack(RAW, args)\n" if nparams else "",
            params=", ".join(names),
            # The i32 result goes in the first slot's low 4 bytes (wasmtime_val_raw_t.i32).
            result_ok="set_result(RAW, args, 0)" if has_result else "pass",
            result_err="set_result(RAW, args, e.code)" if has_result else "pass",
            result_inval=f"set_result(RAW, args, {abi.EINVAL})" if has_result else "pass",
            result_eio="set_result(RAW, args, host.on_internal_error(e))"
            if has_result
            else "host.on_internal_error(e)",
        )
        namespace: dict[str, Any] = {
            "Errno": Errno,
            "ProcExit": ProcExit,
            "RAW": ffi.RAW,
            "memory_data": ffi.memory_data,
            "set_result": _RESULT.pack_into,
        }
        exec(compile(source, f"<wasi trampoline {key}>", "exec"), namespace)
        factory = _FACTORIES[key] = namespace["make"]
    return factory


def _trampoline(host: WasiHost, name: str, params: str) -> Any:
    unpack = _UNPACKERS.get(params)
    if unpack is None:
        unpack = _UNPACKERS[params] = struct.Struct(_param_format(params)).unpack_from
    make = _factory(name not in NO_MEMORY, len(params), name not in NO_RESULT)
    return ffi.UNCHECKED_CALLBACK(make(getattr(host, name), host, host.memory, unpack))


def _func_type(name: str) -> wasmtime.FuncType:
    # Not cached: wasmtime binds a function type to the first engine it is used with.
    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
    params = [i32 if k == "i" else i64 for k in SIGNATURES[name]]
    return wasmtime.FuncType(params, [] if name in NO_RESULT else [i32])


def define(linker: wasmtime.Linker, host: WasiHost, names: Iterable[str] | None = None) -> list[Any]:
    """Define ``names`` (default: all 46 WASI functions) of ``host`` in ``linker``.

    Returns the callbacks, which must stay alive as long as any store instantiated through the linker.
    """
    keep: list[Any] = []
    for name in SIGNATURES if names is None else names:
        cb = _trampoline(host, name, SIGNATURES[name])
        ffi.define_unchecked(linker, MODULE, name, _func_type(name), cb)
        keep.append(cb)
    return keep
