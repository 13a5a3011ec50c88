"""Non-blocking byte streams for a guest's socket fds: plain TCP and TLS behind one interface.

A WASI host keeps one :class:`Stream` per socket fd and never touches OpenSSL itself. Every
method returns at once: when nothing can be done without waiting it raises
:class:`~donjon.tls.errors.WouldBlock` (``EAGAIN``), and :meth:`Stream.poll_events` says what
to wait for on :meth:`Stream.fileno`. So one slow or silent peer never stalls another
connection of the same process — in particular a TLS handshake is driven step by step, by
whatever the guest does with the fd (or by :meth:`Stream.progress`), never to completion in one
blocking call.

How a poll loop (``poll_oneoff``) uses a stream::

    stream.progress()                      # advance a handshake, flush buffered output
    if stream.readable(): ...              # recv would not raise WouldBlock
    if stream.writable(): ...              # send would not raise WouldBlock
    else wait on stream.fileno() for stream.poll_events(read, write), at most until stream.deadline

Errors carry the errno a guest should see (see :mod:`donjon.tls.errors`). Buffers are bounded:
a stream holds at most :data:`WRITE_CHUNK` (64 KiB) of plaintext that the guest has handed over
but the kernel has not taken; beyond that ``send`` raises ``WouldBlock``, so a peer that never
reads cannot make the host buffer without bound.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from OpenSSL import SSL

from donjon.tls.context import ClientContext, HandshakeNotes, ServerContext
from donjon.tls.errors import (
    BrokenPipe,
    ConnectionReset,
    HandshakeFailed,
    StreamClosed,
    StreamError,
    WouldBlock,
)
from donjon.tls.identity import Credentials
from donjon.tls.spiffe import SpiffeId

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "READ_CHUNK",
    "WRITE_CHUNK",
    "Stream",
    "TCPStream",
    "TLSInfo",
    "TLSStream",
    "format_peer",
]

log = logging.getLogger("donjon.tls")

#: At most this many bytes come back from one ``recv`` (the guest's buffer may be larger).
READ_CHUNK = 1 << 16
#: ``send`` hands at most this much plaintext to OpenSSL per call; it is also the most a stream
#: holds for a peer that does not read (four TLS records; RFC 8446 section 5.1: 2^14 each).
WRITE_CHUNK = 1 << 16
#: The largest TLS record's plaintext (RFC 8446 section 5.1).
_MAX_RECORD = 1 << 14
#: A peer that has not finished its handshake after this many seconds is cut off.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_POLLERR = select.POLLERR | select.POLLHUP

# errnos of a connection that is gone, as opposed to a bug in how it is used.
_RESET_ERRNOS = frozenset(
    {errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH}
)
_MAX_REASON = 300


def format_peer(address: object) -> str:
    """``host:port`` (``[v6]:port``) for a socket address, for logs and errors."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address) or "unknown peer"


def _ready_now(fd: int, events: int) -> bool:
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(0))


class Stream(Protocol):
    """What the WASI host needs from a socket fd, for TCP and TLS alike."""

    #: The peer's address as ``host:port``.
    peer: str

    def fileno(self) -> int:
        """The OS socket to poll (stable until :meth:`close`)."""
        ...

    @property
    def closed(self) -> bool: ...

    @property
    def deadline(self) -> float | None:
        """A ``time.monotonic()`` instant by which :meth:`progress` must run again, if any."""
        ...

    def recv(self, n: int, *, peek: bool = False) -> bytes:
        """Up to ``n`` bytes (at most :data:`READ_CHUNK`); ``b""`` at end of stream."""
        ...

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """Take some of ``data``; return how many bytes were taken (at least one unless empty)."""
        ...

    def shutdown(self, how: int) -> None:
        """``socket.SHUT_RD``, ``SHUT_WR`` or ``SHUT_RDWR``."""
        ...

    def close(self) -> None:
        """Release the socket. Closing twice is harmless; any other use afterwards is ``StreamClosed``."""
        ...

    def pending(self) -> int:
        """Plaintext bytes already buffered in user space, readable without touching the socket."""
        ...

    @property
    def output_pending(self) -> bool:
        """Bytes ``send`` took that are still in user space (lost if the stream is closed now)."""
        ...

    def progress(self) -> None:
        """Do whatever can be done without waiting (handshake steps, buffered output). Never raises."""
        ...

    def readable(self) -> bool:
        """Would :meth:`recv` return (data, end of stream or an error) without ``WouldBlock``?"""
        ...

    def writable(self) -> bool:
        """Would :meth:`send` take bytes (or fail) without ``WouldBlock``?"""
        ...

    def poll_events(self, read: bool, write: bool) -> int:
        """The ``select.POLL*`` mask to wait for on :meth:`fileno`, for a guest wanting ``read``/``write``."""
        ...


