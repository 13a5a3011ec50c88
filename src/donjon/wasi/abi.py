"""WASI preview 1 ABI constants and record layouts.

Every value here comes from ``wasi_snapshot_preview1``'s ``typenames.witx`` (WebAssembly/WASI,
``legacy/preview1/witx/typenames.witx``) and every signature from ``wasi_snapshot_preview1.witx`` in
the same folder. Record offsets follow the witx C layout (natural alignment, little endian).
"""

from __future__ import annotations

import struct
from typing import Final

# --- errno (typenames.witx `$errno`, an enum over u16) ---------------------------------------------
ESUCCESS: Final = 0
E2BIG: Final = 1
EACCES: Final = 2
EADDRINUSE: Final = 3
EADDRNOTAVAIL: Final = 4
EAFNOSUPPORT: Final = 5
EAGAIN: Final = 6
EALREADY: Final = 7
EBADF: Final = 8
EBADMSG: Final = 9
EBUSY: Final = 10
ECANCELED: Final = 11
ECHILD: Final = 12
ECONNABORTED: Final = 13
ECONNREFUSED: Final = 14
ECONNRESET: Final = 15
EDEADLK: Final = 16
EDESTADDRREQ: Final = 17
EDOM: Final = 18
EDQUOT: Final = 19
EEXIST: Final = 20
EFAULT: Final = 21
EFBIG: Final = 22
EHOSTUNREACH: Final = 23
EIDRM: Final = 24
EILSEQ: Final = 25
EINPROGRESS: Final = 26
EINTR: Final = 27
EINVAL: Final = 28
EIO: Final = 29
EISCONN: Final = 30
EISDIR: Final = 31
ELOOP: Final = 32
EMFILE: Final = 33
EMLINK: Final = 34
EMSGSIZE: Final = 35
EMULTIHOP: Final = 36
ENAMETOOLONG: Final = 37
ENETDOWN: Final = 38
ENETRESET: Final = 39
ENETUNREACH: Final = 40
ENFILE: Final = 41
ENOBUFS: Final = 42
ENODEV: Final = 43
ENOENT: Final = 44
ENOEXEC: Final = 45
ENOLCK: Final = 46
ENOLINK: Final = 47
ENOMEM: Final = 48
ENOMSG: Final = 49
ENOPROTOOPT: Final = 50
ENOSPC: Final = 51
ENOSYS: Final = 52
ENOTCONN: Final = 53
ENOTDIR: Final = 54
ENOTEMPTY: Final = 55
ENOTRECOVERABLE: Final = 56
ENOTSOCK: Final = 57
ENOTSUP: Final = 58
ENOTTY: Final = 59
ENXIO: Final = 60
EOVERFLOW: Final = 61
EOWNERDEAD: Final = 62
EPERM: Final = 63
EPIPE: Final = 64
EPROTO: Final = 65
EPROTONOSUPPORT: Final = 66
EPROTOTYPE: Final = 67
ERANGE: Final = 68
EROFS: Final = 69
ESPIPE: Final = 70
ESRCH: Final = 71
ESTALE: Final = 72
ETIMEDOUT: Final = 73
ETXTBSY: Final = 74
EXDEV: Final = 75
ENOTCAPABLE: Final = 76

# --- rights (typenames.witx `$rights`, flags over u64; bit i = 1 << i) ------------------------------
RIGHT_FD_DATASYNC: Final = 1 << 0
RIGHT_FD_READ: Final = 1 << 1
RIGHT_FD_SEEK: Final = 1 << 2
RIGHT_FD_FDSTAT_SET_FLAGS: Final = 1 << 3
RIGHT_FD_SYNC: Final = 1 << 4
RIGHT_FD_TELL: Final = 1 << 5
RIGHT_FD_WRITE: Final = 1 << 6
RIGHT_FD_ADVISE: Final = 1 << 7
RIGHT_FD_ALLOCATE: Final = 1 << 8
RIGHT_PATH_CREATE_DIRECTORY: Final = 1 << 9
RIGHT_PATH_CREATE_FILE: Final = 1 << 10
RIGHT_PATH_LINK_SOURCE: Final = 1 << 11
RIGHT_PATH_LINK_TARGET: Final = 1 << 12
RIGHT_PATH_OPEN: Final = 1 << 13
RIGHT_FD_READDIR: Final = 1 << 14
RIGHT_PATH_READLINK: Final = 1 << 15
RIGHT_PATH_RENAME_SOURCE: Final = 1 << 16
RIGHT_PATH_RENAME_TARGET: Final = 1 << 17
RIGHT_PATH_FILESTAT_GET: Final = 1 << 18
RIGHT_PATH_FILESTAT_SET_SIZE: Final = 1 << 19
RIGHT_PATH_FILESTAT_SET_TIMES: Final = 1 << 20
RIGHT_FD_FILESTAT_GET: Final = 1 << 21
RIGHT_FD_FILESTAT_SET_SIZE: Final = 1 << 22
RIGHT_FD_FILESTAT_SET_TIMES: Final = 1 << 23
RIGHT_PATH_SYMLINK: Final = 1 << 24
RIGHT_PATH_REMOVE_DIRECTORY: Final = 1 << 25
RIGHT_PATH_UNLINK_FILE: Final = 1 << 26
RIGHT_POLL_FD_READWRITE: Final = 1 << 27
RIGHT_SOCK_SHUTDOWN: Final = 1 << 28
RIGHT_SOCK_ACCEPT: Final = 1 << 29
RIGHTS_ALL: Final = (1 << 30) - 1

