"""Socket fds: a listening socket and a connected stream, behind the ``OpenFile`` interface.

The host objects come from the caller (``GuestSpec`` entries ``ListenSocket`` / ``ConnectedSocket``,
in Donjon ``donjon.tls.Listener`` and ``donjon.tls.stream.Stream``): they never block, raise an
exception carrying ``errno == EAGAIN`` when they would, and carry the POSIX errno of every other
failure. This module turns them into WASI semantics (witx ``sock_accept``, ``sock_recv``,
``sock_send``, ``sock_shutdown``; ``fd_read``/``fd_write`` on a socket are ``sock_recv``/``sock_send``
without flags):

* An fd without ``FDFLAGS_NONBLOCK`` blocks: the operation is retried after waiting with
  ``poll(2)`` on the host socket for the events the stream asks for (a TLS read may need
  ``POLLOUT``), never longer than the stream's deadline (a pending handshake's), so nothing
  busy-loops. A wait is one ``poll(2)`` call: Ctrl-C (SIGINT at its default action while a guest
  runs) ends the process there as anywhere else.
* A non-blocking fd answers ``EAGAIN``.
* ``poll_oneoff`` asks each socket fd what to wait for (``poll_events``), when (``poll_deadline``),
  and after a wake-up whether it is really ready (``poll_confirm``): for TLS, a readable host socket
  may hold half a record or handshake messages only, and plaintext may already be buffered in user
  space with nothing on the socket (``poll_ready``).
* Closing a stream whose last ``send`` is still in user space (a TLS record the kernel could not
  take yet) does not drop it: like the kernel lingering on a closed TCP socket, the host keeps
  flushing it in the background (``Lingering``), bounded in time and count.
"""

from __future__ import annotations

import array
import errno as posix_errno
import fcntl
import select
import termios
import time
from typing import Any

from . import abi
from .errno_map import errno_from_posix
from .errors import Errno
from .files import Buffers, OpenFile
from .spec import HostListener, HostStream

RIGHTS_LISTEN = (
    abi.RIGHT_SOCK_ACCEPT
    | abi.RIGHT_FD_READ
    | abi.RIGHT_FD_WRITE
    | abi.RIGHT_FD_FDSTAT_SET_FLAGS
    | abi.RIGHT_FD_FILESTAT_GET
    | abi.RIGHT_POLL_FD_READWRITE
)
RIGHTS_STREAM = (
    abi.RIGHT_FD_READ
    | abi.RIGHT_FD_WRITE
    | abi.RIGHT_FD_FDSTAT_SET_FLAGS
    | abi.RIGHT_FD_FILESTAT_GET
    | abi.RIGHT_POLL_FD_READWRITE
    | abi.RIGHT_SOCK_SHUTDOWN
)

#: One ``send`` gathers at most this much of the guest's iovecs (a stream takes at most 64 KiB).
MAX_SEND = 1 << 16
#: A closed stream keeps flushing its last bytes at most this long, and at most this many at once.
LINGER_SECONDS = 10.0
MAX_LINGERING = 256
#: When the guest exits, lingering streams get at most this long, in total, to finish.
EXIT_LINGER_SECONDS = 2.0

_RIFLAGS_ALL = abi.RIFLAGS_RECV_PEEK | abi.RIFLAGS_RECV_WAITALL
_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_MAX_WAIT_MS = 1 << 30


def _posix_errno(error: Exception) -> int:
    """The POSIX errno a stream error carries; anything else is a host bug and is re-raised as is
    (the trampoline reports it as EIO and records it in ``host.internal_errors``)."""
    code = getattr(error, "errno", None)
    if not isinstance(code, int):
        raise error
    return code


def _errno_of(error: Exception) -> Errno:
    return Errno(errno_from_posix(_posix_errno(error)))


def _would_block(error: Exception) -> bool:
    return _posix_errno(error) == posix_errno.EAGAIN


def _wait_ms(deadline: float | None) -> int | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    return max(0, min(_MAX_WAIT_MS, int(remaining * 1000) + 1))