class TCPStream:
    """A plain TCP connection with the :class:`Stream` interface (``prot = "tcp"``)."""

    #: The kernel's readiness is the stream's: a poll loop may trust ``POLLIN``/``POLLOUT`` as is.
    kernel_readiness = True

    def __init__(self, sock: socket.socket, *, peer: str | None = None) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self.peer = peer if peer is not None else format_peer(sock.getpeername())
        self._closed = False

    def __repr__(self) -> str:
        return f"<TCPStream {self.peer}{' closed' if self._closed else ''}>"

    def fileno(self) -> int:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def deadline(self) -> float | None:
        return None

    def _check(self) -> None:
        if self._closed:
            raise StreamClosed("stream is closed", peer=self.peer)

    def _error(self, e: OSError) -> StreamError:
        code = e.errno or errno.EIO
        reason = e.strerror or str(e)
        if code in _RESET_ERRNOS:
            return ConnectionReset(reason, peer=self.peer, errno=code)
        if code == errno.EPIPE:
            return BrokenPipe(reason, peer=self.peer)
        return StreamError(reason, peer=self.peer, errno=code)

    def recv(self, n: int, *, peek: bool = False) -> bytes:
        self._check()
        if n <= 0:
            return b""
        try:
            return self._sock.recv(min(n, READ_CHUNK), socket.MSG_PEEK if peek else 0)
        except BlockingIOError as e:
            raise WouldBlock("no data yet", peer=self.peer) from e
        except OSError as e:
            raise self._error(e) from e

    def recv_into(self, buffer: memoryview, *, peek: bool = False) -> int:
        """:meth:`recv` straight into ``buffer`` (at most :data:`READ_CHUNK` bytes): no copy on the way."""
        self._check()
        if not len(buffer):
            return 0
        try:
            return self._sock.recv_into(buffer[:READ_CHUNK], 0, socket.MSG_PEEK if peek else 0)
        except BlockingIOError as e:
            raise WouldBlock("no data yet", peer=self.peer) from e
        except OSError as e:
            raise self._error(e) from e

    def send(self, data: bytes | bytearray | memoryview) -> int:
        self._check()
        if not data:
            return 0
        try:
            return self._sock.send(data, socket.MSG_NOSIGNAL)
        except BlockingIOError as e:
            raise WouldBlock("socket buffer full", peer=self.peer) from e
        except OSError as e:
            raise self._error(e) from e

    def shutdown(self, how: int) -> None:
        self._check()
        try:
            self._sock.shutdown(how)
        except OSError as e:
            if e.errno != errno.ENOTCONN:  # the peer already went away: nothing left to shut
                raise self._error(e) from e

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()

    def pending(self) -> int:
        return 0

    @property
    def output_pending(self) -> bool:
        """Never: what ``send`` took is in the kernel, which keeps sending it after ``close``."""
        return False

    def progress(self) -> None:
        return None

    def readable(self) -> bool:
        return self._closed or _ready_now(self._fd, _POLLIN | _POLLERR)

    def writable(self) -> bool:
        return self._closed or _ready_now(self._fd, _POLLOUT | _POLLERR)

    def poll_events(self, read: bool, write: bool) -> int:
        return (_POLLIN if read else 0) | (_POLLOUT if write else 0)