# Rights that modify a file or the directory tree: never granted below a read-only pre-open.
RIGHTS_WRITING: Final = (
    RIGHT_FD_DATASYNC
    | RIGHT_FD_WRITE
    | RIGHT_FD_ALLOCATE
    | RIGHT_FD_SYNC
    | RIGHT_FD_FILESTAT_SET_SIZE
    | RIGHT_FD_FILESTAT_SET_TIMES
    | RIGHT_PATH_CREATE_DIRECTORY
    | RIGHT_PATH_CREATE_FILE
    | RIGHT_PATH_LINK_SOURCE
    | RIGHT_PATH_LINK_TARGET
    | RIGHT_PATH_RENAME_SOURCE
    | RIGHT_PATH_RENAME_TARGET
    | RIGHT_PATH_FILESTAT_SET_SIZE
    | RIGHT_PATH_FILESTAT_SET_TIMES
    | RIGHT_PATH_SYMLINK
    | RIGHT_PATH_REMOVE_DIRECTORY
    | RIGHT_PATH_UNLINK_FILE
)

# Rights that make sense on a regular file / on a directory (as wasi-libc and wasmtime group them).
RIGHTS_REGULAR_FILE: Final = (
    RIGHT_FD_DATASYNC
    | RIGHT_FD_READ
    | RIGHT_FD_SEEK
    | RIGHT_FD_FDSTAT_SET_FLAGS
    | RIGHT_FD_SYNC
    | RIGHT_FD_TELL
    | RIGHT_FD_WRITE
    | RIGHT_FD_ADVISE
    | RIGHT_FD_ALLOCATE
    | RIGHT_FD_FILESTAT_GET
    | RIGHT_FD_FILESTAT_SET_SIZE
    | RIGHT_FD_FILESTAT_SET_TIMES
    | RIGHT_POLL_FD_READWRITE
)
RIGHTS_DIRECTORY: Final = (
    RIGHT_FD_FDSTAT_SET_FLAGS
    | RIGHT_FD_SYNC
    | RIGHT_FD_ADVISE
    | RIGHT_PATH_CREATE_DIRECTORY
    | RIGHT_PATH_CREATE_FILE
    | RIGHT_PATH_LINK_SOURCE
    | RIGHT_PATH_LINK_TARGET
    | RIGHT_PATH_OPEN
    | RIGHT_FD_READDIR
    | RIGHT_PATH_READLINK
    | RIGHT_PATH_RENAME_SOURCE
    | RIGHT_PATH_RENAME_TARGET
    | RIGHT_PATH_FILESTAT_GET
    | RIGHT_PATH_FILESTAT_SET_SIZE
    | RIGHT_PATH_FILESTAT_SET_TIMES
    | RIGHT_FD_FILESTAT_GET
    | RIGHT_FD_FILESTAT_SET_TIMES
    | RIGHT_PATH_SYMLINK
    | RIGHT_PATH_REMOVE_DIRECTORY
    | RIGHT_PATH_UNLINK_FILE
    | RIGHT_POLL_FD_READWRITE
)
RIGHTS_TTY: Final = (
    RIGHT_FD_READ
    | RIGHT_FD_FDSTAT_SET_FLAGS
    | RIGHT_FD_WRITE
    | RIGHT_FD_FILESTAT_GET
    | RIGHT_POLL_FD_READWRITE
)

# --- filetype (`$filetype`, enum over u8) -----------------------------------------------------------
FILETYPE_UNKNOWN: Final = 0
FILETYPE_BLOCK_DEVICE: Final = 1
FILETYPE_CHARACTER_DEVICE: Final = 2
FILETYPE_DIRECTORY: Final = 3
FILETYPE_REGULAR_FILE: Final = 4
FILETYPE_SOCKET_DGRAM: Final = 5
FILETYPE_SOCKET_STREAM: Final = 6
FILETYPE_SYMBOLIC_LINK: Final = 7

# --- fdflags (`$fdflags`, flags over u16) -------------------------------------------------------------
FDFLAGS_APPEND: Final = 1 << 0
FDFLAGS_DSYNC: Final = 1 << 1
FDFLAGS_NONBLOCK: Final = 1 << 2
FDFLAGS_RSYNC: Final = 1 << 3
FDFLAGS_SYNC: Final = 1 << 4
FDFLAGS_ALL: Final = (1 << 5) - 1