class Lingering:
    """Closed TLS streams still flushing their last bytes; progressed by every wait of the host."""

    __slots__ = ("_streams",)

    def __init__(self) -> None:
        self._streams: dict[HostStream, float] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def close(self, stream: HostStream) -> None:
        """Close ``stream`` now, or once what it holds has gone out (at most ``LINGER_SECONDS``)."""
        stream.progress()
        if not stream.output_pending or len(self._streams) >= MAX_LINGERING:
            stream.close()
            return
        self._streams[stream] = time.monotonic() + LINGER_SECONDS

    def register(self, masks: dict[int, int]) -> None:
        """Add each lingering stream's socket to ``masks`` (fd -> events) for the next wait."""
        for stream in self._streams:
            fd = stream.fileno()
            masks[fd] = masks.get(fd, 0) | stream.poll_events(False, True)

    def step(self) -> None:
        """Flush what can go out now; close the streams that are done or out of time."""
        if not self._streams:
            return
        now = time.monotonic()
        for stream, deadline in list(self._streams.items()):
            stream.progress()
            if not stream.output_pending or now >= deadline:
                del self._streams[stream]
                stream.close()

    def drain(self, seconds: float = EXIT_LINGER_SECONDS) -> None:
        """Give every lingering stream up to ``seconds`` (in total) to finish, then close them all."""
        end = time.monotonic() + seconds
        while self._streams and time.monotonic() < end:
            masks: dict[int, int] = {}
            self.register(masks)
            poller = select.poll()
            for fd, mask in masks.items():
                poller.register(fd, mask)
            poller.poll(_wait_ms(end))
            self.step()
        for stream in list(self._streams):
            stream.close()
        self._streams.clear()


def wait_on(fd: int, events: int, deadline: float | None, lingering: Lingering) -> None:
    """Block until ``fd`` has ``events`` (or an error), or until ``deadline``; lingering streams move too."""
    masks = {fd: events}
    lingering.register(masks)
    poller = select.poll()
    for host_fd, mask in masks.items():
        poller.register(host_fd, mask)
    try:
        poller.poll(_wait_ms(deadline))
    except OSError as e:
        raise Errno(errno_from_posix(e.errno)) from None
    lingering.step()


class SocketFile(OpenFile):
    """What both socket kinds share: filetype, ``NONBLOCK`` as the only fd flag, poll support."""

    filetype = abi.FILETYPE_SOCKET_STREAM
    is_socket = True

    def __init__(self, lingering: Lingering, fdflags: int) -> None:
        self.lingering = lingering
        self.fdflags = fdflags

    @property
    def nonblocking(self) -> bool:
        return bool(self.fdflags & abi.FDFLAGS_NONBLOCK)

    def set_fdflags(self, flags: int) -> None:
        # Only NONBLOCK means anything on a socket (wasi-libc's fcntl(F_SETFL) passes just that).
        if flags & ~abi.FDFLAGS_NONBLOCK:
            raise Errno(abi.EINVAL)
        self.fdflags = flags

    def fileno(self) -> int:
        raise NotImplementedError

    # --- poll_oneoff --------------------------------------------------------------------------
    def poll_ready(self, read: bool) -> int | None:
        """Ready without asking the kernel: ``nbytes`` for the event, else None."""
        return None

    def poll_events(self, read: bool) -> int:
        """The ``POLL*`` mask to wait for on :meth:`fileno`."""
        return _POLLIN if read else _POLLOUT

    def poll_deadline(self) -> float | None:
        """A ``time.monotonic()`` instant at which to look again even without events."""
        return None

    def poll_confirm(self, read: bool, revents: int) -> int | None:
        """After a wake-up (``revents`` from the kernel, maybe 0): ``nbytes`` if ready, else None."""
        return 0 if revents else None


