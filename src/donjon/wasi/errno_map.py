"""Host (POSIX) errno -> WASI `$errno` (typenames.witx), for errors the host OS reports."""

from __future__ import annotations

import errno as _e

from . import abi
from .errors import Errno

_MAP: dict[int, int] = {
    _e.E2BIG: abi.E2BIG,
    _e.EACCES: abi.EACCES,
    _e.EADDRINUSE: abi.EADDRINUSE,
    _e.EADDRNOTAVAIL: abi.EADDRNOTAVAIL,
    _e.EAFNOSUPPORT: abi.EAFNOSUPPORT,
    _e.EAGAIN: abi.EAGAIN,
    _e.EALREADY: abi.EALREADY,
    _e.EBADF: abi.EBADF,
    _e.EBADMSG: abi.EBADMSG,
    _e.EBUSY: abi.EBUSY,
    _e.ECANCELED: abi.ECANCELED,
    _e.ECHILD: abi.ECHILD,
    _e.ECONNABORTED: abi.ECONNABORTED,
    _e.ECONNREFUSED: abi.ECONNREFUSED,
    _e.ECONNRESET: abi.ECONNRESET,
    _e.EDEADLK: abi.EDEADLK,
    _e.EDESTADDRREQ: abi.EDESTADDRREQ,
    _e.EDOM: abi.EDOM,
    _e.EDQUOT: abi.EDQUOT,
    _e.EEXIST: abi.EEXIST,
    _e.EFAULT: abi.EFAULT,
    _e.EFBIG: abi.EFBIG,
    _e.EHOSTUNREACH: abi.EHOSTUNREACH,
    _e.EIDRM: abi.EIDRM,
    _e.EILSEQ: abi.EILSEQ,
    _e.EINPROGRESS: abi.EINPROGRESS,
    _e.EINTR: abi.EINTR,
    _e.EINVAL: abi.EINVAL,
    _e.EIO: abi.EIO,
    _e.EISCONN: abi.EISCONN,
    _e.EISDIR: abi.EISDIR,
    _e.ELOOP: abi.ELOOP,
    _e.EMFILE: abi.EMFILE,
    _e.EMLINK: abi.EMLINK,
    _e.EMSGSIZE: abi.EMSGSIZE,
    _e.EMULTIHOP: abi.EMULTIHOP,
    _e.ENAMETOOLONG: abi.ENAMETOOLONG,
    _e.ENETDOWN: abi.ENETDOWN,
    _e.ENETRESET: abi.ENETRESET,
    _e.ENETUNREACH: abi.ENETUNREACH,
    _e.ENFILE: abi.ENFILE,
    _e.ENOBUFS: abi.ENOBUFS,
    _e.ENODEV: abi.ENODEV,
    _e.ENOENT: abi.ENOENT,
    _e.ENOEXEC: abi.ENOEXEC,
    _e.ENOLCK: abi.ENOLCK,
    _e.ENOLINK: abi.ENOLINK,
    _e.ENOMEM: abi.ENOMEM,
    _e.ENOMSG: abi.ENOMSG,
    _e.ENOPROTOOPT: abi.ENOPROTOOPT,
    _e.ENOSPC: abi.ENOSPC,
    _e.ENOSYS: abi.ENOSYS,
    _e.ENOTCONN: abi.ENOTCONN,
    _e.ENOTDIR: abi.ENOTDIR,
    _e.ENOTEMPTY: abi.ENOTEMPTY,
    _e.ENOTRECOVERABLE: abi.ENOTRECOVERABLE,
    _e.ENOTSOCK: abi.ENOTSOCK,
    _e.ENOTSUP: abi.ENOTSUP,
    _e.EOPNOTSUPP: abi.ENOTSUP,
    _e.ENOTTY: abi.ENOTTY,
    _e.ENXIO: abi.ENXIO,
    _e.EOVERFLOW: abi.EOVERFLOW,
    _e.EOWNERDEAD: abi.EOWNERDEAD,
    _e.EPERM: abi.EPERM,
    _e.EPIPE: abi.EPIPE,
    _e.EPROTO: abi.EPROTO,
    _e.EPROTONOSUPPORT: abi.EPROTONOSUPPORT,
    _e.EPROTOTYPE: abi.EPROTOTYPE,
    _e.ERANGE: abi.ERANGE,
    _e.EROFS: abi.EROFS,
    _e.ESPIPE: abi.ESPIPE,
    _e.ESRCH: abi.ESRCH,
    _e.ESTALE: abi.ESTALE,
    _e.ETIMEDOUT: abi.ETIMEDOUT,
    _e.ETXTBSY: abi.ETXTBSY,
    _e.EXDEV: abi.EXDEV,
}


def wasi_error(error: OSError) -> Errno:
    """The ``Errno`` to raise for a host OSError; EIO when the host reports something WASI has no name for."""
    return Errno(errno_from_posix(error.errno))


def errno_from_posix(code: int | None) -> int:
    """The WASI errno for a POSIX errno number (e.g. a ``donjon.tls.StreamError.errno``); EIO if unknown."""
    if code is None:
        return abi.EIO
    return _MAP.get(code, abi.EIO)