# --- oflags (`$oflags`, flags over u16) ----------------------------------------------------------------
OFLAGS_CREAT: Final = 1 << 0
OFLAGS_DIRECTORY: Final = 1 << 1
OFLAGS_EXCL: Final = 1 << 2
OFLAGS_TRUNC: Final = 1 << 3
OFLAGS_ALL: Final = (1 << 4) - 1

# --- lookupflags (`$lookupflags`, flags over u32) ------------------------------------------------------
LOOKUPFLAGS_SYMLINK_FOLLOW: Final = 1 << 0

# --- whence (`$whence`, enum over u8) ------------------------------------------------------------------
WHENCE_SET: Final = 0
WHENCE_CUR: Final = 1
WHENCE_END: Final = 2

# --- clockid (`$clockid`, enum over u32) ---------------------------------------------------------------
CLOCK_REALTIME: Final = 0
CLOCK_MONOTONIC: Final = 1
CLOCK_PROCESS_CPUTIME_ID: Final = 2
CLOCK_THREAD_CPUTIME_ID: Final = 3

# --- fstflags (`$fstflags`, flags over u16) ------------------------------------------------------------
FSTFLAGS_ATIM: Final = 1 << 0
FSTFLAGS_ATIM_NOW: Final = 1 << 1
FSTFLAGS_MTIM: Final = 1 << 2
FSTFLAGS_MTIM_NOW: Final = 1 << 3
FSTFLAGS_ALL: Final = (1 << 4) - 1

# --- advice (`$advice`, enum over u8) ------------------------------------------------------------------
ADVICE_NORMAL: Final = 0
ADVICE_SEQUENTIAL: Final = 1
ADVICE_RANDOM: Final = 2
ADVICE_WILLNEED: Final = 3
ADVICE_DONTNEED: Final = 4
ADVICE_NOREUSE: Final = 5

# --- eventtype (`$eventtype`, enum over u8), subclockflags, eventrwflags ------------------------------
EVENTTYPE_CLOCK: Final = 0
EVENTTYPE_FD_READ: Final = 1
EVENTTYPE_FD_WRITE: Final = 2
SUBCLOCKFLAGS_ABSTIME: Final = 1 << 0
EVENTRWFLAGS_HANGUP: Final = 1 << 0

# --- preopentype (`$preopentype`, enum over u8) --------------------------------------------------------
PREOPENTYPE_DIR: Final = 0

# --- sdflags / riflags / roflags / siflags --------------------------------------------------------------
SDFLAGS_RD: Final = 1 << 0
SDFLAGS_WR: Final = 1 << 1
RIFLAGS_RECV_PEEK: Final = 1 << 0
RIFLAGS_RECV_WAITALL: Final = 1 << 1
ROFLAGS_RECV_DATA_TRUNCATED: Final = 1 << 0

# --- signal (`$signal`, enum over u8): 0 = none ... 30 = sys ----------------------------------------
SIGNAL_MAX: Final = 30

# --- record layouts ------------------------------------------------------------------------------------
# `$iovec` / `$ciovec`: buf (pointer, u32) @0, buf_len (u32) @4; size 8.
IOVEC = struct.Struct("<II")
# `$fdstat`: fs_filetype u8 @0, fs_flags u16 @2, fs_rights_base u64 @8, fs_rights_inheriting u64 @16.
FDSTAT = struct.Struct("<BxHxxxxQQ")
# `$filestat`: dev @0, ino @8, filetype u8 @16, nlink @24, size @32, atim @40, mtim @48, ctim @56.
FILESTAT = struct.Struct("<QQB7xQQQQQ")
# `$dirent`: d_next u64 @0, d_ino u64 @8, d_namlen u32 @16, d_type u8 @20; size 24 (name follows).
DIRENT = struct.Struct("<QQIB3x")
# `$prestat`: tag u8 @0, `$prestat_dir`.pr_name_len u32 @4; size 8.
PRESTAT = struct.Struct("<BxxxI")
# `$subscription`: userdata u64 @0, tag u8 @8, union @16 — clock: id u32 @16, timeout u64 @24,
# precision u64 @32, flags u16 @40; fd_readwrite: file_descriptor u32 @16. Size 48.
SUBSCRIPTION_SIZE: Final = 48
SUBSCRIPTION_HEAD = struct.Struct("<QB7x")
SUBSCRIPTION_CLOCK = struct.Struct("<IxxxxQQH")
SUBSCRIPTION_FD = struct.Struct("<I")
# `$event`: userdata u64 @0, error u16 @8, type u8 @10, fd_readwrite.nbytes u64 @16, flags u16 @24.
EVENT = struct.Struct("<QHB5xQH6x")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")

assert IOVEC.size == 8 and FDSTAT.size == 24 and FILESTAT.size == 64 and DIRENT.size == 24
assert PRESTAT.size == 8 and EVENT.size == 32