class ListenSocketFile(SocketFile):
    """A pre-opened listening socket: ``sock_accept`` gives a :class:`StreamSocketFile` per connection."""

    rights_base = RIGHTS_LISTEN
    rights_inheriting = RIGHTS_STREAM

    def __init__(self, listener: HostListener, lingering: Lingering, fdflags: int = 0) -> None:
        super().__init__(lingering, fdflags)
        self.listener = listener
        self._fd = listener.fileno()

    def fileno(self) -> int:
        return self._fd

    def sock_accept(self, flags: int) -> OpenFile:
        # witx: the new fd's $fdflags; wasi-libc's accept4(SOCK_NONBLOCK) sets NONBLOCK, nothing else is used.
        if flags & ~abi.FDFLAGS_NONBLOCK:
            raise Errno(abi.EINVAL)
        while True:
            try:
                stream = self.listener.accept()
            except Exception as e:
                if not _would_block(e) or self.nonblocking:
                    raise _errno_of(e) from None
                wait_on(self._fd, _POLLIN, None, self.lingering)
                continue
            return StreamSocketFile(stream, self.lingering, flags & abi.FDFLAGS_NONBLOCK)

    # A listening socket is not connected (Linux: ENOTCONN for read/write/recv/send/shutdown).
    def read(self, bufs: Buffers) -> int:
        raise Errno(abi.ENOTCONN)

    def write(self, bufs: Buffers) -> int:
        raise Errno(abi.ENOTCONN)

    def sock_recv(self, bufs: Buffers, flags: int) -> tuple[int, int]:
        raise Errno(abi.ENOTCONN)

    def sock_send(self, bufs: Buffers, flags: int) -> int:
        raise Errno(abi.ENOTCONN)

    def sock_shutdown(self, how: int) -> None:
        raise Errno(abi.ENOTCONN)

    def poll_confirm(self, read: bool, revents: int) -> int | None:
        return 0 if revents and read else None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.listener.close()