@dataclass(frozen=True)
class TLSInfo:
    """What a completed handshake negotiated, and whom with."""

    version: str
    cipher: str
    group: str | None
    peer_certificate: x509.Certificate | None
    peer_spiffe_id: SpiffeId | None

    def describe_peer(self) -> str:
        if self.peer_certificate is None:
            return "no client certificate"
        if self.peer_spiffe_id is not None:
            return f"peer {self.peer_spiffe_id}"
        return f"peer {self.peer_certificate.subject.rfc4514_string() or '<empty subject>'}"


def _ssl_reason(e: SSL.Error) -> str:
    """OpenSSL's reason strings from a pyOpenSSL error, joined into one short line."""
    if isinstance(e, SSL.SysCallError):
        code = e.args[0] if e.args else -1
        if not isinstance(code, int) or code in (-1, 0):
            return "connection closed by the peer"
        text = e.args[1] if len(e.args) > 1 else ""
        return f"{errno.errorcode.get(code, code)}: {text}"
    parts: list[str] = []
    first = e.args[0] if e.args else None
    if isinstance(first, list):
        for item in first:
            if isinstance(item, tuple) and item:
                parts.append(str(item[-1]))
    reason = "; ".join(p for p in parts if p) or str(e) or type(e).__name__
    return reason[:_MAX_REASON]


def _unexpected_eof(e: SSL.Error) -> bool:
    """OpenSSL's two ways of saying the peer closed TCP without sending close_notify."""
    if isinstance(e, SSL.SysCallError):
        return not e.args or e.args[0] in (-1, 0)
    return "unexpected eof" in _ssl_reason(e).lower()