class StreamSocketFile(SocketFile):
    """A connected stream (accepted, or a pre-opened ``connect``): TCP or TLS alike."""

    rights_base = RIGHTS_STREAM
    rights_inheriting = RIGHTS_STREAM

    def __init__(self, stream: HostStream, lingering: Lingering, fdflags: int = 0) -> None:
        super().__init__(lingering, fdflags)
        self.stream = stream
        self._fd = stream.fileno()
        # Plain TCP: the kernel's readiness is the stream's, so poll_oneoff needs no second look.
        self._kernel = bool(getattr(stream, "kernel_readiness", False))

    def fileno(self) -> int:
        return self._fd

    def _wait(self, read: bool) -> None:
        stream = self.stream
        wait_on(self._fd, stream.poll_events(read, not read), stream.deadline, self.lingering)

    def sock_accept(self, flags: int) -> OpenFile:
        raise Errno(abi.EINVAL)  # POSIX accept(2): "socket is not listening for connections"

    # --- reading ------------------------------------------------------------------------------
    def read(self, bufs: Buffers) -> int:
        return self.sock_recv(bufs, 0)[0]

    def sock_recv(self, bufs: Buffers, flags: int) -> tuple[int, int]:
        if flags & ~_RIFLAGS_ALL:
            raise Errno(abi.EINVAL)
        total = sum(len(b) for b in bufs)
        if total == 0:
            return 0, 0
        peek = bool(flags & abi.RIFLAGS_RECV_PEEK)
        # MSG_WAITALL: fill the whole buffer unless the stream ends or fails (with PEEK it cannot
        # consume, so it is ignored, as for a stream socket whose data is not all there yet).
        waitall = bool(flags & abi.RIFLAGS_RECV_WAITALL) and not peek
        stream = self.stream
        recv_into = getattr(stream, "recv_into", None)
        if recv_into is not None and len(bufs) == 1 and not waitall:
            return self._recv_into(recv_into, bufs[0], peek), 0
        got = 0
        while True:
            try:
                data = stream.recv(total - got, peek=peek)
            except Exception as e:
                if not _would_block(e):
                    if got:
                        return got, 0  # the error shows on the next call
                    raise _errno_of(e) from None
                if self.nonblocking:
                    if got:
                        return got, 0
                    raise Errno(abi.EAGAIN) from None
                self._wait(True)
                continue
            if data:
                _scatter(bufs, data, got)
                got += len(data)
            if not data or not waitall or got >= total:
                return got, 0

    def _recv_into(self, recv_into: Any, buf: memoryview, peek: bool) -> int:
        """One guest buffer, a stream that can fill it directly (plain TCP): no intermediate copy."""
        while True:
            try:
                n: int = recv_into(buf, peek=peek)
                return n
            except Exception as e:
                if not _would_block(e):
                    raise _errno_of(e) from None
                if self.nonblocking:
                    raise Errno(abi.EAGAIN) from None
                self._wait(True)

    # --- writing ------------------------------------------------------------------------------
    def write(self, bufs: Buffers) -> int:
        return self.sock_send(bufs, 0)

    def sock_send(self, bufs: Buffers, flags: int) -> int:
        # witx $siflags defines no flag; as wasmtime, the value is ignored.
        data = _gather(bufs)
        if not data:
            return 0
        stream = self.stream
        while True:
            try:
                return stream.send(data)
            except Exception as e:
                if not _would_block(e):
                    raise _errno_of(e) from None
                if self.nonblocking:
                    raise Errno(abi.EAGAIN) from None
                self._wait(False)

    def sock_shutdown(self, how: int) -> None:
        # ``socket`` is imported here, not at the top: a workload without sockets (most of them,
        # and every ``nil`` hello-world whose start-up is measured) never pays for it.
        import socket

        shut = {abi.SDFLAGS_RD: socket.SHUT_RD, abi.SDFLAGS_WR: socket.SHUT_WR}
        mode = shut.get(how, socket.SHUT_RDWR if how == abi.SDFLAGS_RD | abi.SDFLAGS_WR else None)
        if mode is None:
            raise Errno(abi.EINVAL)
        try:
            self.stream.shutdown(mode)
        except Exception as e:
            raise _errno_of(e) from None

    # --- poll_oneoff --------------------------------------------------------------------------
    def poll_ready(self, read: bool) -> int | None:
        if read and not self._kernel:
            pending = self.stream.pending()
            if pending:
                return pending
        return None

    def poll_events(self, read: bool) -> int:
        if self._kernel:
            return _POLLIN if read else _POLLOUT
        return self.stream.poll_events(read, not read)

    def poll_deadline(self) -> float | None:
        return None if self._kernel else self.stream.deadline

    def poll_confirm(self, read: bool, revents: int) -> int | None:
        stream = self.stream
        if self._kernel:
            if not revents:
                return None
            return _available(self._fd) if read else 0
        if read:
            if stream.readable():
                return stream.pending() or _available(self._fd)
            return None
        return 0 if stream.writable() else None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.lingering.close(self.stream)


def _scatter(bufs: Buffers, data: bytes, skip: int) -> None:
    """Copy ``data`` into the iovecs, starting ``skip`` bytes into them."""
    pos = 0
    for buf in bufs:
        size = len(buf)
        if skip >= size:
            skip -= size
            continue
        n = min(size - skip, len(data) - pos)
        buf[skip : skip + n] = data[pos : pos + n]
        pos += n
        skip = 0
        if pos >= len(data):
            return


def _gather(bufs: Buffers) -> bytes | memoryview:
    """At most ``MAX_SEND`` bytes of the iovecs: the guest's own memory when there is one buffer."""
    for i, buf in enumerate(bufs):
        if len(buf):
            rest = bufs[i + 1 :]
            if not any(len(b) for b in rest):
                return buf[:MAX_SEND]
            break
    out = bytearray()
    for buf in bufs:
        room = MAX_SEND - len(out)
        if room <= 0:
            break
        out += buf[:room]
    return bytes(out)


def _available(fd: int) -> int:
    try:
        buf = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, buf)
        return int(buf[0])
    except OSError:
        return 0