class TLSStream:
    """A TLS 1.3 connection over a non-blocking socket, with the :class:`Stream` interface.

    Build one with :meth:`server` (an accepted socket) or :meth:`client` (a connected socket).
    The handshake starts on the first operation or :meth:`progress`, proceeds without blocking,
    and either completes (one INFO log line) or fails (one WARNING line naming the peer and the
    reason; the connection is shut down and every later operation raises :class:`HandshakeFailed`).
    """

    _HANDSHAKE, _OPEN, _FAILED, _CLOSED = "handshake", "open", "failed", "closed"
    #: A readable socket may hold half a record: check :meth:`readable` after every wake-up.
    kernel_readiness = False

    def __init__(
        self,
        sock: socket.socket,
        conn: SSL.Connection,
        notes: HandshakeNotes,
        *,
        role: str,
        peer: str,
        credentials: Credentials | None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._conn = conn
        self._notes = notes
        self._role = role
        self.peer = peer
        self._credentials = credentials
        self._clock = clock
        self._deadline = clock() + handshake_timeout if handshake_timeout is not None else None
        self._state = self._HANDSHAKE
        self._error: StreamError | None = None
        self._want = _POLLIN  # what the operation that last blocked waits for
        self._pending_out: bytes | None = None  # plaintext OpenSSL committed to but could not send yet
        self._close_notify_pending = False
        self._eof = False
        self._read_shut = False
        self._write_shut = False
        self.info: TLSInfo | None = None
        #: The peer closed the connection without TLS close_notify (see :meth:`_peer_vanished`).
        self.truncated = False

    @classmethod
    def server(
        cls,
        sock: socket.socket,
        context: ServerContext,
        *,
        peer: str | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> TLSStream:
        """Serve TLS on an accepted socket, presenting the context's current identity."""
        return cls._wrap(sock, context, "from", peer, handshake_timeout)

    @classmethod
    def client(
        cls,
        sock: socket.socket,
        context: ClientContext,
        *,
        peer: str | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> TLSStream:
        """Speak TLS as a client on a connected socket, verifying the server per ``context``."""
        return cls._wrap(sock, context, "to", peer, handshake_timeout)

    @classmethod
    def _wrap(
        cls,
        sock: socket.socket,
        context: ServerContext | ClientContext,
        role: str,
        peer: str | None,
        handshake_timeout: float | None,
    ) -> TLSStream:
        conn, credentials, notes = context.wrap(sock)
        return cls(
            sock,
            conn,
            notes,
            role=role,
            peer=peer if peer is not None else format_peer(sock.getpeername()),
            credentials=credentials,
            handshake_timeout=handshake_timeout,
        )

    def __repr__(self) -> str:
        return f"<TLSStream {self._role} {self.peer} {self._state}>"

    # -- state ------------------------------------------------------------------------------

    def fileno(self) -> int:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._state == self._CLOSED

    @property
    def handshake_done(self) -> bool:
        return self.info is not None

    @property
    def deadline(self) -> float | None:
        return self._deadline if self._state == self._HANDSHAKE else None

    def _identity_text(self) -> str:
        if self._credentials is None:
            return "none presented (client without a certificate)"
        return self._credentials.description

    def _check(self) -> None:
        if self._state == self._CLOSED:
            raise StreamClosed("stream is closed", peer=self.peer)
        if self._error is not None:
            raise type(self._error)(self._error.reason, peer=self.peer, errno=self._error.errno)

    def _fatal(self, e: SSL.Error) -> StreamError:
        """Record a fatal error after the handshake; OpenSSL must not be used again (no close_notify)."""
        reason = _ssl_reason(e)
        code = e.args[0] if isinstance(e, SSL.SysCallError) and e.args else None
        error: StreamError
        if code == errno.EPIPE:
            error = BrokenPipe(reason, peer=self.peer)
        elif isinstance(code, int) and code > 0 and code not in _RESET_ERRNOS:
            error = StreamError(reason, peer=self.peer, errno=code)
        else:
            error = ConnectionReset(reason, peer=self.peer)
        self._error = error
        self._pending_out = None
        return error

    def _peer_vanished(self) -> None:
        """The peer closed TCP without close_notify: end of stream for reading, as in most TLS stacks.

        Python's ``ssl`` (``suppress_ragged_eofs``), browsers and curl close this way; a
        guest sees an ordinary end of stream, and a length-delimited protocol (HTTP with
        Content-Length) still detects truncation. OpenSSL may not be used to write after it.
        """
        self._eof = True
        self.truncated = True
        self._pending_out = None
        self._close_notify_pending = False

    # -- handshake --------------------------------------------------------------------------

    def _fail_handshake(self, reason: str) -> HandshakeFailed:
        self._state = self._FAILED
        error = HandshakeFailed(f"TLS handshake failed: {reason}", peer=self.peer)
        self._error = error
        log.warning(
            "tls: handshake failed, connection %s %s: %s; Keep identity: %s",
            self._role,
            self.peer,
            reason,
            self._identity_text(),
        )
        # Close the connection towards the peer now; the fd stays until the guest closes it.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        return error

    def _handshake(self) -> None:
        """Advance the handshake; raise WouldBlock while it waits, HandshakeFailed if it fails."""
        if self._state != self._HANDSHAKE:
            return
        if self._deadline is not None and self._clock() >= self._deadline:
            raise self._fail_handshake("timed out waiting for the peer")
        try:
            self._conn.do_handshake()
        except SSL.WantReadError as e:
            self._want = _POLLIN
            raise WouldBlock("TLS handshake in progress", peer=self.peer) from e
        except SSL.WantWriteError as e:
            self._want = _POLLOUT
            raise WouldBlock("TLS handshake in progress", peer=self.peer) from e
        except SSL.Error as e:
            reason = self._notes.failure or _ssl_reason(e)
            raise self._fail_handshake(reason) from e
        self._state = self._OPEN
        peer_cert = self._conn.get_peer_certificate(as_cryptography=True)
        self.info = TLSInfo(
            version=self._conn.get_protocol_version_name(),
            cipher=self._conn.get_cipher_name() or "",
            group=self._conn.get_group_name(),
            peer_certificate=peer_cert,
            peer_spiffe_id=self._notes.peer_spiffe_id,
        )
        log.info(
            "tls: connection %s %s: %s, group %s, cipher %s, %s; Keep identity: %s",
            self._role,
            self.peer,
            self.info.version,
            self.info.group,
            self.info.cipher,
            self.info.describe_peer(),
            self._identity_text(),
        )

    # -- output -----------------------------------------------------------------------------

    def _flush(self) -> None:
        """Send the held plaintext, then a pending close_notify; raise WouldBlock if they must wait."""
        while self._pending_out:
            try:
                # After WANT_WRITE, OpenSSL requires the retry to pass the same bytes (SSL_write(3)).
                # In partial-write mode (pyOpenSSL's default) a call may still send only part of
                # them (a peer that negotiated a small max_fragment_length, RFC 6066 section 4):
                # the rest is retried as a new write.
                sent = self._conn.send(self._pending_out)
            except SSL.WantWriteError as e:
                self._want = _POLLOUT
                raise WouldBlock("socket buffer full", peer=self.peer) from e
            except SSL.WantReadError as e:
                self._want = _POLLIN
                raise WouldBlock("waiting for the peer", peer=self.peer) from e
            except SSL.Error as e:
                raise self._fatal(e) from e
            self._pending_out = self._pending_out[sent:]
        self._pending_out = None
        if self._close_notify_pending:
            self._send_close_notify()

    def _send_close_notify(self) -> None:
        try:
            self._conn.shutdown()
        except SSL.WantWriteError as e:
            self._want = _POLLOUT
            raise WouldBlock("socket buffer full", peer=self.peer) from e
        except SSL.WantReadError as e:
            self._want = _POLLIN
            raise WouldBlock("waiting for the peer", peer=self.peer) from e
        except SSL.Error as e:
            raise self._fatal(e) from e
        self._close_notify_pending = False
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def send(self, data: bytes | bytearray | memoryview) -> int:
        self._check()
        if self._write_shut:
            raise BrokenPipe("writing was shut down", peer=self.peer)
        if self.truncated:
            raise BrokenPipe("the peer closed the connection", peer=self.peer)
        self._handshake()
        self._flush()
        chunk = memoryview(data).cast("B")[:WRITE_CHUNK]
        if not chunk:
            return 0
        try:
            sent: int = self._conn.send(chunk)
        except (SSL.WantWriteError, SSL.WantReadError) as e:
            # OpenSSL has encrypted (part of) the chunk and must be called again with the same
            # bytes (SSL_write(3)); we keep a copy, count it as sent, and every later operation
            # retries it first (see _flush). This copy is the only plaintext a stream holds.
            self._want = _POLLOUT if isinstance(e, SSL.WantWriteError) else _POLLIN
            self._pending_out = bytes(chunk)
            return len(chunk)
        except SSL.Error as e:
            raise self._fatal(e) from e
        return sent

    # -- input ------------------------------------------------------------------------------

    def recv(self, n: int, *, peek: bool = False) -> bytes:
        self._check()
        if n <= 0 or self._read_shut or self._eof:
            return b""
        self._handshake()
        if self._pending_out is not None or self._close_notify_pending:
            self._flush_quietly()  # keep our output moving while the guest waits for input
        try:
            data: bytes = self._conn.recv(min(n, READ_CHUNK), socket.MSG_PEEK if peek else None)
        except SSL.WantReadError as e:
            self._want = _POLLIN
            raise WouldBlock("no data yet", peer=self.peer) from e
        except SSL.WantWriteError as e:
            self._want = _POLLOUT
            raise WouldBlock("socket buffer full", peer=self.peer) from e
        except SSL.ZeroReturnError:
            self._eof = True  # the peer sent close_notify: a clean end of stream
            return b""
        except SSL.Error as e:
            if _unexpected_eof(e):
                self._peer_vanished()
                return b""
            raise self._fatal(e) from e
        want = min(n, READ_CHUNK)
        if peek or len(data) >= want or len(data) < _MAX_RECORD:
            # A short record is most likely the end of what the peer wrote: looking for more
            # would cost a system call that almost always answers "nothing yet".
            return data
        return self._more(data, want)

    def _more(self, first: bytes, want: int) -> bytes:
        """Append further records that are already here (up to ``want`` bytes), without waiting.

        One TLS record is at most 16 KiB (RFC 8446 section 5.1); a guest reading 64 KiB would
        otherwise need one call per record. Called after a full-size record only. What stops the
        loop — no more data, the end of the stream, an error — is left for the next call to
        report (an error is recorded by ``_fatal``/``_peer_vanished``; ``_check`` raises it then).
        """
        parts = [first]
        got = len(first)
        while got < want:
            try:
                data: bytes = self._conn.recv(want - got)
            except SSL.WantReadError:
                self._want = _POLLIN
                break
            except SSL.WantWriteError:
                self._want = _POLLOUT
                break
            except SSL.ZeroReturnError:
                self._eof = True
                break
            except SSL.Error as e:
                if _unexpected_eof(e):
                    self._peer_vanished()
                else:
                    self._fatal(e)
                break
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts) if len(parts) > 1 else first

    @property
    def output_pending(self) -> bool:
        """Plaintext taken by ``send`` (or a close_notify) that has not reached the kernel yet.

        A host that closes the stream while this is true would drop those bytes; it can keep calling
        :meth:`progress` (waiting for ``POLLOUT``) until this is false, then :meth:`close`.
        """
        if self._state == self._CLOSED or self._error is not None or self.truncated:
            return False
        return self._pending_out is not None or self._close_notify_pending

    def pending(self) -> int:
        if self._state != self._OPEN or self._error is not None:
            return 0
        count: int = self._conn.pending()
        return count

    # -- poll support -----------------------------------------------------------------------

    def _flush_quietly(self) -> None:
        with contextlib.suppress(WouldBlock):
            self._flush()

    def progress(self) -> None:
        if self._state == self._CLOSED or self._error is not None or self.truncated:
            return
        try:
            self._handshake()
            self._flush()
        except StreamError:
            pass  # WouldBlock: try again later; anything else is recorded in self._error

    def readable(self) -> bool:
        self.progress()
        if self._state == self._CLOSED or self._error is not None:
            return True
        if self._state == self._HANDSHAKE:
            return False
        if self._read_shut or self._eof or self._conn.pending():
            return True
        try:
            self._conn.recv(1, socket.MSG_PEEK)
        except SSL.WantReadError:
            self._want = _POLLIN
            return False
        except SSL.WantWriteError:
            self._want = _POLLOUT
            return False
        except SSL.ZeroReturnError:
            self._eof = True
        except SSL.Error as e:
            if _unexpected_eof(e):
                self._peer_vanished()
            else:
                self._fatal(e)
        return True

    def writable(self) -> bool:
        self.progress()
        if self._state == self._CLOSED or self._error is not None or self.truncated:
            return True
        if self._state == self._HANDSHAKE or self._pending_out is not None:
            return False
        return self._write_shut or _ready_now(self._fd, _POLLOUT | _POLLERR)

    def poll_events(self, read: bool, write: bool) -> int:
        if self._state == self._HANDSHAKE:
            return self._want
        # Always POLLIN for a reader, even while our own output is stuck: the peer may be
        # sending before it reads. POLLOUT too when the last operation waited for it (a TLS
        # read can need a write) or output is pending; readable()/writable() re-check after
        # every wake-up, so a stale interest costs at most one spurious wake-up.
        events = 0
        if read:
            events |= _POLLIN | (self._want & _POLLOUT)
        if write or self._pending_out is not None or self._close_notify_pending:
            events |= _POLLOUT
        return events

    # -- shutdown and close -----------------------------------------------------------------

    def shutdown(self, how: int) -> None:
        if self._state == self._CLOSED:
            raise StreamClosed("stream is closed", peer=self.peer)
        if how not in (socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR):
            raise StreamError(f"bad shutdown direction {how}", peer=self.peer, errno=errno.EINVAL)
        if how in (socket.SHUT_RD, socket.SHUT_RDWR):
            self._read_shut = True
        if how in (socket.SHUT_WR, socket.SHUT_RDWR) and not self._write_shut:
            self._write_shut = True
            if self._state == self._OPEN and self._error is None:
                # TLS 1.3 allows half-close: send close_notify, keep reading (RFC 8446 section 6.1).
                self._close_notify_pending = True
                self._flush_quietly()
            else:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        if self._state == self._CLOSED:
            return
        if self._state == self._OPEN and self._error is None and not self.truncated:
            # Best effort, without waiting: what cannot go out now is dropped with the socket.
            try:
                self._flush()
                if not self._write_shut:
                    self._send_close_notify()
            except StreamError:
                pass
        self._state = self._CLOSED
        self._pending_out = None
        self._sock.close()
